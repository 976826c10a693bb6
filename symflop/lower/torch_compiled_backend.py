"""The compiled torch backend: the generated torch function handed to
``torch.compile`` (``symflop.lower.backend.CompilingBackend``).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

from symflop.core.ops import OPS
from symflop.lower.torch_backend import TorchBackend


class CompiledTorchBackend(TorchBackend):
    """The generated torch function handed to ``torch.compile`` (Inductor: C++ on a CPU,
    Triton on a GPU), which fuses each pass into a few kernels itself: blocks are the
    whole tensor, so that it sees each step at once."""

    name = "torch-compiled"
    compiles = True

    def __init__(self, seed: int | None = None):
        super().__init__(seed)
        # Functional code for the compiler: a buffer offered for reuse is ignored (the
        # compiler plans its own), a destination is written with copy_.
        for name in _WRITES + tuple(op.name for op in OPS):
            setattr(self, name, _functional(getattr(self, name)))

    def rows(self, extent: int, per_row: int, like=None) -> int:
        return extent

    def compile(self, fn: Callable[..., dict]) -> Callable[..., dict]:
        """``fn`` through ``torch.compile``."""
        return self.torch.compile(fn)

    def scalar(self, value: float, device):
        """A 0-dimensional float64 tensor holding ``value`` on ``device``."""
        return self.torch.tensor(value, dtype=self.torch.float64, device=device)

    def host_done(self) -> None:
        """Ends the graph of the scalar work, so that its results are computed once and
        read by the array kernels, not recomputed for every element inside them."""
        self.torch._dynamo.graph_break()

    def sum(self, x, axes):
        """A sum along one long axis as a sum of sums over runs of ``_SPLIT`` values (the
        same additions, in another order): Inductor's CPU code reduces one long strided
        axis column group by column group, reading memory across rows; split, it runs
        down the rows with vector accumulators (bench/codegen.py: BatchNorm)."""
        if len(axes) != 1 or x.shape[axes[0]] < 4 * _SPLIT:
            return super().sum(x, axes)
        axis = axes[0] % x.ndim
        n = x.shape[axis]
        whole = n - n % _SPLIT
        head = x.narrow(axis, 0, whole)
        runs = head.reshape(*x.shape[:axis], whole // _SPLIT, _SPLIT, *x.shape[axis + 1:])
        total = runs.sum(dim=axis + 1).sum(dim=axis, keepdim=True)
        if whole < n:
            total = total + x.narrow(axis, whole, n - whole).sum(dim=axis, keepdim=True)
        return total


_SPLIT = 1024  # values per run of a split sum (the compiled backend)
_WRITES = ("add", "sub", "mul", "div", "neg", "pow", "reciprocal", "divide", "axpy",
           "addcmul", "addcdiv")


def _functional(method):
    def f(*args, out=None, reuse=None, **kwargs):
        value = method(*args, **kwargs)
        if out is None:
            return value
        out.copy_(value)
        return out
    return f


def compiled_torch_backend(seed: int | None = None) -> CompiledTorchBackend:
    """The compiled backend; ``seed`` fixes its random draws.  Without a seed it is one
    object, so that what torch.compile guarded on stays the same from call to call."""
    return CompiledTorchBackend(seed) if seed is not None else _shared()


@cache
def _shared() -> CompiledTorchBackend:
    return CompiledTorchBackend()
