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

import numpy as np

from symflop.core.ops import OPS
from symflop.errors import UsageError

_SCALAR = (int, float)


def _numpy_function(op):
    def f(x):
        if isinstance(x, _SCALAR):
            return op.math(x)
        return op.numpy(x)
    return staticmethod(f)


class NumpyBackend:
    name = "numpy"

    def __init__(self, seed: int | None = None):
        self.rng = np.random.default_rng(seed)

    def uniform(self, shape, like):
        return self.rng.random(shape, dtype=np.float32 if like is not None
                               and like.dtype == np.float32 else np.float64)

    @staticmethod
    def is_array(x) -> bool:
        return isinstance(x, np.ndarray)

    @staticmethod
    def asarray(x):
        return np.asarray(x, dtype=np.float64) if not isinstance(x, np.ndarray) else x

    maximum, minimum = map(staticmethod, (np.maximum, np.minimum))
    logical_and, logical_or, logical_not = map(
        staticmethod, (np.logical_and, np.logical_or, np.logical_not))

    @staticmethod
    def reciprocal(x):
        return 1.0 / x

    @staticmethod
    def divide(a, b):
        return a / b

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

    @staticmethod
    def scatter_add(base, axis, labels, values):
        out = np.array(base, copy=True)
        labels = np.broadcast_to(labels, _label_shape(out.shape, axis))
        values = np.broadcast_to(values, labels.shape)
        np.put_along_axis(out, labels, np.take_along_axis(out, labels, axis=axis) + values,
                          axis=axis)
        return out

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


def _label_shape(shape: tuple, axis: int) -> tuple:
    return tuple(1 if n == axis else s for n, s in enumerate(shape))


class TorchBackend:
    name = "torch"

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

        def f(x):
            if isinstance(x, _SCALAR):
                return op.math(x)
            return fn(x)
        return f

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

    def asarray(self, x):
        return x if self.is_array(x) else self.torch.as_tensor(x, dtype=self.torch.float64)

    def reciprocal(self, x):
        return 1.0 / x if isinstance(x, _SCALAR) else x.reciprocal()

    def divide(self, a, b):
        if isinstance(b, _SCALAR):
            return a / b
        # torch runs a Python c / x as x.reciprocal() * c: two operations, not one
        return self.torch.div(self.torch.as_tensor(a, dtype=b.dtype, device=b.device), b)

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
        t = self.torch
        labels = labels.expand(_label_shape(tuple(base.shape), axis))
        if isinstance(values, _SCALAR):
            values = t.full(labels.shape, values, dtype=base.dtype, device=base.device)
        else:
            values = values.expand(labels.shape)
        return base.clone().scatter_add_(axis, labels, values)

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


def get_backend(name_or_backend, seed: int | None = None):
    """A backend by name (``numpy``, ``torch``); ``seed`` fixes its random draws."""
    if not isinstance(name_or_backend, str):
        return name_or_backend
    if name_or_backend == "numpy":
        return NumpyBackend(seed)
    if name_or_backend == "torch":
        try:
            return TorchBackend(seed)
        except ImportError:
            raise UsageError(
                "the torch backend needs torch: pip install 'symflop[torch]'") from None
    raise UsageError(f"unknown backend {name_or_backend!r} (known: numpy, torch)")
