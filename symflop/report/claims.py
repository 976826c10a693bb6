"""Claims report: a reference text's quantitative claims beside what the engine derives.

A catalogue records the claims of a text as data: one ``Claim`` per figure, with
the text quoted, the value as the text states it (``claimed``), and a function
that derives the comparable quantity with the engine under a counting
convention.  This module derives every figure of a claim, compares each with the
stated value at the text's own precision (``symflop.report.stated`` reads it,
``symflop.report.agreement`` compares), tries every named counting convention
when the default one disagrees, gives the verdicts and renders them
(``symflop.report.claims_render``: Markdown, LaTeX or JSON).  It knows no
component; a catalogue lists its claims under the entry point group
``symflop.claims`` (a list of ``Claim``), which ``symflop claims`` loads.

Stages and conventions: a count depends on which program is counted and how.
A claim is derived for the optimized program and for the equations as written
(``stage``), under every named counting convention.  Verdicts:

* ``agrees``: under the default convention, the optimized or the as-written
  figure matches it (the detail says which), or the figure derived under the
  document's own stated assumption does (``Claim.assumed``: probabilities given,
  the softmax kept from the forward pass, a total that includes adding the
  penalty's gradient to the data gradient, ...);
* ``reconciled``: only another convention matches it, and that convention also
  holds for every other convention-dependent row of the claim's table
  (``Claim.table``, else its section), and of every table or section where the
  same stated count of the same quantity appears again: a convention that fits one
  row only reconciles nothing, and a count repeated gets one verdict;
* ``scope``: nothing matches, and the document counts another quantity than the
  tool does (``Claim.scope`` says how);
* ``differs``: nothing matches (the reason says why);
* ``cannot-derive`` (the reason says why).
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any, cast

import sympy as sp

from symflop.core.model import size_symbol
from symflop.cost.conventions import CONVENTIONS, KINDS
from symflop.errors import UsageError
from symflop.report.agreement import Equation, agrees, precision_note, same_values
from symflop.report.claims_render import (
    NEEDSPACE,
    PAGE_MACROS,
    VERDICT_MEANING,
    closing_note,
    render_json,
    render_latex,
    render_markdown,
)
from symflop.report.latex import expr_latex, latex_escape
from symflop.report.stated import APPROX, BINARY, SCALE, Stated, parse_claimed, parse_polynomial
from symflop.report.verdict import STATUSES, Claim, Underivable, Verdict, tally

# What the catalogue (``engine.X``), the command line, the report and the tests import
# from here: the names defined here and those re-exported from the modules above.
__all__ = [
    "CLAIM_STAGES", "NEEDSPACE", "PAGE_MACROS", "STATUSES", "VERDICT_MEANING", "Claim",
    "Equation", "Stated", "Underivable", "Verdict", "closing_note", "judge", "judge_all",
    "parse_claimed", "parse_polynomial", "render_json", "render_latex", "render_markdown",
    "report", "same_values", "size_symbol", "tally",
]

CLAIM_STAGES = ("optimized", "written")


# -- display ----------------------------------------------------------------------

def _show(stated: Stated, derived) -> str:
    if isinstance(derived, dict):
        return ", ".join(f"{k}: {v}" for k, v in _kind_values(derived)) or "0"
    if isinstance(derived, Equation):
        text = str(derived.derived)
        return text + (f"  [assumes {'; '.join(derived.assumptions)}]"
                       if derived.assumptions else "")
    if stated.form == "number":
        value = sp.sympify(derived)
        return str(sp.expand(value)) if value.free_symbols else _show_number(stated,
                                                                             float(value))
    if isinstance(derived, sp.Basic):
        return str(sp.expand(derived))
    return str(derived)


def _show_latex(stated: Stated, derived) -> str:
    """What ``_show`` says, as LaTeX: expressions through SymPy's LaTeX printer."""
    if isinstance(derived, dict):
        kinds = _kind_values(derived)
        return ", ".join(f"{k}: ${expr_latex(v)}$" for k, v in kinds) if kinds else "$0$"
    if isinstance(derived, Equation):  # no wider than its column: it breaks across lines
        return f"${expr_latex(derived.derived, breakable=True)}$"
    if stated.form == "number" and not sp.sympify(derived).free_symbols:
        return latex_escape(_show_number(stated, float(sp.sympify(derived))))
    if isinstance(derived, (sp.Basic, int, float)):
        return f"${expr_latex(sp.expand(sp.sympify(derived)))}$"
    return latex_escape(str(derived))


