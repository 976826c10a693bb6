"""The small symbolic tools the identities' proofs share: zero tests that stay targeted
(``expand`` of a small expression, one common denominator; no blanket ``simplify``), a
real symbol, and a component's hyperparameters by name."""

from __future__ import annotations

import sympy as sp

from symflop.core.model import Component


def is_zero(e: sp.Expr) -> bool:
    return sp.expand(e) == 0


def is_zero_rational(e: sp.Expr) -> bool:
    """Zero as a rational function (nested fractions brought over one denominator)."""
    return sp.cancel(sp.together(e)) == 0


def real_symbol(name: str) -> sp.Symbol:
    return sp.Symbol(name, real=True)


def hypers(c: Component, names: str) -> tuple[sp.Symbol, ...]:
    return tuple(c.tensors[n].symbol for n in names.split())
