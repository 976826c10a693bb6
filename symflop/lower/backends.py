"""Array namespaces the generated code calls (``xp.exp``, ``xp.sum``, ...).

The same generated source runs on NumPy arrays and on torch tensors on any
device.  Every elementary function comes from the table ``symflop.core.ops``
(one row per function, read here for both backends).  Python scalars
(hyperparameters, sizes) stay Python floats, computed in double precision with
``math``, so they never lower a tensor's precision.  A one-hot tensor arrives
as its integer labels; ``gather`` reads values at the labels and ``scatter_add``
adds values there.
"""

from __future__ import annotations

import contextlib
import operator

import numpy as np

from symflop.core.ops import OPS
from symflop.errors import UsageError
from symflop.lower.threads import threads_for

_SCALAR = (int, float)


BLOCK_ELEMENTS = 1 << 18  # elements per block of rows: a few such buffers stay in cache


def _numpy_function(op):
    def f(x, out=None, reuse=None):
        out = out if out is not None else reuse
        if isinstance(x, _SCALAR):
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


def _block_rows(extent: int, per_row: int) -> int:
    return max(1, min(extent, BLOCK_ELEMENTS // max(per_row, 1)))


class NumpyBackend:
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
        return _block_rows(extent, per_row)

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
        labels = np.broadcast_to(labels, _label_shape(base.shape, axis))
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


_PYTHON = {"add": operator.add, "sub": operator.sub, "mul": operator.mul,
           "div": operator.truediv}


def _label_shape(shape: tuple, axis: int) -> tuple:
    return tuple(1 if n == axis else s for n, s in enumerate(shape))


class TorchBackend:
    name = "torch"
    compiles = False

    def __init__(self, seed: int | None = None):
        import torch
        self.torch = torch
        self.seed = seed
        self._generators: dict = {}
        for op in OPS:
            setattr(self, op.name, self._function(op))

    @staticmethod
    def _function(op):
        import torch
        fn = op.torch(torch)
        takes_out = [True]  # until a call says otherwise (softplus, heaviside take no out=)

        def f(x, out=None, reuse=None):
            out = out if out is not None else reuse
            if isinstance(x, _SCALAR):
                return op.math(x)
            if out is None:
                return fn(x)
            if takes_out[0]:
                try:
                    return fn(x, out=out)
                except TypeError:  # refused while parsing arguments: nothing ran
                    takes_out[0] = False
            return out.copy_(fn(x))
        return f

    def host_done(self) -> None:
        """The scalar work on scalar inputs is done (a compiler may cut its graph here)."""

    def threads(self, like, elements: int):
        """On a CPU, as many intra-op threads as the cores other work leaves free
        (``symflop.lower.threads``); on a GPU, nothing to choose."""
        if like is None or getattr(like, "is_cuda", False) or self.compiles:
            return contextlib.nullcontext()  # Inductor fixed its kernels' threads
        return threads_for(self.torch, elements)

    def contract(self, spec: str, a, b):
        """A matrix product written as an einsum (a batched matrix product underneath)."""
        return self.torch.einsum(spec, a, b)

    def rows(self, extent: int, per_row: int, like=None) -> int:
        """Rows of a blocked kernel run at once: all of them on a GPU, where the caching
        allocator makes full-size temporaries cheap and small launches are not."""
        if like is not None and getattr(like, "is_cuda", False):
            return extent
        return _block_rows(extent, per_row)

    def empty(self, shape, like):
        return self.torch.empty(shape, dtype=like.dtype, device=like.device)

    def result(self, out: dict | None, name: str, shape, like):
        """The array a result is written into: the caller's, if given, else a new one."""
        if out and name in out:
            return out[name]
        return self.empty(shape, like)

    def assign(self, dst, value):
        if isinstance(value, _SCALAR):
            dst.fill_(value)
        else:
            dst.copy_(value)

    def accumulate(self, acc, part, op: str):
        """``acc`` += ``part`` (or the larger of the two), in ``acc``'s buffer."""
        if op == "sum":
            return acc.add_(part)
        return self.torch.maximum(acc, part, out=acc)

    def _arith(self, fn: str, a, b, out):
        if isinstance(a, _SCALAR) and isinstance(b, _SCALAR):
            return _PYTHON[fn](a, b)
        if isinstance(a, _SCALAR):
            if fn in ("add", "mul"):
                a, b = b, a
            else:
                a = self.torch.as_tensor(a, dtype=b.dtype, device=b.device)
        f = getattr(self.torch, fn)
        return f(a, b) if out is None else f(a, b, out=out)

    def add(self, a, b, out=None, reuse=None):
        return self._arith("add", a, b, out if out is not None else reuse)

    def sub(self, a, b, out=None, reuse=None):
        return self._arith("sub", a, b, out if out is not None else reuse)

    def mul(self, a, b, out=None, reuse=None):
        return self._arith("mul", a, b, out if out is not None else reuse)

    def div(self, a, b, out=None, reuse=None):
        return self._arith("div", a, b, out if out is not None else reuse)

    def neg(self, a, out=None, reuse=None):
        out = out if out is not None else reuse
        return -a if isinstance(a, _SCALAR) else self.torch.neg(a, out=out)

    def pow(self, a, n, out=None, reuse=None):
        out = out if out is not None else reuse
        return a ** n if isinstance(a, _SCALAR) else self.torch.pow(a, n, out=out)

    def _fused(self, fused: str, unfused, a, args, s, sub: bool, out, reuse):
        """``a`` plus (minus) ``s`` times ``fused``'s product of ``args``, in one torch
        operation when ``s`` is a number; else (a 0-dimensional tensor) the operations
        apart, ``unfused(s)`` giving the product."""
        out = out if out is not None else reuse
        if not isinstance(s, _SCALAR):
            return self._arith("sub" if sub else "add", a, unfused(s), out)
        kwargs = {"alpha" if fused == "add" else "value": -s if sub else s}
        if out is not None:
            kwargs["out"] = out
        return getattr(self.torch, fused)(a, *args, **kwargs)

    def axpy(self, a, x, s, sub=False, out=None, reuse=None):
        """``a + s*x`` (``a - s*x`` with ``sub``): torch's ``add(alpha=s)``."""
        return self._fused("add", lambda s: self.mul(s, x), a, (x,), s, sub, out, reuse)

    def addcmul(self, a, x, y, s, sub=False, out=None, reuse=None):
        """``a + s*x*y`` (``a - s*x*y`` with ``sub``): torch's ``addcmul``."""
        return self._fused("addcmul", lambda s: self.mul(s, self.mul(x, y)), a, (x, y), s,
                           sub, out, reuse)

    def addcdiv(self, a, x, y, s, sub=False, out=None, reuse=None):
        """``a + s*x/y`` (``a - s*x/y`` with ``sub``): torch's ``addcdiv``."""
        return self._fused("addcdiv", lambda s: self.div(self.mul(s, x), y), a, (x, y), s,
                           sub, out, reuse)

    def uniform(self, shape, like):
        device = like.device if like is not None else "cpu"
        dtype = like.dtype if like is not None else self.torch.float64
        gen = None
        if self.seed is not None:
            gen = self._generators.get(device)
            if gen is None:
                gen = self.torch.Generator(device=device).manual_seed(self.seed)
                self._generators[device] = gen
        return self.torch.rand(shape, generator=gen, dtype=dtype, device=device)

    def is_array(self, x) -> bool:
        return isinstance(x, self.torch.Tensor)

    def low_precision(self, like):
        """The dtype of a half-precision tensor (computed in float32), else None."""
        low = (self.torch.float16, self.torch.bfloat16)
        return like.dtype if like is not None and like.dtype in low else None

    def to_float32(self, x):
        return x.float()

    def cast(self, x, dtype):
        return x.to(dtype)

    def asarray(self, x):
        return x if self.is_array(x) else self.torch.as_tensor(x, dtype=self.torch.float64)

    def reciprocal(self, x, out=None, reuse=None):
        out = out if out is not None else reuse
        if isinstance(x, _SCALAR):
            return 1.0 / x
        return x.reciprocal() if out is None else self.torch.reciprocal(x, out=out)

    def divide(self, a, b, out=None, reuse=None):
        out = out if out is not None else reuse
        if isinstance(b, _SCALAR):
            return a / b
        # torch runs a Python c / x as x.reciprocal() * c: two operations, not one
        return self._arith("div", a, b, out)

    def _binary(self, fn, a, b):
        t = self.torch
        if isinstance(a, _SCALAR) and isinstance(b, _SCALAR):
            return getattr(np, fn)(a, b).item()
        like = a if self.is_array(a) else b
        a = a if self.is_array(a) else t.as_tensor(a, dtype=like.dtype, device=like.device)
        b = b if self.is_array(b) else t.as_tensor(b, dtype=like.dtype, device=like.device)
        return getattr(t, fn)(a, b)

    def maximum(self, a, b):
        return self._binary("maximum", a, b)

    def minimum(self, a, b):
        return self._binary("minimum", a, b)

    def where(self, c, a, b, like=None):
        t = self.torch
        if isinstance(c, bool):
            return a if c else b
        dtype = like.dtype if like is not None else t.float64
        a = a if self.is_array(a) else t.as_tensor(a, dtype=dtype, device=c.device)
        b = b if self.is_array(b) else t.as_tensor(b, dtype=dtype, device=c.device)
        return t.where(c, a, b)

    def logical_and(self, a, b):
        return self.torch.logical_and(a, b)

    def logical_or(self, a, b):
        return self.torch.logical_or(a, b)

    def logical_not(self, a):
        return self.torch.logical_not(a)

    def sum(self, x, axes):
        return self.torch.sum(x, dim=axes, keepdim=True)

    def amax(self, x, axes):
        return self.torch.amax(x, dim=axes, keepdim=True)

    def one_hot(self, labels, n, like=None):
        dtype = like.dtype if like is not None else self.torch.float64
        return self.torch.nn.functional.one_hot(labels.long(), n).to(dtype)

    def gather(self, x, axis, labels):
        shape = list(self.torch.broadcast_shapes(x.shape, labels.shape))
        shape[axis] = x.shape[axis]
        x = x.expand(shape)
        shape[axis] = 1
        return x.gather(axis, labels.expand(shape))

    def scatter_add(self, base, axis, labels, values):
        return self.scatter_add_(base.clone(), axis, labels, values)

    def scatter_add_(self, base, axis, labels, values):
        """Adds ``values`` at ``labels`` into ``base`` itself."""
        t = self.torch
        labels = labels.expand(_label_shape(tuple(base.shape), axis))
        if isinstance(values, _SCALAR):
            values = t.full(labels.shape, values, dtype=base.dtype, device=base.device)
        else:
            values = values.expand(labels.shape)
        return base.scatter_add_(axis, labels, values)

    def squeeze(self, x, axes):
        return x.squeeze(axes)

    def permute(self, x, perm):
        return x.permute(perm)

    def broadcast_to(self, x, shape, like):
        t = self.torch
        if not self.is_array(x):  # no array input at all: float64 on the CPU
            x = t.as_tensor(x, dtype=like.dtype if like is not None else t.float64,
                            device=like.device if like is not None else "cpu")
        return t.broadcast_to(x, shape).clone()


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


BACKENDS = ("numpy", "torch", "torch-compiled")
_SHARED: dict = {}


def get_backend(name_or_backend, seed: int | None = None):
    """A backend by name (``numpy``, ``torch``, ``torch-compiled``); ``seed`` fixes its
    random draws.  Without a seed, the compiled backend is one object, so that what
    torch.compile guarded on stays the same from call to call."""
    if not isinstance(name_or_backend, str):
        return name_or_backend
    if name_or_backend == "numpy":
        return NumpyBackend(seed)
    kinds = {"torch": TorchBackend, "torch-compiled": CompiledTorchBackend}
    if name_or_backend in kinds:
        try:
            if seed is None and name_or_backend == "torch-compiled":
                if name_or_backend not in _SHARED:
                    _SHARED[name_or_backend] = CompiledTorchBackend()
                return _SHARED[name_or_backend]
            return kinds[name_or_backend](seed)
        except ImportError:
            raise UsageError(
                f"the {name_or_backend} backend needs torch: pip install 'symflop[torch]'"
            ) from None
    raise UsageError(f"unknown backend {name_or_backend!r} (known: {', '.join(BACKENDS)})")