def _kind_values(derived: dict) -> list[tuple[str, sp.Expr]]:
    kinds = [k for k in (*KINDS, "fma") if k in derived] + sorted(
        k for k in derived if k not in KINDS and k != "fma")
    values = [(k, sp.expand(sp.sympify(derived[k]))) for k in kinds]
    return [(k, v) for k, v in values if v != 0]


def _show_number(stated: Stated, value: float) -> str:
    scale = SCALE[stated.unit]
    places = max(0, -cast(int, Decimal(str(stated.step)).as_tuple().exponent)) + 2
    if stated.unit in ("K", "M", "G"):
        return f"{value:,.0f} ({value / scale:.{places}f}{stated.unit})"
    if stated.unit in ("MB", "GB"):  # the document's MB and GB are binary: say so
        return f"{value / scale:.{places}f} {BINARY[stated.unit]} ({value:,.0f} bytes)"
    if stated.unit == "%":
        return f"{value:.{places}f}%"
    if float(value).is_integer():
        return f"{value:,.0f}"
    return f"{value:.{places}f}"



# -- verdicts ---------------------------------------------------------------------

class _Results:
    """Everything derived for one claim: (convention, stage) -> value, and whether the
    stated value agrees with each."""

    def __init__(self, claim: Claim):
        self.claim = claim
        convs = tuple(CONVENTIONS) if claim.by_convention else ("default",)
        stages = CLAIM_STAGES if claim.by_stage else CLAIM_STAGES[:1]
        derive = cast(Callable[[str, str], object], claim.derive)  # a derivable claim
        self.values = {(c, s): derive(c, s) for c in convs for s in stages}
        default = self.values["default", "optimized"]
        if default is None:
            default = self.values.get(("default", "written"))
        self.default: Any = default
        self.underivable = isinstance(default, Underivable)
        approx = bool(APPROX.match(claim.claimed))
        if isinstance(default, Equation):
            self.stated = Stated("equation", approx)
        elif isinstance(default, str):
            self.stated = Stated("text", approx, APPROX.sub("", claim.claimed).strip())
        elif not self.underivable:
            self.stated = parse_claimed(claim.claimed)
        self.agree = {k: v is not None and not isinstance(v, Underivable)
                      and agrees(self.stated, v) for k, v in self.values.items()} \
            if not self.underivable else {}
        self.assumed: dict[str, Any] | None = None
        if claim.assumed is not None and not self.underivable:
            self.assumed = {c: claim.assumed(c, "optimized") for c in convs}

    def holds_under(self, conv: str) -> bool:
        """Does some figure of this claim (a stage, or the document's assumption) agree
        with the stated value under ``conv``?"""
        if any(ok for (c, _s), ok in self.agree.items() if c == conv):
            return True
        return self.assumed is not None and conv in self.assumed \
            and agrees(self.stated, self.assumed[conv])

    def shown(self, conv: str, stage: str, latex: bool = False) -> str:
        if (conv, stage) not in self.values:
            return ""
        v = self.values[conv, stage]
        if v is None:  # the counted steps were folded into others at this stage
            return latex_escape(NOT_A_STEP) if latex else NOT_A_STEP
        if isinstance(v, Underivable):
            return ""
        return _show_latex(self.stated, v) if latex else _show(self.stated, v)


def judge(claim: Claim, table: list[_Results] | None = None) -> Verdict:
    """The verdict on one claim (see the module docstring); ``table`` holds the results
    of the other rows of its table, which a reconciling convention must also fit."""
    if claim.derive is None:
        return Verdict(claim, "cannot-derive", reason=claim.reason)
    r = _Results(claim)
    return _verdict(r, table or [])


