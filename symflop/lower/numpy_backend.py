"""The NumPy backend: generated code run on NumPy arrays (``symflop.lower.backend``).

Every elementary function comes from the table ``symflop.core.ops`` (one row per
function).  Python scalars (hyperparameters, sizes) stay Python floats, computed in
double precision with ``math``, so they never lower an array's precision.  A one-hot
tensor arrives as its integer labels; ``gather`` reads values at the labels and
``scatter_add`` adds values there.
"""

from __future__ import annotations

import contextlib

import numpy as np

from symflop.core.ops import OPS
from symflop.lower.backend import SCALAR, block_rows, label_shape


def _numpy_function(op):
    def f(x, out=None, reuse=None):
        out = out if out is not None else reuse
        if isinstance(x, SCALAR):
            return op.math(x)
        if out is None:
            return op.numpy(x)
        if isinstance(op.numpy, np.ufunc):
            return op.numpy(x, out=out)
        np.copyto(out, op.numpy(x))
        return out
    return staticmethod(f)


def _ufunc(f):
    """A NumPy ufunc that writes into ``out`` (a destination) or ``reuse`` (a free buffer)."""
    def g(*args, out=None, reuse=None):
        return f(*args, out=out if out is not None else reuse)
    return staticmethod(g)


def _add_after(a, product, sub: bool, out, reuse, read_later=()):
    """``a`` plus (minus, with ``sub``) what ``product(into)`` computes, written to
    ``out`` or ``reuse``; the product goes into that buffer first unless the buffer
    shares memory with ``a`` or with an operand the product reads after its first write
    (``read_later``: a quotient's denominator); then into a new array."""
    into = out if out is not None else reuse
    shared = into is not None and any(np.shares_memory(into, v) for v in (a, *read_later)
                                      if isinstance(v, np.ndarray))
    part = product(None if into is None or shared else into)
    return (np.subtract if sub else np.add)(a, part, out=into)


