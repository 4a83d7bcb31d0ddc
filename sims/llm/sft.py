"""SFT warm start: teach a small GPT the task's worked solutions until RL has room.

Trains on ``BOS + prompt + worked solution + EOS`` with the loss on the solution
tokens only (mean negative log-likelihood per solution token, EOS included),
AdamW with linear warm-up and cosine decay. Every ``eval_every`` steps it
measures sampled pass@1 / pass@k on the held-out problems and stops at the
first evaluation whose pass@1 reaches ``stop_low``: inside
``[stop_low, stop_high]`` the run ends ``in_band``; above it, ``overshot``
(more training would not bring it back); without reaching it, ``max_steps``.

Seeds are data: one ``torch.Generator`` seeded with ``seed`` draws the initial
weights and then every batch; evaluation samples from its own generator seeded
with ``seed + 1`` afresh at each evaluation, so that successive evaluations
differ only through the weights. torch's global RNG is never used (keep
``dropout = 0``: dropout draws from it). With ``out_dir`` the run writes
``metrics.csv`` (one row per step; see docs/llm_metrics.md), an atomic
``ckpt.pt`` every ``checkpoint_every`` steps and at the end, and
``summary.json`` (each written atomically, with the user's umask, through
:mod:`theory.outputs`); ``--resume`` continues from ``ckpt.pt`` and reproduces
the uninterrupted run's metrics exactly (``time_s`` and ``tok_per_s`` aside).
A folder that already holds another run's files is refused unless ``--resume``
(continue it) or ``--overwrite`` (remove its files and start over) is given.
``max_steps`` cannot change on resume: it is also the horizon of the cosine
learning-rate decay, so a longer run is a new run, not an extension.
With ``tensorboard_dir`` the same columns also go to TensorBoard as scalars
(``sims.llm.tblog``; the optional extra ``tensorboard``). The folder, the
checkpoint and the logs are a :class:`sims.llm.rundir.RunDir`, shared with
``sims.llm.rl``.

    python -m sims.llm.sft --preset smoke --out-dir runs/sft_smoke
    python -m sims.llm.sft --preset default --out-dir runs/sft_default --resume
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from theory.outputs import UsageError, cli_main

from ._cli import Parser, add_dataclass_arguments, note, require_config, usage_error
from .checkpoint import read_checkpoint, restore_checkpoint
from .evaluate import evaluate
from .model import GPT, GPTConfig, PRESETS as MODEL_PRESETS
from .rundir import Progress, RunDir, add_run_arguments, config_from_args
from .rundir import (  # defined here first, so still importable from here
    OUTPUT_NAMES,
    RUN_FILES,
    append_metrics,
    check_resume_config,
    clear_run,
    prepare_out_dir,
    read_resume_checkpoint,
    write_metrics,
)
from .tasks import SPECS, Task, make_task
from .tokenizer import PAD, pad_right

__all__ = [
    "SFTConfig",
    "SFT_PRESETS",
    "SFTResult",
    "build_task",
    "build_model",
    "make_optimizer",
    "lr_at",
    "SFTData",
    "sft_loss",
    "optimizer_step",
    "sft_step",
    "RUN_FILES",
    "OUTPUT_NAMES",
    "write_metrics",
    "append_metrics",
    "prepare_out_dir",
    "clear_run",
    "read_resume_checkpoint",
    "check_resume_config",
    "RESUME_IGNORES",
    "check_run",
    "SFTProgress",
    "train_sft",
    "summary",
    "SFT_FIX",
    "read_sft_checkpoint",
    "load_sft",
    "warm_start",
    "check_sft_arg",
]


@dataclass(frozen=True)
class SFTConfig:
    """Settings of one SFT run; ``SFT_PRESETS`` holds ``smoke``, ``default`` and ``countdown`` (the lag study's)."""

    task: str = "chain_sum"
    """reasoning-gym task: chain_sum, basic_arithmetic, countdown or gsm_symbolic."""
    difficulty: str = "medium"
    """Task difficulty preset (see sims.llm.tasks.make_task)."""
    cot: bool | None = None
    """Worked steps before the answer; None takes the task's default."""
    task_seed: int = 0
    """Seed of the task's problems (fixes the training and held-out splits)."""
    train_size: int = 20_000
    """Training problems generated (drawn with replacement for batches)."""
    eval_size: int = 200
    """Distinct held-out problems for pass@k."""
    model: str = "default"
    """Model preset: smoke (<= 1M parameters), default (~3M), large (GPU)."""
    seed: int = 0
    """Seed of initial weights and batch order; evaluation sampling uses seed + 1."""
    batch_size: int = 128
    """Sequences per optimizer step."""
    lr: float = 1e-3
    """Peak AdamW learning rate."""
    min_lr: float = 1e-4
    """Learning rate at max_steps (cosine decay from lr after warm-up)."""
    warmup_steps: int = 50
    """Linear warm-up steps from 0 to lr."""
    weight_decay: float = 0.1
    """AdamW weight decay on matrices and embeddings (not on biases or LayerNorm gains)."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this value (0 disables clipping)."""
    max_steps: int = 3000
    """Stop after this many optimizer steps if pass@1 never reaches stop_low; also the end of the cosine
    learning-rate decay, so --resume cannot change it (a longer run is a new run)."""
    eval_every: int = 100
    """Evaluate on the held-out problems every this many steps (and at max_steps)."""
    eval_samples: int = 8
    """Sampled completions per held-out problem (n of pass@k)."""
    eval_ks: tuple[int, ...] = (1, 4, 8)
    """The k values of pass@k (each <= eval_samples; must include 1)."""
    eval_temperature: float = 1.0
    """Sampling temperature of the evaluation (1 = the policy RL samples from)."""
    stop_low: float = 0.15
    """Stop at the first evaluation with sampled pass@1 >= stop_low."""
    stop_high: float = 0.50
    """Upper end of the target band; stopping above it is reported as overshot."""
    checkpoint_every: int = 500
    """Write ckpt.pt every this many steps (with out_dir)."""
    tensorboard_dir: str | None = None
    """Also write every metrics.csv column as a TensorBoard scalar here (needs the extra 'tensorboard')."""
    num_threads: int = 2
    """torch intra-op threads."""
    device: str = "cpu"
    """Where the model trains and samples: cpu or cuda[:i] (batches are drawn on the CPU); part of the run
    (floating-point results differ), so --resume keeps it."""
    progress: bool = True
    """Show a progress bar."""

    def __post_init__(self):
        if self.task not in SPECS:
            raise ValueError(f"task: unknown {self.task!r}; choose from {sorted(SPECS)}")
        if self.difficulty not in SPECS[self.task].presets:
            raise ValueError(
                f"difficulty: {self.task} has no {self.difficulty!r}; choose from {sorted(SPECS[self.task].presets)}"
            )
        if self.model not in MODEL_PRESETS:
            raise ValueError(f"model: unknown preset {self.model!r}; choose from {sorted(MODEL_PRESETS)}")
        for name in (
            "train_size",
            "eval_size",
            "batch_size",
            "max_steps",
            "eval_every",
            "eval_samples",
            "checkpoint_every",
            "num_threads",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be >= 1, got {getattr(self, name)}")
        for name in ("task_seed", "seed", "warmup_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: must be >= 0, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"lr: must be > 0, got {self.lr}")
        if not 0 <= self.min_lr <= self.lr:
            raise ValueError(f"min_lr: must lie in [0, lr], got {self.min_lr}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay: must be >= 0, got {self.weight_decay}")
        if self.grad_clip < 0:
            raise ValueError(f"grad_clip: must be >= 0, got {self.grad_clip}")
        if 1 not in self.eval_ks or min(self.eval_ks) < 1 or max(self.eval_ks) > self.eval_samples:
            raise ValueError(
                f"eval_ks: must include 1 and lie in [1, eval_samples={self.eval_samples}], got {self.eval_ks}"
            )
        if not self.eval_temperature > 0:
            raise ValueError(f"eval_temperature: must be > 0, got {self.eval_temperature}")
        if not (self.device == "cpu" or self.device.startswith("cuda")):
            raise ValueError(f"device: must be cpu or cuda[:i], got {self.device!r}")
        if not 0 <= self.stop_low <= self.stop_high <= 1:
            raise ValueError(f"stop_low: need 0 <= stop_low <= stop_high <= 1, got {self.stop_low}, {self.stop_high}")


SFT_PRESETS = {
    "smoke": SFTConfig(
        task="chain_sum",
        difficulty="tiny",
        model="smoke",
        train_size=2_000,
        eval_size=64,
        batch_size=64,
        lr=3e-3,
        min_lr=3e-4,
        warmup_steps=20,
        max_steps=400,
        eval_every=25,
        eval_samples=4,
        eval_ks=(1, 4),
        checkpoint_every=100,
    ),
    "default": SFTConfig(),
    # the lag study's warm start (sims.llm.lag_study): countdown with 3 numbers up to 9; stopped early, where
    # pass@8 is about three times pass@1, so RL has room to concentrate the policy on solutions it can already
    # find; a pool of 2,000 leaves most of the problem space to the RL runs' fresh problems
    "countdown": SFTConfig(
        task="countdown",
        difficulty="tiny",
        model="smoke",
        train_size=2_000,
        eval_size=200,
        batch_size=64,
        lr=3e-3,
        min_lr=3e-4,
        warmup_steps=20,
        max_steps=1500,
        eval_every=25,
        eval_samples=8,
        eval_ks=(1, 8),
        stop_low=0.10,
        stop_high=0.30,
        checkpoint_every=500,
        num_threads=1,
    ),
}
# the lag study's first protocol (results/llm_lag_v1): the same, stopped at pass@1 >= 0.15
SFT_PRESETS["countdown_v1"] = dataclasses.replace(SFT_PRESETS["countdown"], stop_low=0.15)


@dataclass
class SFTResult:
    """What :func:`train_sft` returns."""

    model: GPT
    task: Task
    config: SFTConfig
    step: int
    """Optimizer steps completed."""
    status: str
    """in_band, overshot, max_steps, or interrupted (stop_after reached first)."""
    final_eval: dict | None
    """The last evaluation (None if none ran)."""
    history: list[dict]
    """One row per step: the rows of metrics.csv."""
    elapsed_s: float
    """Wall-clock seconds of training and evaluation (resumed runs add up)."""


# ----------------------------------------------------------------------------- building blocks


def build_task(cfg: SFTConfig) -> Task:
    """The task ``cfg`` names, with its splits."""
    return make_task(
        cfg.task,
        seed=cfg.task_seed,
        size=cfg.train_size,
        eval_size=cfg.eval_size,
        difficulty=cfg.difficulty,
        cot=cfg.cot,
    )


def build_model(cfg: SFTConfig, task: Task, generator: torch.Generator) -> GPT:
    """The ``cfg.model`` preset sized for ``task``'s alphabet and sequence length."""
    mcfg = GPTConfig.preset(cfg.model, vocab_size=task.tokenizer.vocab_size, block_size=task.block_size)
    return GPT(mcfg, generator=generator)


def make_optimizer(model: GPT, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW (betas 0.9, 0.95) with weight decay on tensors of rank >= 2 only."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95))


def lr_at(step: int, cfg: SFTConfig) -> float:
    """Linear warm-up over ``warmup_steps``, then cosine from ``lr`` to ``min_lr`` at ``max_steps``."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    frac = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps))
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * frac))


class SFTData:
    """Training problems as one right-padded id tensor, and batches drawn from it."""

    def __init__(self, task: Task):
        tok, seqs, starts = task.tokenizer, [], []
        for p in task.train:
            prompt = tok.encode(p.prompt, bos=True)
            seqs.append(prompt + tok.encode(p.completion, eos=True))
            starts.append(len(prompt))
        self.seqs = pad_right(seqs)  # (P, L)
        self.lengths = torch.tensor([len(s) for s in seqs])  # (P,)
        self.starts = torch.tensor(starts)  # (P,) index of the first solution token

    def batch(self, B: int, generator: torch.Generator):
        """Inputs, targets and solution-token mask, each (B, T), T = longest sequence - 1."""
        i = torch.randint(len(self.seqs), (B,), generator=generator)  # (B,)
        T = int(self.lengths[i].max()) - 1
        seq = self.seqs[i, : T + 1]  # (B, T + 1)
        t = torch.arange(T)  # target t is seq[:, t + 1]
        mask = (t >= self.starts[i, None] - 1) & (t < self.lengths[i, None] - 1)  # (B, T)
        return seq[:, :-1], seq[:, 1:], mask


def sft_loss(model: GPT, x, y, mask) -> torch.Tensor:
    """Mean negative log-likelihood per solution token (nats)."""
    logp = model.token_logprobs(x, y, mask)  # (B, T)
    return -logp.sum() / mask.sum()


def optimizer_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, loss: torch.Tensor, grad_clip: float):
    """Back-propagate ``loss``, clip the global gradient norm at ``grad_clip`` (0: no clipping), take one step.

    Returns the gradient norm before clipping (a 0-d tensor). The SFT, RL and
    probe trainers all step through here.
    """
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip if grad_clip > 0 else math.inf)
    optimizer.step()
    return norm


def sft_step(model: GPT, optimizer, data: SFTData, generator: torch.Generator, step: int, cfg: SFTConfig) -> dict:
    """Optimizer step ``step + 1`` (counting from 1) on a batch drawn with ``generator``, at ``lr_at(step)``.

    Returns its row of metrics.csv so far: ``step``, ``loss``, ``lr``,
    ``grad_norm``, ``tokens`` (non-pad input tokens), ``tok_per_s``.
    """
    t0 = time.perf_counter()
    lr = lr_at(step, cfg)
    for group in optimizer.param_groups:
        group["lr"] = lr
    x, y, mask = (t.to(cfg.device) for t in data.batch(cfg.batch_size, generator))  # (B, T) each
    model.train()
    loss = sft_loss(model, x, y, mask)
    grad_norm = optimizer_step(model, optimizer, loss, cfg.grad_clip)
    dt = time.perf_counter() - t0
    tokens = int((x != PAD).sum())
    return {
        "step": step + 1,
        "loss": loss.item(),
        "lr": lr,
        "grad_norm": grad_norm.item(),
        "tokens": tokens,
        "tok_per_s": tokens / dt,
    }


# ----------------------------------------------------------------------------- the run


def _check_band(pass1: float, cfg: SFTConfig) -> str | None:
    if pass1 < cfg.stop_low:
        return None
    return "in_band" if pass1 <= cfg.stop_high else "overshot"


def _csv_columns(cfg: SFTConfig) -> list[str]:
    ev = [f"eval/pass@{k}{s}" for k in cfg.eval_ks for s in ("", "_se")]
    ev += ["eval/score", "eval/score_se", "eval/len", "eval/finished", "eval/greedy_acc", "eval/greedy_acc_se"]
    return ["step", "loss", "lr", "grad_norm", "tokens", "tok_per_s", "time_s"] + ev


RESUME_IGNORES = {"progress", "tensorboard_dir", "checkpoint_every"}
"""Fields of :class:`SFTConfig` that may change on resume (threads and device stay: they change floating-point
results)."""
_RESUME_HINTS = {"max_steps": "it is the horizon of the cosine learning-rate decay, so the run cannot be extended "
                              "along the same schedule; start a new run (another --out-dir, or --overwrite)"}


def _run_dir(cfg: SFTConfig, out_dir, resume: bool, overwrite: bool, stop_after) -> RunDir:
    """:func:`check_run`'s checks; the run's folder."""
    require_config(cfg, SFTConfig, "train_sft", "SFT_PRESETS")
    run = RunDir(out_dir, cfg.tensorboard_dir)
    run.check(resume=resume, overwrite=overwrite, stop_after=stop_after, device=cfg.device)
    return run


def check_run(cfg: SFTConfig, *, out_dir=None, resume=False, overwrite=False, stop_after=None) -> Path | None:
    """The checks :func:`train_sft` makes before reading a checkpoint; returns ``out_dir`` as a Path.

    UsageError for a bad ``out_dir`` or ``stop_after``, another run's files, CUDA
    requested but absent; ImportError (naming the extra) for a ``tensorboard_dir``
    without TensorBoard installed.
    """
    return _run_dir(cfg, out_dir, resume, overwrite, stop_after).out_dir


@dataclass
class SFTProgress(Progress):
    """Where an SFT run stands (:class:`sims.llm.rundir.Progress`) and why it stopped."""

    status: str = "max_steps"
    """max_steps while training; in_band or overshot once an evaluation stopped the run."""

    def resume(self, ckpt: dict) -> None:
        """:meth:`Progress.resume`, and the status the checkpoint records."""
        super().resume(ckpt)
        self.status = ckpt["extra"]["status"]

    def extra(self) -> dict:
        """The checkpoint's ``extra``: :meth:`Progress.extra` and ``status``."""
        return {**super().extra(), "status": self.status}


def _evaluate(model: GPT, task: Task, cfg: SFTConfig, progress: SFTProgress, row: dict) -> bool:
    """Evaluate on the held-out problems into ``row`` and ``progress``; whether pass@1 reached the band."""
    model.eval()
    progress.final_eval = evaluate(
        model, task, n_samples=cfg.eval_samples, ks=cfg.eval_ks, temperature=cfg.eval_temperature, seed=cfg.seed + 1
    )
    row.update({f"eval/{k}": v for k, v in progress.final_eval.items()})
    band = _check_band(progress.final_eval["pass@1"], cfg)
    if band is not None:
        progress.status = band
    return band is not None


def train_sft(
    cfg: SFTConfig,
    *,
    out_dir: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    stop_after: int | None = None,
    task: Task | None = None,
) -> SFTResult:
    """Run SFT until pass@1 reaches the band or ``max_steps``.

    Parameters
    ----------
    cfg : SFTConfig
    out_dir : path, optional
        Where metrics.csv, ckpt.pt and summary.json go; required for ``resume``.
        A folder that holds another run's files is refused unless ``resume`` or
        ``overwrite``.
    resume : bool
        Continue from ``out_dir/ckpt.pt`` when it exists (its config must equal
        ``cfg`` up to ``progress``, ``tensorboard_dir`` and ``checkpoint_every``).
    overwrite : bool
        Remove the earlier run's files in ``out_dir`` (and its TensorBoard events)
        and start over.
    stop_after : int, optional
        End (status ``interrupted``) once this many steps are done, as a kill would;
        for testing resumption.
    task : Task, optional
        Prebuilt ``build_task(cfg)``, to skip regenerating it.

    Returns
    -------
    SFTResult

    Raises
    ------
    theory.outputs.UsageError
        Before anything is trained or written: a bad ``out_dir``, another run's
        files there, an unreadable or foreign checkpoint on ``resume``, a config
        that differs from the checkpoint's, CUDA requested but absent.
    """
    run = _run_dir(cfg, out_dir, resume, overwrite, stop_after)
    ckpt = run.resume_checkpoint(cfg, "sims.llm.sft", RESUME_IGNORES, _RESUME_HINTS) if resume else None
    if overwrite:
        run.clear()
    torch.set_num_threads(cfg.num_threads)
    task = build_task(cfg) if task is None else task
    gen = torch.Generator().manual_seed(cfg.seed)
    model = build_model(cfg, task, gen).to(cfg.device)
    optimizer = make_optimizer(model, cfg.lr, cfg.weight_decay)
    data = SFTData(task)
    p = SFTProgress()
    if ckpt is not None:
        restore_checkpoint(ckpt, model=model, optimizer=optimizer, generators={"train": gen})
        p.resume(ckpt)
    cfg_data = dataclasses.asdict(cfg)
    run.open(_csv_columns(cfg), p.history, first_step=p.step + 1)
    done, interrupted = p.status != "max_steps", False  # done: a resumed run that had already stopped
    bar = tqdm(total=cfg.max_steps, initial=p.step, desc=f"sft {cfg.task}", disable=not cfg.progress, leave=False)
    while not done and p.step < cfg.max_steps:
        t0 = time.perf_counter()
        row = sft_step(model, optimizer, data, gen, p.step, cfg)
        p.step += 1
        if p.step % cfg.eval_every == 0 or p.step == cfg.max_steps:
            done = _evaluate(model, task, cfg, p, row)
            bar.set_postfix(loss=f"{row['loss']:.3f}", pass1=f"{p.final_eval['pass@1']:.3f}")
        p.record(row, time.perf_counter() - t0)
        run.log(row)
        bar.update(1)
        if done or p.step % cfg.checkpoint_every == 0 or p.step == cfg.max_steps:
            run.save_checkpoint(step=p.step, model=model, optimizer=optimizer, generators={"train": gen},
                                config=cfg_data, extra=p.extra())
        if not done and stop_after is not None and p.step >= stop_after and p.step < cfg.max_steps:
            interrupted = True
            break
    bar.close()
    run.close()
    status = "interrupted" if interrupted else p.status
    result = SFTResult(model, task, cfg, p.step, status, p.final_eval, p.history, p.elapsed)
    if not interrupted:
        run.write_summary(summary(result))
    return result


def summary(result: SFTResult) -> dict:
    """Plain-data account of where a run stopped and how it got there."""
    return {
        "task": result.config.task,
        "difficulty": result.config.difficulty,
        "model": result.config.model,
        "params": result.model.num_params(),
        "step": result.step,
        "status": result.status,
        "elapsed_s": result.elapsed_s,
        "final_eval": result.final_eval,
        "config": dataclasses.asdict(result.config),
    }


SFT_FIX = f"pass the ckpt.pt of a sims.llm.sft run, or an SFT preset ({', '.join(sorted(SFT_PRESETS))})"


def read_sft_checkpoint(path: str | Path, arg: str = "sft") -> tuple[dict, SFTConfig]:
    """The checkpoint at ``path`` and its :class:`SFTConfig`; a one-line UsageError naming ``arg`` otherwise.

    Refused: a missing file, a folder (with a hint when it holds ``ckpt.pt``), a
    file ``torch.load`` cannot read (a CSV, a truncated copy), and a checkpoint of
    another command (an RL run's ``ckpt.pt``).
    """
    path = Path(path)
    if path.is_dir() and (path / "ckpt.pt").is_file():
        raise UsageError(f"{arg}: {path} is a run's folder; pass its checkpoint file {path / 'ckpt.pt'}")
    ckpt = read_checkpoint(path, arg=arg, fix=SFT_FIX)
    data = dict(ckpt.get("config") or {})
    if "objective" in data:
        raise UsageError(f"{arg}: {path} is a checkpoint of an RL run (sims.llm.rl), not of SFT; {SFT_FIX}")
    fields = {f.name for f in dataclasses.fields(SFTConfig)}
    if not data or set(data) - fields:
        raise UsageError(f"{arg}: {path} is not a checkpoint of sims.llm.sft (its config is not an SFTConfig); {SFT_FIX}")
    data["eval_ks"] = tuple(data["eval_ks"])
    try:
        cfg = SFTConfig(**data)
    except ValueError as e:
        raise UsageError(f"{arg}: {path} holds an invalid SFT config ({e}); {SFT_FIX}") from None
    return ckpt, cfg


def load_sft(path: str | Path) -> tuple[GPT, Task, SFTConfig]:
    """Model (at the checkpoint's weights, on the CPU), task and config of an SFT checkpoint.

    Raises :class:`theory.outputs.UsageError` (one line, naming ``sft``) for a
    file that is not an SFT checkpoint (see :func:`read_sft_checkpoint`).
    """
    ckpt, cfg = read_sft_checkpoint(path)
    task = build_task(cfg)
    model = build_model(cfg, task, torch.Generator().manual_seed(cfg.seed))
    model.load_state_dict(ckpt["model"])
    return model, task, cfg


def warm_start(sft: str, out_dir: str | Path, num_threads: int) -> str:
    """The SFT checkpoint a grid of runs starts from.

    ``sft`` is an SFT preset name or a checkpoint file. A file is returned as is; a
    preset is trained once into ``out_dir/sft`` with ``num_threads`` threads (resumed,
    so a finished one is not retrained) and its checkpoint path returned.
    """
    if sft not in SFT_PRESETS:
        return sft
    cfg = dataclasses.replace(SFT_PRESETS[sft], num_threads=num_threads, progress=False)
    train_sft(cfg, out_dir=Path(out_dir) / "sft", resume=True)
    return str(Path(out_dir) / "sft" / "ckpt.pt")


def check_sft_arg(sft: str, arg: str = "sft") -> None:
    """A one-line UsageError unless ``sft`` is an SFT preset or an SFT checkpoint file (read, not loaded)."""
    if sft not in SFT_PRESETS:
        if not Path(sft).exists():
            raise UsageError(f"{arg}: {sft!r} is neither an SFT preset ({', '.join(sorted(SFT_PRESETS))}) nor a file; {SFT_FIX}")
        read_sft_checkpoint(sft, arg)


@cli_main
def main(argv=None) -> dict:
    """``python -m sims.llm.sft``: one SFT run; prints its summary as JSON."""
    pre = Parser(prog="python -m sims.llm.sft", add_help=False)
    pre.add_argument("--preset", choices=sorted(SFT_PRESETS), default="default")
    base = SFT_PRESETS[pre.parse_known_args(argv)[0].preset]
    difficulties = "; ".join(f"{t}: {', '.join(sorted(SPECS[t].presets))}" for t in sorted(SPECS))
    p = Parser(
        prog="python -m sims.llm.sft",
        description=__doc__.splitlines()[0],
        epilog=f"Difficulty presets by task: {difficulties}.",
    )
    p.add_argument("--preset", choices=sorted(SFT_PRESETS), default="default",
                   help="base config; the flags below change single fields (default: 'default'; choices: "
                   + ", ".join(sorted(SFT_PRESETS)) + ")")
    p.add_argument("--out-dir", type=Path, default=None,
                   help="write metrics.csv, ckpt.pt, summary.json here (default: none; nothing is saved)")
    add_run_arguments(p, ", --max-steps included: it is the horizon of the learning-rate decay",
                      "its metrics.csv, ckpt.pt, summary.json, TensorBoard events")
    add_dataclass_arguments(p, SFTConfig, base,
                            choices={"task": sorted(SPECS), "model": sorted(MODEL_PRESETS)})
    args, cfg = config_from_args(p, argv, SFTConfig, base)
    run = dict(out_dir=args.out_dir, resume=args.resume, overwrite=args.overwrite, stop_after=args.stop_after)
    try:
        try:
            check_run(cfg, **run)
        except ImportError as e:  # the tensorboard extra is missing
            raise UsageError(f"tensorboard_dir: {e}") from None
        if args.out_dir is None:
            note("python -m sims.llm.sft: no --out-dir given, so nothing will be saved (no metrics.csv, ckpt.pt)")
        res = train_sft(cfg, **run)
    except UsageError as e:
        raise usage_error(e, SFTConfig) from None
    out = summary(res)
    print(json.dumps({k: v for k, v in out.items() if k != "config"}, indent=2))
    return out


if __name__ == "__main__":
    main()
