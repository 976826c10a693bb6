"""Callable wrappers around generated code: input checks, then one vectorized call."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from symflop.core.model import Tensor
from symflop.errors import InputError
from symflop.lower.backends import get_backend
from symflop.lower.codegen import Signature


@dataclass
class CompiledPass:
    """A generated function with the checks a caller should not have to write.

    Sizes are read off the arrays and must agree between tensors; a missing
    tensor, a wrong number of axes, a size that disagrees, or a NaN/Inf input
    raises ``InputError`` naming the tensor, before any arithmetic is done.
    """

    name: str
    source: str
    signature: Signature
    shapes: dict[str, tuple[str, ...]]
    fn: object = None

    def __post_init__(self):
        namespace: dict = {}
        exec(compile(self.source, f"<symflop {self.name}>", "exec"), namespace)  # noqa: S102
        self.fn = namespace[self.name.replace("-", "_").replace(".", "_")]

    def __call__(self, backend="numpy", check: bool = True, sizes: dict | None = None,
                 seed: int | None = None, **values):
        """Run on named arrays; ``sizes`` gives sizes no input carries (e.g. ``{"n": 4}``);
        ``seed`` fixes random draws (with a backend name; a backend object keeps its own)."""
        xp = get_backend(backend, seed)
        sig = self.signature
        missing = [n for n in sig.inputs if n not in values]
        if missing:
            raise InputError(f"{self.name}: missing input(s): {', '.join(missing)}")
        unknown = sorted(set(values) - set(sig.inputs))
        if unknown:
            raise InputError(f"{self.name}: unexpected input(s): {', '.join(unknown)} "
                             f"(takes {', '.join(sig.inputs)})")
        dims = self._dims(values, check, xp, dict(sizes or {}))
        args = [dims[d] for d in sig.dims] + [values[n] for n in sig.inputs]
        try:
            return self.fn(xp, *args)
        except ZeroDivisionError:
            sizes = ", ".join(f"{k}={v}" for k, v in dims.items())
            raise InputError(f"{self.name}: division by zero at sizes {sizes} (a formula "
                             "such as N/(N - 1) needs a larger size)") from None

    def _dims(self, values, check: bool, xp, dims: dict[str, int]) -> dict[str, int]:
        source: dict[str, str] = dict.fromkeys(dims, "sizes")
        for name in self.signature.inputs:
            v, shape = values[name], self.shapes[name]
            if not shape:
                if check and xp.is_array(v) and v.ndim != 0:
                    raise InputError(f"{self.name}: {name} must be a scalar, got shape "
                                     f"{tuple(v.shape)}")
                if check and not _finite_scalar(v):
                    raise InputError(f"{self.name}: {name} is {v} (NaN or infinite)")
                continue
            if not xp.is_array(v):
                raise InputError(f"{self.name}: {name} must be a {xp.name} array, "
                                 f"got {type(v).__name__}")
            if v.ndim != len(shape):
                raise InputError(f"{self.name}: {name} must have {len(shape)} axes "
                                 f"({', '.join(shape)}), got shape {tuple(v.shape)}")
            for axis, (d, n) in enumerate(zip(shape, v.shape)):
                n = int(n)
                if d in dims and dims[d] != n:
                    raise InputError(
                        f"{self.name}: {name} axis {axis} has size {n}, but {d} = {dims[d]} "
                        f"from {source[d]}")
                dims.setdefault(d, n)
                source.setdefault(d, name)
            if check and not _all_finite(v):
                raise InputError(f"{self.name}: {name} contains NaN or infinite values")
        absent = [d for d in self.signature.dims if d not in dims]
        if absent:
            raise InputError(f"{self.name}: cannot tell the size(s) {', '.join(absent)} "
                             "from the inputs; pass sizes={...}")
        for d, n in dims.items():
            if not isinstance(n, int) or n < 1:
                raise InputError(f"{self.name}: size {d} = {n}; sizes must be positive")
        return dims


def _finite_scalar(v) -> bool:
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def _all_finite(v) -> bool:
    if isinstance(v, np.ndarray):
        return bool(np.isfinite(v).all())
    return bool(v.isfinite().all())


def shapes_of(tensors: dict[str, Tensor], names) -> dict[str, tuple[str, ...]]:
    return {n: tuple(str(s) for s in tensors[n].shape) for n in names}
