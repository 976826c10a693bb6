"""The torch backend: generated code run eagerly on torch tensors, on any device
(``symflop.lower.backend``).

Every elementary function comes from the table ``symflop.core.ops``.  Python scalars
(hyperparameters, sizes) stay Python floats, computed in double precision with
``math``, so they never lower a tensor's precision; ``add(alpha=)``, ``addcmul`` and
``addcdiv`` run the fused calls.  A CPU call takes the cores other work leaves free
(``symflop.lower.threads``).
"""

from __future__ import annotations

import contextlib
import operator

import numpy as np

from symflop.core.ops import OPS
from symflop.errors import UsageError
from symflop.lower.backend import SCALAR, block_rows, label_shape
from symflop.lower.threads import threads_for

_PYTHON = {"add": operator.add, "sub": operator.sub, "mul": operator.mul,
           "div": operator.truediv}


class TorchBackend:
    """torch tensors on any device, run eagerly: blocks of rows on a CPU, whole tensors
    on a GPU; random draws from one ``torch.Generator`` per device (with a seed)."""

    name = "torch"
    compiles = False

    def __init__(self, seed: int | None = None):
        try:
            import torch
        except ImportError:
            raise UsageError(
                f"the {self.name} backend needs torch: pip install 'symflop[torch]'"
            ) from None
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
            if isinstance(x, SCALAR):
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
        return block_rows(extent, per_row)

    def empty(self, shape, like):
        return self.torch.empty(shape, dtype=like.dtype, device=like.device)

    def result(self, out: dict | None, name: str, shape, like):
        """The array a result is written into: the caller's, if given, else a new one."""
        if out and name in out:
            return out[name]
        return self.empty(shape, like)

    def assign(self, dst, value):
        if isinstance(value, SCALAR):
            dst.fill_(value)
        else:
            dst.copy_(value)

    def accumulate(self, acc, part, op: str):
        """``acc`` += ``part`` (or the larger of the two), in ``acc``'s buffer."""
        if op == "sum":
            return acc.add_(part)
        return self.torch.maximum(acc, part, out=acc)

    def _arith(self, fn: str, a, b, out):
        if isinstance(a, SCALAR) and isinstance(b, SCALAR):
            return _PYTHON[fn](a, b)
        if isinstance(a, SCALAR):
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
        return -a if isinstance(a, SCALAR) else self.torch.neg(a, out=out)

    def pow(self, a, n, out=None, reuse=None):
        out = out if out is not None else reuse
        return a ** n if isinstance(a, SCALAR) else self.torch.pow(a, n, out=out)

    def _fused(self, fused: str, unfused, a, args, s, sub: bool, out, reuse):
        """``a`` plus (minus) ``s`` times ``fused``'s product of ``args``, in one torch
        operation when ``s`` is a number; else (a 0-dimensional tensor) the operations
        apart, ``unfused(s)`` giving the product."""
        out = out if out is not None else reuse
        if not isinstance(s, SCALAR):
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
        if isinstance(x, SCALAR):
            return 1.0 / x
        return x.reciprocal() if out is None else self.torch.reciprocal(x, out=out)

    def divide(self, a, b, out=None, reuse=None):
        out = out if out is not None else reuse
        if isinstance(b, SCALAR):
            return a / b
        # torch runs a Python c / x as x.reciprocal() * c: two operations, not one
        return self._arith("div", a, b, out)

    def _binary(self, fn, a, b):
        t = self.torch
        if isinstance(a, SCALAR) and isinstance(b, SCALAR):
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
        labels = labels.expand(label_shape(tuple(base.shape), axis))
        if isinstance(values, SCALAR):
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