def _verdict(r: _Results, table: list[_Results]) -> Verdict:
    claim = r.claim
    if r.underivable:
        return Verdict(claim, "cannot-derive", reason=r.default.reason)
    stated = r.stated
    written = r.shown("default", "written") if claim.by_stage else ""
    optimized = r.shown("default", "optimized")
    base: dict[str, Any] = {
        "written": written, "optimized": optimized,
        "written_tex": r.shown("default", "written", True) if claim.by_stage else "",
        "optimized_tex": r.shown("default", "optimized", True)}
    for stage in CLAIM_STAGES:
        if r.agree.get(("default", stage)):
            value = r.values["default", stage]
            note = precision_note(stated, value)
            if claim.by_stage and written != optimized:
                note = "; ".join(x for x in (f"{_STAGE_TEXT[stage]}", note) if x)
            return Verdict(claim, "agrees", _show(stated, value), ("default",), note,
                           derived_tex=_show_latex(stated, value), **base)
    shown, shown_tex = (optimized, base["optimized_tex"]) \
        if optimized not in ("", NOT_A_STEP) else (written, base["written_tex"])
    if r.assumed is not None and agrees(stated, r.assumed["default"]):
        return Verdict(claim, "agrees", _show(stated, r.assumed["default"]), ("default",),
                       f"under the document's assumption: {claim.assumption}; without it: "
                       f"{shown}",
                       derived_tex=_show_latex(stated, r.assumed["default"]),
                       by_assumption=True, **base)
    agreeing = tuple(c for c in CONVENTIONS if c != "default" and r.holds_under(c))
    fitting = tuple(c for c in agreeing
                    if all(o.holds_under(c) for o in table if o is not r))
    if fitting:
        under = "; ".join(f"under {c}: {_under(r, c)}" for c in fitting)
        return Verdict(claim, "reconciled", shown, fitting,
                       f"reconciled by convention {', '.join(fitting)} ({under})",
                       claim.reason, derived_tex=shown_tex, **base)
    detail = _near_miss(stated, r.values)
    if agreeing:
        detail = "; ".join(x for x in (detail, f"{', '.join(agreeing)} would fit this row "
                                       "but not the rest of the tables that give its "
                                       "count") if x)
    if claim.scope:
        return Verdict(claim, "scope", shown, (), detail, claim.scope, derived_tex=shown_tex,
                       **base)
    return Verdict(claim, "differs", shown, (), detail, claim.reason, derived_tex=shown_tex,
                   **base)


NOT_A_STEP = "(folded into other steps)"
_STAGE_TEXT = {"optimized": "optimized program", "written": "as written"}


def _under(r: _Results, conv: str) -> str:
    for stage in CLAIM_STAGES:
        if r.agree.get((conv, stage)):
            value = r.values[conv, stage]
            return f"{_show(r.stated, value)}, {_STAGE_TEXT[stage]}" \
                + _paren(precision_note(r.stated, value))
    return _show(r.stated, cast(dict, r.assumed)[conv]) + f", assuming {r.claim.assumption}"


def _paren(note: str) -> str:
    return f" ({note})" if note and note != "at the stated precision" else ""


def _near_miss(stated: Stated, results: dict) -> str:
    """What does agree, when the stated value differs: its leading order, and where."""
    if stated.form not in ("polynomial", "kinds"):
        return ""
    lead = [key for key, v in results.items() if v is not None
            and not isinstance(v, Underivable) and agrees(stated, v, "leading")]
    if not lead:
        return ""
    if ("default", "optimized") in lead:
        return "leading order agrees"
    if ("default", "written") in lead:
        return "leading order agrees as written"
    convs = sorted({c for c, _s in lead if c != "default"})
    return f"leading order agrees under {', '.join(convs)}" if convs else ""


def judge_all(claims: list[Claim]) -> list[Verdict]:
    """The verdict on every claim, each reconciled against the rest of its tables."""
    seen: set[str] = set()
    for c in claims:
        if c.id in seen:
            raise UsageError(f"claim id {c.id!r} is used twice")
        seen.add(c.id)
    results = {c.id: _Results(c) for c in claims if c.derive is not None}
    tables: dict[str, list[_Results]] = {}
    shapes: dict[tuple, set[str]] = {}  # one stated count of one derived quantity -> groups
    for c in claims:
        r = results.get(c.id)
        if r is not None and c.by_convention and not r.underivable:
            tables.setdefault(c.group, []).append(r)
            shapes.setdefault(_shape(r), set()).add(c.group)
    out = []
    for c in claims:
        if c.derive is None:
            out.append(Verdict(c, "cannot-derive", reason=c.reason))
            continue
        r = results[c.id]
        groups = shapes.get(_shape(r), {c.group}) if c.by_convention and not r.underivable \
            else {c.group}
        # a convention reconciles a claim only if it fits every row of every table (or
        # section) where the same stated count of the same quantity appears
        out.append(_verdict(r, [o for g in sorted(groups) for o in tables.get(g, [])]))
    return out


def _shape(r: _Results) -> tuple:
    """What makes two claims one claim repeated: the same stated value (an ``≈`` aside)
    and the same derived values under every convention and stage."""
    stated = r.stated
    return (stated.form, str(stated.value), stated.unit,
            tuple(sorted((k, str(v)) for k, v in r.values.items())))


def report(claims: list[Claim], fmt: str = "markdown",
           title: str = "Claims of the reference document, checked against the derivations"
           ) -> str:
    """The claims report in ``fmt`` (markdown, latex or json); the same bytes on every run."""
    renderers = {"markdown": render_markdown, "json": render_json, "latex": render_latex}
    if fmt not in renderers:
        raise UsageError(f"unknown format {fmt!r} ({', '.join(renderers)})")
    return renderers[fmt](judge_all(claims), title)
