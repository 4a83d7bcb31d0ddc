"""Optional TensorBoard logging for the trainers: the rows of ``metrics.csv`` as scalars.

Each numeric column of a ``metrics.csv`` row becomes one scalar, with the
column name as the tag (``loss``, ``eval/pass@1``, ...) and the row's ``step``
as the global step; empty entries (None) are skipped, so the eval tags have a
point only at evaluation steps. TensorBoard stores scalars in float32: an
event's value equals the CSV's number cast to float32. docs/llm_metrics.md
defines every tag (they are the CSV's columns).

TensorBoard is an optional dependency (the extra ``tensorboard``):

    pip install torch==2.13.0 -e ".[tensorboard]"

A resumed run opens a new event file with ``purge_step`` = the first step it
will log, so TensorBoard hides the killed run's events past the checkpoint, as
``metrics.csv`` drops its rows past the checkpoint.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["ScalarLog", "require_tensorboard", "event_files"]

_HINT = (
    'tensorboard_dir needs the tensorboard package, the extra pessimism-toolkit[tensorboard]: '
    'pip install torch==2.13.0 -e ".[tensorboard]"'
)


def require_tensorboard():
    """``torch.utils.tensorboard.SummaryWriter``, or an ImportError naming the extra to install."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as e:  # torch raises ImportError when the tensorboard package is missing
        raise ImportError(_HINT) from e
    return SummaryWriter


def event_files(log_dir) -> list[Path]:
    """The TensorBoard event files directly in ``log_dir`` ([] when it is None or absent)."""
    if log_dir is None or not Path(log_dir).is_dir():
        return []
    return sorted(Path(log_dir).glob("events.out.tfevents.*"))


class ScalarLog:
    """Writes metrics rows to TensorBoard; a no-op when ``log_dir`` is None.

    Parameters
    ----------
    log_dir : str or Path, optional
        Event-file directory (created if missing). None disables logging.
    first_step : int
        The ``step`` of the first row this run will write (1 for a fresh run,
        checkpoint step + 1 for a resumed one); events at or after it from an
        earlier, killed run are purged.
    """

    def __init__(self, log_dir: str | Path | None, first_step: int = 1):
        self.writer = None
        if log_dir is None:
            return
        SummaryWriter = require_tensorboard()
        Path(log_dir).mkdir(parents=True, exist_ok=True)
        self.writer = SummaryWriter(str(log_dir), purge_step=first_step if first_step > 1 else None)

    def write(self, row: dict) -> None:
        """Log every numeric, non-empty column of ``row`` except ``step`` at global step ``row['step']``."""
        if self.writer is None:
            return
        step = int(row["step"])
        for key, value in row.items():
            if key == "step" or value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            self.writer.add_scalar(key, value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()
            self.writer = None
