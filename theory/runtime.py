"""How the toolkit runs torch on small tensors: one intra-op thread.

Every tensor of the theory and the simulators is small (one row per bandit, a few
thousand elements); torch's thread pool only adds overhead on such tensors, and a
great deal of it (ms per operation) when the CPU is shared with other processes.
"""

from __future__ import annotations

import contextlib

import torch

__all__ = ["torch_single_thread"]


class torch_single_thread(contextlib.ContextDecorator):
    """Torch intra-op threads set to 1 inside the block (or the decorated function), restored afterwards.

    ``with torch_single_thread(): ...`` or ``@torch_single_thread()``.
    """

    def __enter__(self):
        self._n = torch.get_num_threads()
        if self._n != 1:
            torch.set_num_threads(1)
        return self

    def __exit__(self, *exc):
        if self._n != 1:
            torch.set_num_threads(self._n)
        return False
