"""Callable wrappers around generated code: input checks, then one vectorized call."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np

from symflop.core.model import Fact, Tensor
from symflop.errors import InputError
from symflop.lower.backend import Backend, CompilingBackend
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
    fn: Any = None
    result_shapes: dict = field(default_factory=dict)  # result -> axis sizes (names)
    compile_seconds: dict = field(default_factory=dict)  # per input signature: first call
    nonfinite_ok: frozenset = frozenset()  # inputs the equations test for Inf/NaN themselves
    carried: frozenset = frozenset()  # statistics a later pass reads: float32 for half inputs
    _torch_compiled: Any = None
    _scalars: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        namespace: dict = {}
        exec(compile(self.source, f"<symflop {self.name}>", "exec"), namespace)  # noqa: S102
        self.fn = namespace[self.name.replace("-", "_").replace(".", "_")]

    def __call__(self, backend: str | Backend = "numpy", check: bool = True,
                 sizes: dict | None = None, seed: int | None = None, inplace: bool = False,
                 into: dict | None = None, **values) -> dict:
        """Run on named arrays; ``sizes`` gives sizes no input carries (e.g. ``{"n": 4}``);
        ``seed`` fixes random draws (with a backend name; a backend object keeps its own).

        ``inplace``: a result that updates an input elementwise (optimizer state, running
        statistics) is written into that input's buffer, as ``torch.optim`` updates
        parameters; the returned dict holds the same arrays.  The default returns new
        arrays and leaves every input as it was.  ``into`` maps result names to arrays
        the results are written into (as NumPy's and torch's ``out=``): each must have
        the result's shape, dtype and device; the returned dict holds them."""
        xp = get_backend(backend, seed)
        sig = self.signature
        self.check_names(values)
        sizes = dict(sizes or {})
        values = self._labels(values, xp, check, sizes)
        dims = self._dims(values, check, xp, sizes)
        if check:
            self._check_labels(values, dims)
        if into:
            self._check_into(into, xp, dims, values)
        # Half precision (float16, bfloat16) is computed in float32 and rounded back once,
        # as torch accumulates its reductions: a variance summed in float16 overflows.
        low = xp.low_precision(_like(values, xp))
        given = values
        if low is not None:
            values = {k: xp.to_float32(v) if xp.is_array(v) and _is_float(v) else v
                      for k, v in values.items()}
        args = [dims[d] for d in sig.dims] + [values[n] for n in sig.inputs]
        out = into if low is None else None
        try:
            result = self._run(xp, args, inplace, out, values)
            if low is not None:
                result = self._round_back(xp, result, low, given, inplace)
            for name, array in (into or {}).items():  # a step that ran in one call
                if result[name] is not array:
                    xp.assign(array, result[name])
                    result[name] = array
            return result
        except ZeroDivisionError:
            raise self._division_by_zero(given, dims) from None

    def _check_labels(self, values: dict, dims: dict[str, int]) -> None:
        """No label past the size of its one-hot axis."""
        for name, shape in self.shapes.items():
            if shape[-1:] == ("labels",) and name in values and shape[-2] in dims \
                    and bool((values[name] >= dims[shape[-2]]).any()):
                raise InputError(f"{self.name}: {name} has a label >= {shape[-2]} = "
                                 f"{dims[shape[-2]]}")

    def _run(self, xp: Backend, args: list, inplace: bool, out: dict | None,
             values: dict) -> dict:
        """The generated function on ``args``: through the compiler, or called with the
        threads its arrays' size asks for."""
        if xp.compiles:
            return self._run_compiled(cast(CompilingBackend, xp), args, inplace, out)
        elements = sum(math.prod(a.shape) for a in args if xp.is_array(a))
        with xp.threads(_like(values, xp), elements):
            return self.fn(xp, *args, _inplace=inplace, _out=out)

    def _round_back(self, xp: Backend, result: dict, low, given: dict,
                    inplace: bool) -> dict:
        """Results computed in float32 for half-precision inputs, rounded back to ``low``."""
        # state given as a Python number (a step count, a loss scale of 65536 that
        # float16 cannot hold) stays in float32
        # statistics handed to a later pass (a variance, a log-sum-exp) stay in
        # float32: rounded to float16 a variance of 1e6 is inf, a log-sum-exp of
        # 1e4 is off by 4
        result = {k: xp.cast(v, low) if xp.is_array(v) and _is_float(v)
                  and not isinstance(given.get(k), (int, float))
                  and k not in self.carried else v
                  for k, v in result.items()}
        for name in result if inplace else ():  # updated in the caller's buffer
            if name in given and xp.is_array(given[name]):
                xp.assign(given[name], result[name])
                result[name] = given[name]
        return result

    def _division_by_zero(self, given: dict, dims: dict[str, int]) -> InputError:
        """The error for a division by zero: by a number the caller gave, or by a size."""
        zero = [n for n in self.signature.inputs if isinstance(given.get(n), (int, float))
                and not isinstance(given.get(n), bool) and given[n] == 0]
        if zero:  # a number given by the caller, such as smooth-L1's beta = 0
            return InputError(f"{self.name}: division by zero: "
                              f"{', '.join(f'{n} = 0' for n in zero)} (a value that "
                              "divides must not be 0)")
        at = ", ".join(f"{k}={v}" for k, v in dims.items())
        return InputError(f"{self.name}: division by zero at sizes {at} (a formula "
                          "such as N/(N - 1) needs a larger size)")

    def check_names(self, values: dict) -> None:
        """Every input given, and nothing else."""
        inputs = self.signature.inputs
        missing = [n for n in inputs if n not in values]
        if missing:
            raise InputError(f"{self.name}: missing input(s): {', '.join(missing)}")
        unknown = sorted(set(values) - set(inputs))
        if unknown:
            raise InputError(f"{self.name}: unexpected input(s): {', '.join(unknown)} "
                             f"(takes {', '.join(inputs)})")

    def _check_into(self, into: dict, xp, dims: dict, values: dict) -> None:
        like = _like(values, xp)
        for name, array in into.items():
            if name not in self.result_shapes:
                raise InputError(f"{self.name}: into: no result {name!r} to write into "
                                 f"(results: {', '.join(self.result_shapes) or 'none'})")
            shape = tuple(dims[d] if d in dims else int(d) for d in self.result_shapes[name])
            if not xp.is_array(array) or tuple(array.shape) != shape or (
                    like is not None and (array.dtype != like.dtype
                                          or getattr(array, "device", None)
                                          != getattr(like, "device", None))):
                raise InputError(f"{self.name}: into[{name!r}] must be a {xp.name} array of "
                                 f"shape {shape}" + (f", {like.dtype}" if like is not None
                                                     else ""))

    def _run_compiled(self, xp: CompilingBackend, args: list, inplace: bool,
                      out: dict | None = None) -> dict:
        """The function through ``torch.compile``, compiled once per array signature
        (numbers that change from call to call, such as a step count, become symbolic
        after the first change: torch's automatic dynamic shapes); the first call's time
        (compilation included) is kept in ``compile_seconds``."""
        if self._torch_compiled is None:
            self._torch_compiled = xp.compile(self.fn)
        args = self._scalars_as_tensors(xp, args)
        key = (inplace,) + tuple((tuple(a.shape), str(a.dtype), str(a.device))
                                 if xp.is_array(a) else type(a).__name__ for a in args)
        key += (tuple(sorted(out)) if out else (),)
        if key in self.compile_seconds:
            return self._torch_compiled(xp, *args, _inplace=inplace, _out=out)
        start = time.perf_counter()
        result = self._torch_compiled(xp, *args, _inplace=inplace, _out=out)
        self.compile_seconds[key] = time.perf_counter() - start
        return result

    def _scalars_as_tensors(self, xp: CompilingBackend, args: list) -> list:
        """Numbers (hyperparameters, a step count) as 0-dimensional float64 tensors on the
        arrays' device: a number the compiler saw would be baked into the code and
        recompiled for at every new value (a schedule's learning rate, the step count)."""
        like = next((a for a in args if xp.is_array(a) and a.is_floating_point()), None)
        device = like.device if like is not None else "cpu"
        offset = len(self.signature.dims)
        return args[:offset] + [self._scalar(xp, float(a), device)
                                if isinstance(a, (int, float)) and not isinstance(a, bool)
                                else a for a in args[offset:]]

    def _scalar(self, xp: CompilingBackend, value: float, device):
        """A 0-dimensional tensor holding ``value``, made once per value and device (a copy
        to a GPU per call would cost more than the step); the last 64 are kept."""
        key = (value, str(device))
        hit = self._scalars.pop(key, None)
        if hit is None:
            hit = xp.scalar(value, device)
        self._scalars[key] = hit
        while len(self._scalars) > 64:
            self._scalars.pop(next(iter(self._scalars)))
        return hit

    def _labels(self, values: dict, xp, check: bool, sizes: dict) -> dict:
        """One-hot tensors in the form the code reads them: integer labels where it only
        gathers and scatters at them, dense elsewhere; either form is accepted and
        converted (a dense array also gives the class count)."""
        out = dict(values)
        for name, shape in self.shapes.items():
            if shape[-1:] not in (("labels",), ("dense",)) or name not in out:
                continue
            v, full = out[name], shape[:-1]
            if not xp.is_array(v):
                raise InputError(f"{self.name}: {name} must be a {xp.name} array of labels, "
                                 f"got {type(v).__name__}")
            if v.ndim == len(full) - 1:
                if _is_float(v):
                    raise InputError(f"{self.name}: {name} holds labels: give integers "
                                     f"(or the dense one-hot array), got {v.dtype}")
                if check and not _labels_in_range(v):
                    raise InputError(f"{self.name}: {name} has negative labels")
                if shape[-1] == "dense":
                    n = sizes.get(full[-1]) or self._size_from(full[-1], values)
                    if n is None:
                        raise InputError(f"{self.name}: cannot tell the size {full[-1]} of "
                                         f"{name}'s one-hot axis; pass sizes={{...}}")
                    v = xp.one_hot(v, int(n), _like(values, xp))
                out[name] = v
                continue
            if v.ndim != len(full):
                raise InputError(f"{self.name}: {name} must have {len(full) - 1} axes of "
                                 f"labels or {len(full)} one-hot axes, got shape "
                                 f"{tuple(v.shape)}")
            if check and not _one_hot(v):
                raise InputError(f"{self.name}: {name} is declared one-hot, but a row is not "
                                 "a single 1 among 0s")
            sizes.setdefault(full[-1], int(v.shape[-1]))
            if shape[-1] == "labels":
                out[name] = v.argmax(-1)
        return out

    def _size_from(self, dim: str, values: dict) -> int | None:
        """The size ``dim`` read off any array input that has an axis of that size."""
        for name, shape in self.shapes.items():
            if shape[-1:] in (("labels",), ("dense",)) or name not in values:
                continue
            v = values[name]
            if hasattr(v, "shape") and len(v.shape) == len(shape) and dim in shape:
                return int(v.shape[shape.index(dim)])
        return None

    def _dims(self, values, check: bool, xp, dims: dict[str, int]) -> dict[str, int]:
        source: dict[str, str] = dict.fromkeys(dims, "sizes")
        for name in self.signature.inputs:
            v, shape = values[name], self.shapes[name]
            if shape[-1:] == ("labels",):
                shape = shape[:-2]  # labels carry every axis but the one-hot one
            elif shape[-1:] == ("dense",):
                shape = shape[:-1]
            if not shape:
                if check and xp.is_array(v) and v.ndim != 0:
                    raise InputError(f"{self.name}: {name} must be a scalar, got shape "
                                     f"{tuple(v.shape)}")
                if check and name not in self.nonfinite_ok and not _finite_scalar(v):
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
            if check and name not in self.nonfinite_ok and not _all_finite(v):
                raise InputError(f"{self.name}: {name} contains NaN or infinite values")
        absent = [d for d in self.signature.dims if d not in dims]
        if absent:
            raise InputError(f"{self.name}: cannot tell the size(s) {', '.join(absent)} "
                             "from the inputs; pass sizes={...}")
        for d, n in dims.items():
            if not isinstance(n, int) or n < 1:
                raise InputError(f"{self.name}: size {d} = {n}; sizes must be positive")
        return dims


