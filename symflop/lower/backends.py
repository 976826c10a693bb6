"""Array namespaces the generated code calls (``xp.exp``, ``xp.sum``, ...).

The same generated source runs on NumPy arrays and on torch tensors on any
device.  Python scalars (hyperparameters, sizes) stay Python floats, computed
in double precision with ``math``, so they never lower a tensor's precision.
"""

from __future__ import annotations

import math

import numpy as np

from symflop.errors import UsageError

_SCALAR = (int, float)


class NumpyBackend:
    name = "numpy"

    def __init__(self, seed: int | None = None):
        self.rng = np.random.default_rng(seed)

    def uniform(self, shape, like):
        return self.rng.random(shape, dtype=like.dtype if like.dtype == np.float32
                               else np.float64)

    floor = staticmethod(np.floor)

    @staticmethod
    def is_array(x) -> bool:
        return isinstance(x, np.ndarray)

    @staticmethod
    def asarray(x):
        return np.asarray(x, dtype=np.float64) if not isinstance(x, np.ndarray) else x

    # staticmethod: some NumPy callables are Python functions and would bind as methods.
    exp, log, log1p, sqrt = map(staticmethod, (np.exp, np.log, np.log1p, np.sqrt))
    abs, sign, tanh, sin, cos = map(staticmethod, (np.abs, np.sign, np.tanh, np.sin, np.cos))
    maximum, minimum = map(staticmethod, (np.maximum, np.minimum))
    logical_and, logical_or, logical_not = map(
        staticmethod, (np.logical_and, np.logical_or, np.logical_not))

    @staticmethod
    def reciprocal(x):
        return 1.0 / x

    @staticmethod
    def where(c, a, b, like=None):
        out = np.where(c, a, b)
        dtype = like.dtype if like is not None else np.float64
        return out.astype(dtype) if isinstance(out, np.ndarray) else dtype.type(out)

    @staticmethod
    def softplus(x):
        return np.logaddexp(0.0, x)

    @staticmethod
    def heaviside(x):
        return np.heaviside(x, 0.5)

    # Reductions keep the reduced axes (size 1), so that results broadcast against the
    # step's other factors; the step squeezes them at the end.
    @staticmethod
    def sum(x, axes):
        return np.sum(x, axis=axes, keepdims=True)

    @staticmethod
    def logsumexp(x, axes):
        m = np.max(x, axis=axes, keepdims=True)
        m = np.where(np.isfinite(m), m, 0.0)
        return np.log(np.sum(np.exp(x - m), axis=axes, keepdims=True)) + m

    @staticmethod
    def squeeze(x, axes):
        return np.squeeze(x, axis=axes)

    @staticmethod
    def permute(x, perm):
        return np.transpose(x, perm)

    @staticmethod
    def broadcast_to(x, shape, like):
        return np.broadcast_to(np.asarray(x, dtype=like.dtype), shape).copy()


def _scalar_or(torch_fn, math_fn):
    def f(x):
        if isinstance(x, _SCALAR):
            return math_fn(x)
        return torch_fn(x)
    return staticmethod(f)


class TorchBackend:
    name = "torch"

    def __init__(self, seed: int | None = None):
        import torch
        self.torch = torch
        self.seed = seed
        self._generators: dict = {}

    def uniform(self, shape, like):
        gen = None
        if self.seed is not None:
            gen = self._generators.get(like.device)
            if gen is None:
                gen = self.torch.Generator(device=like.device).manual_seed(self.seed)
                self._generators[like.device] = gen
        return self.torch.rand(shape, generator=gen, dtype=like.dtype, device=like.device)

    floor = _scalar_or(lambda x: x.floor(), math.floor)

    def is_array(self, x) -> bool:
        return isinstance(x, self.torch.Tensor)

    def asarray(self, x):
        return x if self.is_array(x) else self.torch.as_tensor(x, dtype=self.torch.float64)

    exp = _scalar_or(lambda x: x.exp(), math.exp)
    log = _scalar_or(lambda x: x.log(), math.log)
    log1p = _scalar_or(lambda x: x.log1p(), math.log1p)
    sqrt = _scalar_or(lambda x: x.sqrt(), math.sqrt)
    abs = _scalar_or(lambda x: x.abs(), abs)
    sign = _scalar_or(lambda x: x.sign(), lambda x: float(np.sign(x)))
    tanh = _scalar_or(lambda x: x.tanh(), math.tanh)
    sin = _scalar_or(lambda x: x.sin(), math.sin)
    cos = _scalar_or(lambda x: x.cos(), math.cos)

    reciprocal = _scalar_or(lambda x: x.reciprocal(), lambda x: 1.0 / x)

    def softplus(self, x):
        if isinstance(x, _SCALAR):
            return float(np.logaddexp(0.0, x))
        return self.torch.nn.functional.softplus(x, beta=1.0, threshold=20.0)

    def heaviside(self, x):
        if isinstance(x, _SCALAR):
            return float(np.heaviside(x, 0.5))
        return self.torch.heaviside(x, self.torch.tensor(0.5, dtype=x.dtype, device=x.device))

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

    def logsumexp(self, x, axes):
        return self.torch.logsumexp(x, dim=axes, keepdim=True)

    def squeeze(self, x, axes):
        return x.squeeze(axes)

    def permute(self, x, perm):
        return x.permute(perm)

    def broadcast_to(self, x, shape, like):
        t = self.torch
        x = x if self.is_array(x) else t.as_tensor(x, dtype=like.dtype, device=like.device)
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
