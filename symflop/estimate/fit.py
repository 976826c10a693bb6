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
from typing import Any

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


def _interpolate(values: list, rows: list[list[sp.Expr]], x: sp.Symbol) -> list[sp.Expr]:
    """Lagrange interpolation of each column of ``rows`` (one row per value) in ``x``."""
    out = [sp.Integer(0)] * len(rows[0])
    for i, (xi, row) in enumerate(zip(values, rows)):
        basis = sp.Integer(1)
        for k, xk in enumerate(values):
            if k != i:
                basis *= (x - xk) / sp.sympify(xi - xk)
        basis = sp.expand(basis)
        out = [o + sp.expand(basis * y) for o, y in zip(out, row)]
    return [sp.expand(o) for o in out]


def fit_grid(at: Callable[[dict], list[sp.Expr]], grid: dict[sp.Symbol, list],
             checks: list[dict] | None = None) -> list[sp.Expr]:
    """Polynomials in the symbols of ``grid`` from ``at(point)`` (a list of expressions at
    one value of each symbol): each symbol's last value checks the fit through the others
    (degree: their number less one).  With ``checks`` (points off the grid), the fit runs
    through all of a symbol's values and is checked at those points instead: fewer runs
    where each is dear.  A list that is not such a polynomial is refused."""
    symbols = list(grid)
    cut = 0 if checks else 1

    def fit(point: dict, todo: list) -> list[sp.Expr]:
        if not todo:
            return [sp.expand(sp.sympify(e)) for e in at(point)]
        x, rest = todo[0], todo[1:]
        values = [sp.sympify(v) for v in grid[x]]
        rows = [fit({**point, x: v}, rest) for v in values]
        poly = _interpolate(values[:len(values) - cut], rows[:len(rows) - cut], x)
        if checks:
            return poly
        check = [sp.expand(p.xreplace({x: values[-1]})) for p in poly]
        if any(sp.expand(c - r) != 0 for c, r in zip(check, rows[-1])):
            raise UsageError(f"the counts at {x} = {', '.join(map(str, values))} are not a "
                             f"polynomial of degree {len(values) - 2} or less in {x}")
        return poly

    fitted = fit({}, symbols)
    for point in checks or ():
        got = [sp.expand(sp.sympify(e)) for e in at(point)]
        if any(sp.expand(p.xreplace(point) - g) != 0 for p, g in zip(fitted, got)):
            where = ", ".join(f"{x} = {v}" for x, v in point.items())
            raise UsageError(f"the counts at {where} are not the polynomial fitted over "
                             f"the grid {grid}")
    return fitted


def fit_sizes(run: Callable[[dict], Any], first):
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

    def run_at(point: dict) -> list[sp.Expr]:
        return at({**first.hints, **{x.name: int(v) for x, v in point.items()}})

    grid = {first.symbols[n]: [first.hints[n] + STEP * k for k in range(DEGREE + 2)]
            for n in names}
    try:
        fitted = fit_grid(run_at, grid)
    except UsageError as e:
        if not str(e).startswith("the counts at"):
            raise
        raise UsageError(f"the model's code fixes the size(s) {', '.join(names)} while it "
                         f"runs, and {e}") from None
    est = _with(first, fitted)
    est.notes = list(first.notes) + [
        f"the model's code fixed {', '.join(names)} to the value each trace ran at; every "
        f"count is a polynomial fitted over {len(traced)} traces ({'; '.join(traced)}) and "
        f"checked at one more value of each"]
    return est


def _sizes(hints: dict) -> str:
    return ", ".join(f"{n} = {v}" for n, v in hints.items())