def _is_float(v) -> bool:
    return "float" in str(v.dtype)


def _labels_in_range(v) -> bool:
    return bool((v >= 0).all())


def _one_hot(v) -> bool:
    return bool(((v == 0) | (v == 1)).all()) and bool((v.sum(-1) == 1).all())


def _finite_scalar(v) -> bool:
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def _all_finite(v) -> bool:
    if isinstance(v, np.ndarray):
        return bool(np.isfinite(v).all())
    return bool(v.isfinite().all())


def shapes_of(tensors: dict[str, Tensor], names, labels=frozenset()) -> dict[str, tuple]:
    """Axis sizes of each input; a one-hot tensor's end with ``"labels"`` when the code
    reads it at its labels only (``labels``), else with ``"dense"``."""
    out = {}
    for n in names:
        shape = tuple(str(s) for s in tensors[n].shape)
        if tensors[n].has(Fact.ONE_HOT):
            shape += ("labels",) if n in labels else ("dense",)
        out[n] = shape
    return out


def _like(values: dict, xp):
    """A floating array among ``values`` (its dtype and device), if any: a half-precision
    one where there is one (a later pass gets float32 statistics beside half inputs)."""
    floats = [v for v in values.values() if xp.is_array(v) and _is_float(v)]
    return next((v for v in floats if xp.low_precision(v) is not None),
                floats[0] if floats else None)
