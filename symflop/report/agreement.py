"""Agreement: does a derived value match a stated one, at the stated value's precision.

One rule for every figure the report sets beside a text's: the claims and the
worked examples (``symflop.report.examples``) both compare numbers through
``number_agrees``.

Precision: a polynomial is compared exactly when the text writes lower-order
terms (``P + 1``, ``N*d + d``) or a constant, and at leading order when it is
approximate or a single term (``2*P``, ``≈3*B*d``): a single term carries no
lower-order information.  A number agrees when the derived value rounds to it
at its last stated digit (within half a unit of it; trailing zeros of an integer
are not significant); an approximate number within less than one unit.  An
equation agrees when both sides take the same value at small sizes on seeded
random inputs (or a constant ratio, for a proportionality).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

import sympy as sp

from symflop.cost.counting import leading_order
from symflop.report.stated import SCALE, Stated


@dataclass(frozen=True)
class Equation:
    """A derived expression and the stated one, in the same symbols, to evaluate.

    ``sizes`` maps size symbols to small integers; both sides are evaluated at
    every point of ``at`` (maps of free index -> integer; default: the first and
    last index values) on seeded random inputs in [0.2, 1.8].  ``values`` may
    adjust the random values to an assumption (it gets and returns the map of
    each leaf to its value); ``assumptions`` says in words what was assumed.
    """

    derived: sp.Expr
    claimed: sp.Expr
    sizes: dict
    at: tuple = ()
    proportional: bool = False
    values: Callable[[dict], dict] | None = None
    assumptions: tuple[str, ...] = ()

    def __str__(self) -> str:
        return str(self.derived)


def _mode(stated: Stated, claimed: sp.Expr) -> str:
    if stated.approx:
        return "leading"
    return "exact" if len(sp.Add.make_args(sp.expand(claimed))) > 1 or claimed.is_number \
        else "leading"


def _same_poly(claimed: sp.Expr, derived: sp.Expr, mode: str) -> bool:
    derived = sp.expand(sp.sympify(derived))
    if mode == "exact":
        return sp.expand(claimed - derived) == 0
    return sp.expand(leading_order(claimed) - leading_order(derived)) == 0


def _kinds_of(stated: Stated, derived: dict) -> dict:
    named = set(stated.value) - {"other"}
    out = {k: sp.expand(sp.sympify(derived.get(k, 0))) for k in named}
    if "other" in stated.value:
        out["other"] = sp.expand(sp.Add(*[sp.sympify(v) for k, v in derived.items()
                                          if k not in named]))
    return out


def agrees(stated: Stated, derived, mode_override: str | None = None) -> bool:
    """Does ``derived`` match ``stated`` at its precision (or in ``mode_override``,
    ``exact`` or ``leading``, for a polynomial)?"""
    if stated.form == "polynomial":
        return _same_poly(stated.value, derived, mode_override or _mode(stated, stated.value))
    if stated.form == "kinds":
        got = _kinds_of(stated, derived)
        return all(_same_poly(v, got[k], mode_override or _mode(stated, v))
                   for k, v in stated.value.items())
    if stated.form == "order":
        return _same_order(stated.value, sp.sympify(derived))
    if stated.form == "number":
        derived = sp.sympify(derived)
        if derived.free_symbols:
            return sp.expand(derived - sp.nsimplify(stated.value)) == 0
        value = float(derived) / SCALE[stated.unit]
        tolerance = stated.step * (1 - 1e-12) if stated.approx \
            else stated.step / 2 * (1 + 1e-9)
        return number_agrees(value, stated.value, tolerance, stated.approx)
    if stated.form == "equation":
        return same_values(derived)
    return str(derived).strip() == str(stated.value).strip()


def number_agrees(value: float, stated: float, tolerance: float, approx: bool = False
                  ) -> bool:
    """The one rule by which a figure agrees with a stated number: an exact stated zero
    only with zero; an approximate one (``approx``) when less than ``tolerance`` away;
    any other when at most ``tolerance`` away."""
    if stated == 0 and not approx:
        return value == 0
    diff = abs(value - stated)
    return diff < tolerance if approx else diff <= tolerance


def _same_order(claimed: sp.Expr, derived: sp.Expr) -> bool:
    lead = leading_order(sp.expand(derived))
    if claimed.is_number:
        return lead.is_number and lead != 0
    terms = sp.Add.make_args(lead)
    return all((t / claimed).is_number and t != 0 for t in terms)


def same_values(eq: Equation, trials: int = 3) -> bool:
    """Both sides of ``eq`` equal (or in a constant ratio) at small sizes, seeded inputs."""
    subs = {k: sp.Integer(v) for k, v in eq.sizes.items()}
    sides = [sp.sympify(e) for e in (eq.derived, eq.claimed)]
    points = list(eq.at) or _corner_points(sides, subs)
    ratios = []
    for point in points:
        at = {k: sp.Integer(v) for k, v in point.items()}
        concrete = [s.xreplace(at).xreplace(subs).doit() for s in sides]
        leaves = sorted(_leaves(concrete), key=str)
        for trial in range(trials):
            rng = random.Random(f"claims-{trial}")  # noqa: S311 - seeded values, not secrets
            values = {leaf: rng.uniform(0.2, 1.8) for leaf in leaves}
            if eq.values is not None:
                values = eq.values(values)
            a, b = (complex(sp.N(s.xreplace(values))) for s in concrete)
            if eq.proportional:
                if abs(b) < 1e-300:
                    return False
                ratios.append(a / b)
            elif abs(a - b) > 1e-9 * max(1.0, abs(a), abs(b)):
                return False
    if eq.proportional:
        return all(abs(r - ratios[0]) <= 1e-9 * max(1.0, abs(ratios[0])) for r in ratios)
    return True


def _corner_points(exprs, subs: dict) -> list[dict]:
    """The first and the last value of every free index (sizes substituted)."""
    free = sorted({s for e in exprs for s in e.free_symbols if isinstance(s, sp.Idx)}, key=str)
    if not free:
        return [{}]
    return [{k: 0 for k in free}, {k: int(sp.sympify(k.upper).xreplace(subs)) for k in free}]


def _leaves(exprs) -> set:
    out: set = set()
    for e in exprs:
        indexed = e.atoms(sp.Indexed)
        labels = {x.base.label for x in indexed}
        out |= indexed
        out |= {s for s in e.atoms(sp.Symbol) if s not in labels and not isinstance(s, sp.Idx)}
    return out


def precision_note(stated: Stated, derived) -> str:
    """How ``derived`` agrees with ``stated``: exactly, at leading order, ..."""
    if stated.form in ("polynomial", "kinds"):
        exact = agrees(stated, derived, "exact")
        if stated.form == "polynomial" and _mode(stated, stated.value) == "leading":
            return "exactly" if exact else "at leading order"
        if stated.form == "kinds":
            modes = {_mode(stated, v) for v in stated.value.values()}
            return "exactly" if exact else ("at leading order" if "leading" in modes else "")
        return "exactly"
    if stated.form == "number":
        return "at the stated precision"
    if stated.form == "equation":
        assumed = "; ".join(derived.assumptions)
        return "numerically equal at small sizes" + (f"; assumes {assumed}" if assumed else "")
    return ""