class NumpyBackend:
    """NumPy arrays on the CPU; random draws from ``numpy.random.default_rng(seed)``."""

    name = "numpy"
    compiles = False

    def __init__(self, seed: int | None = None):
        self.rng = np.random.default_rng(seed)

    def uniform(self, shape, like):
        return self.rng.random(shape, dtype=np.float32 if like is not None
                               and like.dtype == np.float32 else np.float64)

    @staticmethod
    def is_array(x) -> bool:
        return isinstance(x, np.ndarray)

    @staticmethod
    def low_precision(like):
        """The dtype of a half-precision array (computed in float32), else None."""
        return like.dtype if like is not None and like.dtype == np.float16 else None

    @staticmethod
    def to_float32(x):
        return x.astype(np.float32)

    @staticmethod
    def cast(x, dtype):
        return x.astype(dtype)

    @staticmethod
    def asarray(x):
        return np.asarray(x, dtype=np.float64) if not isinstance(x, np.ndarray) else x

    maximum, minimum = map(staticmethod, (np.maximum, np.minimum))
    add, sub, mul, div, neg = (_ufunc(f) for f in (np.add, np.subtract, np.multiply,
                                                   np.true_divide, np.negative))

    @staticmethod
    def pow(x, n, out=None, reuse=None):
        return np.power(x, n, out=out if out is not None else reuse)

    # NumPy has no fused forms: the product is formed first (in the destination when it
    # does not hold ``a``), then added (or subtracted, with ``sub``).
    @staticmethod
    def axpy(a, x, s, sub=False, out=None, reuse=None):
        """``a + s*x`` (``a - s*x`` with ``sub``)."""
        return _add_after(a, lambda into: np.multiply(x, s, out=into), sub, out, reuse)

    @staticmethod
    def addcmul(a, x, y, s, sub=False, out=None, reuse=None):
        """``a + s*x*y`` (``a - s*x*y`` with ``sub``)."""
        return _add_after(a, lambda into: np.multiply(np.multiply(x, y, out=into), s,
                                                      out=into), sub, out, reuse)

    @staticmethod
    def addcdiv(a, x, y, s, sub=False, out=None, reuse=None):
        """``a + s*x/y`` (``a - s*x/y`` with ``sub``)."""
        return _add_after(a, lambda into: np.true_divide(np.multiply(x, s, out=into), y,
                                                         out=into), sub, out, reuse, (y,))

    @staticmethod
    def rows(extent: int, per_row: int, like=None) -> int:
        """Rows of a blocked kernel run at once."""
        return block_rows(extent, per_row)

    @staticmethod
    def contract(spec: str, a, b):
        """A matrix product written as an einsum (BLAS underneath)."""
        return np.einsum(spec, a, b, optimize=True)

    @staticmethod
    def host_done() -> None:
        """The scalar work on scalar inputs is done (a compiler may cut its graph here)."""

    @staticmethod
    def threads(like, elements: int):
        """Where a call's threads are chosen (NumPy's operations: single-threaded)."""
        return contextlib.nullcontext()

    @staticmethod
    def empty(shape, like):
        return np.empty(shape, dtype=like.dtype)

    @classmethod
    def result(cls, out: dict | None, name: str, shape, like):
        """The array a result is written into: the caller's, if given, else a new one."""
        if out and name in out:
            return out[name]
        return cls.empty(shape, like)

    @staticmethod
    def assign(dst, value):
        np.copyto(dst, value)

    @staticmethod
    def accumulate(acc, part, op: str):
        """``acc`` += ``part`` (or the larger of the two), in ``acc``'s buffer."""
        (np.add if op == "sum" else np.maximum)(acc, part, out=acc)
        return acc

    logical_and, logical_or, logical_not = map(
        staticmethod, (np.logical_and, np.logical_or, np.logical_not))

    @staticmethod
    def reciprocal(x, out=None, reuse=None):
        out = out if out is not None else reuse
        return 1.0 / x if out is None else np.divide(1.0, x, out=out)

    @staticmethod
    def divide(a, b, out=None, reuse=None):
        out = out if out is not None else reuse
        return a / b if out is None else np.divide(a, b, out=out)

    @staticmethod
    def where(c, a, b, like=None):
        out = np.where(c, a, b)
        dtype = like.dtype if like is not None else np.float64
        return out.astype(dtype) if isinstance(out, np.ndarray) else dtype.type(out)

    # Reductions keep the reduced axes (size 1), so that results broadcast against the
    # step's other factors; the step squeezes them at the end.
    @staticmethod
    def sum(x, axes):
        return np.sum(x, axis=axes, keepdims=True)

    @staticmethod
    def amax(x, axes):
        return np.max(x, axis=axes, keepdims=True)

    @staticmethod
    def gather(x, axis, labels):
        return np.take_along_axis(x, labels, axis=axis)

    @staticmethod
    def one_hot(labels, n, like=None):
        dtype = like.dtype if like is not None else np.float64
        return np.eye(n, dtype=dtype)[labels]

    @classmethod
    def scatter_add(cls, base, axis, labels, values):
        return cls.scatter_add_(np.array(base, copy=True), axis, labels, values)

    @staticmethod
    def scatter_add_(base, axis, labels, values):
        """Adds ``values`` at ``labels`` into ``base`` itself."""
        labels = np.broadcast_to(labels, label_shape(base.shape, axis))
        values = np.broadcast_to(values, labels.shape)
        np.put_along_axis(base, labels, np.take_along_axis(base, labels, axis=axis) + values,
                          axis=axis)
        return base

    @staticmethod
    def squeeze(x, axes):
        return np.squeeze(x, axis=axes)

    @staticmethod
    def permute(x, perm):
        return np.transpose(x, perm)

    @staticmethod
    def broadcast_to(x, shape, like):
        dtype = like.dtype if like is not None else np.float64  # no array input: float64
        return np.broadcast_to(np.asarray(x, dtype=dtype), shape).copy()


for _op in OPS:
    setattr(NumpyBackend, _op.name, _numpy_function(_op))
