"""Polynomials for the sizes a trace fixed, fitted over several traces.

Why: some models turn a size into a Python int while they run (``nn.Upsample`` with a
scale factor computes its output size from the batch; ``nn.LSTM``'s Python kernel loops
over the sequence), and torch then fixes the size to the value the trace ran at.  The
counts of such a trace are right at that value only.  A training step's counts are
polynomials of low degree in each size (linear in the batch, at most quadratic in a
sequence length), so the estimate is traced at ``DEGREE + 1`` values of each fixed size,
interpolated exactly (Lagrange, rational arithmetic), and checked at one more value:
a count that is not such a polynomial is refused, never returned wrong.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import sympy as sp

from symflop.errors import UsageError

DEGREE = 2      # the highest power of one size a step's count may hold
STEP = 3        # the sizes traced: the trace's value, then every STEP-th one after


def _exprs(est) -> list[sp.Expr]:
    out = [est.state_bytes, est.activation_bytes]
    for ln in est.lines:
        out += [ln.flops_forward, ln.flops_backward, ln.macs_forward, ln.macs_backward,
                ln.saved_bytes, ln.integer]
        out += [ln.forward[k] for k in sorted(ln.forward)]
        out += [ln.backward[k] for k in sorted(ln.backward)]
    return [sp.sympify(e) for e in out]


def _with(est, exprs: list[sp.Expr]):
    new = copy.deepcopy(est)
    it = iter(exprs)
    new.state_bytes, new.activation_bytes = next(it), next(it)
    for ln in new.lines:
        (ln.flops_forward, ln.flops_backward, ln.macs_forward, ln.macs_backward,
         ln.saved_bytes, ln.integer) = (next(it) for _ in range(6))
        for which in (ln.forward, ln.backward):
            for k in sorted(which):
                which[k] = next(it)
    return new


def _interpolate(values: list[int], rows: list[list[sp.Expr]], x: sp.Symbol
                 ) -> list[sp.Expr]:
    """Lagrange interpolation of each column of ``rows`` (one row per value) in ``x``."""
    out = [sp.Integer(0)] * len(rows[0])
    for i, (xi, row) in enumerate(zip(values, rows)):
        basis = sp.Integer(1)
        for k, xk in enumerate(values):
            if k != i:
                basis *= (x - xk) / sp.Integer(xi - xk)
        basis = sp.expand(basis)
        out = [o + sp.expand(basis * y) for o, y in zip(out, row)]
    return [sp.expand(o) for o in out]


def fit_sizes(run: Callable[[dict], object], first):
    """``first`` (an estimate whose trace fixed the sizes ``first.fitted``) with every
    count made a polynomial in those sizes, from ``run(hints)`` at other values."""
    names = tuple(first.fitted)
    traced: list[str] = []

    def at(hints: dict):
        est = first if hints == first.hints else run(hints)
        if [ln.name for ln in est.lines] != [ln.name for ln in first.lines]:
            raise UsageError(f"the model runs other layers at {_sizes(hints)} than at "
                             f"{_sizes(first.hints)}: its counts cannot be fitted")
        traced.append(_sizes(hints))
        subs = {est.symbols[n]: hints[n] for n in names}
        return [sp.expand(e.xreplace(subs)) for e in _exprs(est)]

    def fit(hints: dict, todo: tuple[str, ...]) -> list[sp.Expr]:
        if not todo:
            return at(hints)
        name, rest = todo[0], todo[1:]
        values = [hints[name] + STEP * k for k in range(DEGREE + 2)]
        rows = [fit({**hints, name: v}, rest) for v in values]
        poly = _interpolate(values[:-1], rows[:-1], first.symbols[name])
        check = [sp.expand(p.xreplace({first.symbols[name]: values[-1]})) for p in poly]
        if any(sp.expand(c - r) != 0 for c, r in zip(check, rows[-1])):
            raise UsageError(f"the model's code fixes the size {name} while it runs, and "
                             f"its counts traced at {name} = {', '.join(map(str, values))} "
                             f"are not a polynomial of degree {DEGREE} or less in {name}")
        return poly

    est = _with(first, fit(dict(first.hints), names))
    est.notes = list(first.notes) + [
        f"the model's code fixed {', '.join(names)} to the value each trace ran at; every "
        f"count is a polynomial fitted over {len(traced)} traces ({'; '.join(traced)}) and "
        f"checked at one more value of each"]
    return est


def _sizes(hints: dict) -> str:
    return ", ".join(f"{n} = {v}" for n, v in hints.items())
