"""The table of elementary functions: one row per function, read by every layer.

A row says how SymPy writes the function, what kind of operation it counts as,
how NumPy, torch and Python's ``math`` compute it, and which aten operations
torch runs for it (what the executed-operation check sees).  The lowering
(``symflop.core.ir``), the counter, both backends and the executed check read
this table, so adding a function is one row here; a SymPy function with no row
is refused with a one-line error naming it.

Arithmetic (add, multiply, divide, integer powers), comparisons, selections and
reductions are the operation tree's own nodes, not rows here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import sympy as sp

from symflop.core.functions import isinf, isnan, log1p, sigmoid, softplus

KINDS = ("add", "mul", "div", "transcendental", "compare", "random")


@dataclass(frozen=True)
class Op:
    """One elementary function of one argument.

    ``numpy`` and ``math`` are callables; ``torch`` takes the torch module and returns
    the callable (torch is optional, so it is imported only by its backend).
    """

    name: str
    sympy: type | None
    kind: str
    numpy: Callable
    math: Callable
    torch: Callable
    aten: tuple[str, ...]
    doc: str = ""


def _erf_numpy(x):
    # NumPy has no erf; math.erf per element is exact (libm), if slow.
    return np.vectorize(math.erf, otypes=[np.result_type(x, np.float32)])(x)


def _indicator(test, x):
    """A NumPy test as 0/1 values of x's floating type."""
    return np.asarray(test(x), dtype=np.result_type(x, np.float32))


def _softplus_math(x: float) -> float:
    return float(np.logaddexp(0.0, x))


def _sigmoid_numpy(x):
    # exp(-|x|) never overflows; the two branches are the same function.
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _sigmoid_math(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


OPS: tuple[Op, ...] = (
    Op("exp", sp.exp, "transcendental", np.exp, math.exp, lambda t: t.exp, ("exp",)),
    Op("log", sp.log, "transcendental", np.log, math.log, lambda t: t.log, ("log",)),
    Op("sqrt", None, "transcendental", np.sqrt, math.sqrt, lambda t: t.sqrt, ("sqrt",),
       "x**(1/2), which SymPy writes as a power"),
    Op("log1p", log1p, "transcendental", np.log1p, math.log1p, lambda t: t.log1p,
       ("log1p",), "log(1 + x), accurate for small x"),
    Op("softplus", softplus, "transcendental", lambda x: np.logaddexp(0.0, x), _softplus_math,
       lambda t: lambda x: t.nn.functional.softplus(x, beta=1.0, threshold=20.0),
       ("softplus",), "log(1 + exp(x)) without overflow"),
    Op("sigmoid", sigmoid, "transcendental", _sigmoid_numpy, _sigmoid_math,
       lambda t: t.sigmoid, ("sigmoid",), "1/(1 + exp(-x)) without overflow"),
    Op("tanh", sp.tanh, "transcendental", np.tanh, math.tanh, lambda t: t.tanh, ("tanh",)),
    Op("sin", sp.sin, "transcendental", np.sin, math.sin, lambda t: t.sin, ("sin",)),
    Op("cos", sp.cos, "transcendental", np.cos, math.cos, lambda t: t.cos, ("cos",)),
    Op("atan", sp.atan, "transcendental", np.arctan, math.atan, lambda t: t.atan, ("atan",)),
    Op("erf", sp.erf, "transcendental", _erf_numpy, math.erf, lambda t: t.erf, ("erf",),
       "NumPy evaluates it per element with math.erf (exact, slow)"),
    Op("abs", sp.Abs, "compare", np.abs, abs, lambda t: t.abs, ("abs",)),
    Op("sign", sp.sign, "compare", np.sign, lambda x: float(np.sign(x)), lambda t: t.sign,
       ("sign",)),
    Op("floor", sp.floor, "compare", np.floor, math.floor, lambda t: t.floor, ("floor",)),
    Op("heaviside", sp.Heaviside, "compare", lambda x: np.heaviside(x, 0.5),
       lambda x: float(np.heaviside(x, 0.5)),
       lambda t: lambda x: t.heaviside(x, t.tensor(0.5, dtype=x.dtype, device=x.device)),
       ("heaviside",), "H(0) = 1/2, as SymPy's Heaviside"),
    Op("isinf", isinf, "compare", lambda x: _indicator(np.isinf, x),
       lambda x: float(math.isinf(x)), lambda t: lambda x: t.isinf(x).to(x.dtype), ("isinf",),
       "1 at +inf or -inf, else 0"),
    Op("isnan", isnan, "compare", lambda x: _indicator(np.isnan, x),
       lambda x: float(math.isnan(x)), lambda t: lambda x: t.isnan(x).to(x.dtype), ("isnan",),
       "1 at NaN, else 0"),
)

BY_NAME: dict[str, Op] = {op.name: op for op in OPS}
BY_SYMPY: dict[type, Op] = {op.sympy: op for op in OPS if op.sympy is not None}
