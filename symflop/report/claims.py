"""Claims report: a reference text's quantitative claims beside what the engine derives.

A catalogue records the claims of a text as data: one ``Claim`` per figure, with
the text quoted, the value as the text states it (``claimed``), and a function
that derives the comparable quantity with the engine under a counting
convention.  This module parses the stated value, compares it with the derived
one at the text's own precision, tries every named counting convention when the
default one disagrees, and renders the verdicts as Markdown or JSON.  It knows
no component; a catalogue lists its claims under the entry point group
``symflop.claims`` (a list of ``Claim``), which ``symflop claims`` loads.

The stated value (``claimed``) is one of:

* a count or size polynomial in the sizes, ``7*N*d + 2*d`` (a unit word such as
  ``bytes`` or ``elements`` may follow);
* counts per kind of operation, ``add: B*d - 1, mul: B*d`` (only the kinds named
  are compared; ``other`` stands for the sum of every kind not named);
* an order, ``O(B*C)`` or ``O(1)``;
* a number with an optional scale or unit: ``524,288``, ``51.2M`` (K, M, G are
  10**3, 10**6, 10**9), ``195.3 MB`` (MB and GB are 2**20 and 2**30 bytes, as the
  reference document uses them), ``4.72%``;
* a stated equation, when the derivation returns an ``Equation``;
* any other text, compared as text.

A prefix ``≈``, ``~`` or ``about`` marks an approximate value.

Precision: a polynomial is compared exactly when the text writes lower-order
terms (``P + 1``, ``N*d + d``) or a constant, and at leading order when it is
approximate or a single term (``2*P``, ``≈3*B*d``): a single term carries no
lower-order information.  A number agrees when the derived value rounds to it
at its last stated digit (within half a unit of it; trailing zeros of an integer
are not significant); an approximate number within less than one unit.  An
equation agrees when both sides take the same value at small sizes on seeded
random inputs (or a constant ratio, for a proportionality).

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

import json
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from tokenize import TokenError

import sympy as sp

from symflop.core.model import size_symbol
from symflop.cost.conventions import CONVENTIONS, KINDS
from symflop.cost.counting import leading_order
from symflop.errors import UsageError
from symflop.report.latex import expr_latex, latex_escape
from symflop.report.tables import END_UNNUMBERED

STATUSES = ("agrees", "reconciled", "scope", "differs", "cannot-derive")
CLAIM_STAGES = ("optimized", "written")


@dataclass(frozen=True)
class Underivable:
    """Returned by a derivation that finds the quantity out of the engine's reach."""

    reason: str


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


@dataclass(frozen=True)
class Claim:
    """One quantitative claim of a text and how the engine derives the same quantity.

    ``derive`` takes a convention name and a stage (``optimized`` or ``written``) and
    returns the derived quantity (a SymPy polynomial or number, a dict of counts per
    kind, an ``Equation``, a string, ``Underivable``, or None when the quantity does
    not exist at that stage); ``None`` instead of a function means the claim cannot
    be derived, and ``reason`` says why.  ``by_convention`` / ``by_stage`` are False
    for quantities no convention / no stage changes, which are derived once.
    ``assumed`` derives the quantity under the document's own stated assumption
    (``assumption`` says which), ``table`` groups the rows a convention must fit
    together (default: the section), ``scope`` says how the document's quantity is
    another than the tool's.  ``reason`` explains a difference or a reconciliation.
    """

    id: str
    section: str
    quote: str
    claimed: str
    how: str = ""
    derive: Callable[[str, str], object] | None = None
    by_convention: bool = True
    reason: str = ""
    by_stage: bool = True
    assumed: Callable[[str, str], object] | None = None
    assumption: str = ""
    table: str = ""
    scope: str = ""

    @property
    def group(self) -> str:
        return self.table or self.section


@dataclass(frozen=True)
class Verdict:
    claim: Claim
    status: str
    derived: str = ""
    conventions: tuple[str, ...] = ()
    detail: str = ""
    reason: str = ""
    written: str = ""          # the as-written figure (empty when no stage changes it)
    optimized: str = ""        # the optimized figure
    # The same three figures as LaTeX (math through SymPy's printer), for the PDF.
    derived_tex: str = ""
    written_tex: str = ""
    optimized_tex: str = ""
    by_assumption: bool = False  # agrees only under the document's stated assumption

    def as_dict(self) -> dict:
        c = self.claim
        return {"id": c.id, "section": c.section, "quote": c.quote, "claimed": c.claimed,
                "how": c.how, "verdict": self.status, "derived": self.derived,
                "as_written": self.written, "optimized": self.optimized,
                "conventions": list(self.conventions), "detail": self.detail,
                "reason": self.reason}


# -- the stated value -------------------------------------------------------------

_APPROX = re.compile(r"^\s*(≈|~|∼|about\s+)\s*")
_NUMBER = re.compile(r"^([-+]?[\d,]*\.?\d+)\s*(K|M|G|%|MB|GB|bytes)?$")
_SCALE = {None: 1, "K": 10 ** 3, "M": 10 ** 6, "G": 10 ** 9, "%": 1, "MB": 2 ** 20,
          "GB": 2 ** 30, "bytes": 1}
_UNIT_WORDS = ("bytes", "elements", "values", "FLOPs", "parameters")
_BINARY = {"MB": "MiB", "GB": "GiB"}  # what the document's MB and GB are
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class Stated:
    form: str                 # polynomial | kinds | order | number | text | equation
    approx: bool
    value: object = None      # sp.Expr, dict, float, str
    unit: str | None = None
    step: float = 0.0         # a unit of the last stated digit (numbers), in the unit


def parse_polynomial(text: str, known: dict | None = None) -> sp.Expr:
    """``7*N*d + 2*d`` with every name a size symbol (never SymPy's own N, E, S, ...)."""
    names = {n: (known or {}).get(n, size_symbol(n)) for n in _NAME.findall(text)}
    try:
        return sp.expand(sp.parse_expr(text, local_dict=names, evaluate=True))
    except (SyntaxError, TypeError, TokenError, sp.SympifyError) as e:
        raise UsageError(f"cannot read the stated value {text!r}: {e}") from None


def parse_claimed(text: str) -> Stated:
    m = _APPROX.match(text)
    approx = bool(m)
    body = text[m.end():].strip() if m else text.strip()
    if body.startswith("O(") and body.endswith(")"):
        return Stated("order", approx, parse_polynomial(body[2:-1]))
    num = _NUMBER.match(body)
    if num:
        digits, unit = num.group(1).replace(",", ""), num.group(2)
        d = Decimal(digits)
        if "." in digits:
            step = float(Decimal(1).scaleb(d.as_tuple().exponent))
        else:
            stripped = digits.lstrip("+-")
            zeros = len(stripped) - len(stripped.rstrip("0")) if d != 0 else 0
            step = float(10 ** zeros)
        return Stated("number", approx, float(d), unit, step)
    if re.match(r"^[a-z]+\s*:", body):
        kinds = {}
        for part in body.split(","):
            kind, _, expr = part.partition(":")
            kind = kind.strip()
            if kind not in KINDS and kind not in ("fma", "other"):
                raise UsageError(f"unknown kind {kind!r} in {text!r}")
            kinds[kind] = parse_polynomial(expr)
        return Stated("kinds", approx, kinds)
    words = body.split()
    unit = words[-1] if len(words) > 1 and words[-1] in _UNIT_WORDS else None
    expr_text = " ".join(words[:-1]) if unit else body
    return Stated("polynomial", approx, parse_polynomial(expr_text), unit)


# -- comparison -------------------------------------------------------------------

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


def _agrees(stated: Stated, derived, mode_override: str | None = None) -> bool:
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
        value = float(derived) / _SCALE[stated.unit]
        diff = abs(value - stated.value)
        if stated.value == 0 and not stated.approx:
            return value == 0
        if stated.approx:
            return diff < stated.step * (1 - 1e-12)
        return diff <= stated.step / 2 * (1 + 1e-9)
    if stated.form == "equation":
        return same_values(derived)
    return str(derived).strip() == str(stated.value).strip()


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
    scale = _SCALE[stated.unit]
    places = max(0, -Decimal(str(stated.step)).as_tuple().exponent) + 2
    if stated.unit in ("K", "M", "G"):
        return f"{value:,.0f} ({value / scale:.{places}f}{stated.unit})"
    if stated.unit in ("MB", "GB"):  # the document's MB and GB are binary: say so
        return f"{value / scale:.{places}f} {_BINARY[stated.unit]} ({value:,.0f} bytes)"
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
        self.values = {(c, s): claim.derive(c, s) for c in convs for s in stages}
        default = self.values["default", "optimized"]
        if default is None:
            default = self.values.get(("default", "written"))
        self.default = default
        self.underivable = isinstance(default, Underivable)
        approx = bool(_APPROX.match(claim.claimed))
        if isinstance(default, Equation):
            self.stated = Stated("equation", approx)
        elif isinstance(default, str):
            self.stated = Stated("text", approx, _APPROX.sub("", claim.claimed).strip())
        elif not self.underivable:
            self.stated = parse_claimed(claim.claimed)
        self.agree = {k: v is not None and not isinstance(v, Underivable)
                      and _agrees(self.stated, v) for k, v in self.values.items()} \
            if not self.underivable else {}
        self.assumed = None
        if claim.assumed is not None and not self.underivable:
            self.assumed = {c: claim.assumed(c, "optimized") for c in convs}

    def holds_under(self, conv: str) -> bool:
        """Does some figure of this claim (a stage, or the document's assumption) agree
        with the stated value under ``conv``?"""
        if any(ok for (c, _s), ok in self.agree.items() if c == conv):
            return True
        return self.assumed is not None and conv in self.assumed \
            and _agrees(self.stated, self.assumed[conv])

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
    base = {"written": written, "optimized": optimized,
            "written_tex": r.shown("default", "written", True) if claim.by_stage else "",
            "optimized_tex": r.shown("default", "optimized", True)}
    for stage in CLAIM_STAGES:
        if r.agree.get(("default", stage)):
            value = r.values["default", stage]
            note = _precision_note(stated, value)
            if claim.by_stage and written != optimized:
                note = "; ".join(x for x in (f"{_STAGE_TEXT[stage]}", note) if x)
            return Verdict(claim, "agrees", _show(stated, value), ("default",), note,
                           derived_tex=_show_latex(stated, value), **base)
    shown, shown_tex = (optimized, base["optimized_tex"]) \
        if optimized not in ("", NOT_A_STEP) else (written, base["written_tex"])
    if r.assumed is not None and _agrees(stated, r.assumed["default"]):
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
                + _paren(_precision_note(r.stated, value))
    return _show(r.stated, r.assumed[conv]) + f", assuming {r.claim.assumption}"


def _precision_note(stated: Stated, derived) -> str:
    if stated.form in ("polynomial", "kinds"):
        exact = _agrees(stated, derived, "exact")
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


def _paren(note: str) -> str:
    return f" ({note})" if note and note != "at the stated precision" else ""


def _near_miss(stated: Stated, results: dict) -> str:
    """What does agree, when the stated value differs: its leading order, and where."""
    if stated.form not in ("polynomial", "kinds"):
        return ""
    lead = [key for key, v in results.items() if v is not None
            and not isinstance(v, Underivable) and _agrees(stated, v, "leading")]
    if not lead:
        return ""
    if ("default", "optimized") in lead:
        return "leading order agrees"
    if ("default", "written") in lead:
        return "leading order agrees as written"
    convs = sorted({c for c, _s in lead if c != "default"})
    return f"leading order agrees under {', '.join(convs)}" if convs else ""


def judge_all(claims: list[Claim]) -> list[Verdict]:
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


def tally(verdicts: list[Verdict]) -> dict[str, int]:
    counts = {s: 0 for s in STATUSES}
    for v in verdicts:
        counts[v.status] += 1
    counts["total"] = len(verdicts)
    return counts


# -- rendering --------------------------------------------------------------------

def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def closing_note(verdicts: list[Verdict]) -> list[str]:
    """One line per claim that differs (or counts another quantity): what is stated, what
    the equations as written and the optimized program give, and why."""
    lines = []
    for v in verdicts:
        if v.status not in ("differs", "scope"):
            continue
        figures = f"as written {v.written}; optimized {v.optimized}" if v.written \
            else f"derived {v.derived}"
        lines.append(f"{v.claim.id} ({v.claim.section}, {v.status}): stated {v.claim.claimed}; "
                     f"{figures}" + (f" ({v.detail})" if v.detail else "")
                     + f". {v.reason}".rstrip())
    return lines


def render_markdown(verdicts: list[Verdict], title: str) -> str:
    counts = tally(verdicts)
    out = [f"# {title}", "",
           f"{counts['total']} claims: {counts['agrees']} agree, {counts['reconciled']} "
           f"reconciled by a counting convention, {counts['scope']} count another quantity "
           f"(scope), {counts['differs']} differ, {counts['cannot-derive']} cannot be "
           "derived.", "",
           "Figures are given for the equations as written and for the optimized program "
           "(the default convention); a claim agrees when either matches it.", ""]
    sections: list[str] = []
    for v in verdicts:
        if v.claim.section not in sections:
            sections.append(v.claim.section)
    for section in sections:
        out += [f"## {section}", "",
                "| id | claim | stated | as written | optimized | verdict | how / why |",
                "|---|---|---|---|---|---|---|"]
        for v in (v for v in verdicts if v.claim.section == section):
            why = "; ".join(x for x in (v.detail, v.reason, v.claim.how) if x)
            written = v.written if v.written else (v.derived or "-")
            optimized = v.optimized if v.written else (v.derived or "-")
            out.append("| " + " | ".join(_cell(x) for x in (
                v.claim.id, v.claim.quote, v.claim.claimed, written, optimized, v.status,
                why)) + " |")
        out.append("")
    out += ["## Closing note: claims that differ or count another quantity", ""]
    note = closing_note(verdicts)
    out += [f"- {line}" for line in note] if note else ["No claim differs."]
    return "\n".join(out) + "\n"


VERDICT_MEANING = {
    "agrees": "the figure derived for the optimized program or for the equations as "
              "written matches the stated one at its stated precision (default counting "
              "convention), or the figure derived under the document's own stated "
              "assumption does",
    "reconciled": "only another counting convention matches, and it fits every other "
                  "row of the claim's table, and of every table that repeats its count",
    "scope": "nothing matches because the document counts another quantity than the "
             "tool (the why column says which)",
    "differs": "nothing matches; the why column says why",
    "cannot-derive": "the quantity is outside what the engine derives (the network's own "
                     "cost, hardware throughput, convergence speed)",
}


def _ditto(texts: list[str]) -> list[str]:
    """A reason the row above gives word for word reads "as above" (nine rows of one
    table repeated one long sentence)."""
    return [t if not t or n == 0 or t != texts[n - 1] else "as above"
            for n, t in enumerate(texts)]


def _longtable(widths: tuple[float, ...], head: tuple[str, ...], rows: list[list[str]]
               ) -> list[str]:
    # each column's share of the text width includes its padding: the shares add up to
    # at most the width (a 0.94 share plus 4 columns' padding was 7 pt too wide)
    assert sum(widths) <= 1, widths
    spec = "".join(rf">{{\raggedright\arraybackslash}}p{{\dimexpr{w}\textwidth-2\tabcolsep"
                   r"\relax}" for w in widths)
    header = " & ".join(rf"\textbf{{{h}}}" for h in head) + r" \\"
    # The bottom rule is the last foot, set with the last row: written after it, it can
    # fall onto the next page under a repeated header with no row.
    out = [r"{\small", rf"\begin{{longtable}}{{{spec}}}", r"\toprule", header, r"\midrule",
           r"\endfirsthead", r"\toprule", header, r"\midrule", r"\endhead",
           r"\endfoot", r"\bottomrule", r"\endlastfoot"]
    out += [" & ".join(r) + (r" \\ \addlinespace[3pt]" if n < len(rows) - 1 else r" \\")
            for n, r in enumerate(rows)]
    return out + [END_UNNUMBERED]


# A page break here, rather than after the heading, when less than a fifth of the page is
# left (the needspace package's test, defined in ``PAGE_MACROS``).
NEEDSPACE = r"\symflopneedspace{0.2\textheight}"
PAGE_MACROS = (r"\makeatletter",
                r"\providecommand{\symflopneedspace}[1]{\par\penalty-100\begingroup"
                r"\setlength{\dimen@}{#1}\dimen@ii\pagegoal\advance\dimen@ii-\pagetotal"
                r"\ifdim\dimen@>\dimen@ii\ifdim\dimen@ii>\z@\vfil\fi\break\fi\endgroup}",
                r"\makeatother")


def _derived_cell(v: Verdict) -> str:
    if v.status == "cannot-derive":
        return "--"
    if v.by_assumption:  # the figure that agreed; the why column gives the others
        return rf"{v.derived_tex} \emph{{(as the document assumes)}}"
    if v.written_tex and v.written != v.optimized:
        return rf"\emph{{as written}} {v.written_tex}; \emph{{optimized}} {v.optimized_tex}"
    return v.derived_tex or v.optimized_tex or v.written_tex or "--"


def _id_cell(v: Verdict) -> str:
    return r"\texttt{" + latex_escape(v.claim.id).replace("-", r"-\allowbreak{}") + "}"


def render_latex(verdicts: list[Verdict], title: str) -> str:
    """The claims as a LaTeX section: a legend, the claims that differ, then every claim
    under its section of the document; quotes compiled, derived values typeset."""
    from symflop.report.prose import prose_latex
    from symflop.report.quotes import MACROS, quote_latex

    counts = tally(verdicts)
    out = [*MACROS, *PAGE_MACROS, rf"\section{{{latex_escape(title)}}}",
           latex_escape(f"{counts['total']} claims: {counts['agrees']} agree, "
                        f"{counts['reconciled']} reconciled by a counting convention, "
                        f"{counts['scope']} count another quantity, {counts['differs']} "
                        f"differ, {counts['cannot-derive']} cannot be derived.") + " "
           + latex_escape("Each claim is derived for the equations as the document writes "
                          "them and for the optimized program (default counting "
                          "convention); where the two differ, both are shown.")
           + r"\par\medskip", r"\begin{tabular}{@{}l p{0.8\textwidth}@{}}", r"\toprule",
           r"\textbf{verdict} & \textbf{meaning} \\", r"\midrule"]
    out += [rf"{k} & {latex_escape(m)} \\" for k, m in VERDICT_MEANING.items()]
    out += [r"\bottomrule", r"\end{tabular}\par\medskip"]
    differ = [v for v in verdicts if v.status == "differs"]
    if differ:
        out.append(r"\subsection{Claims that differ}")
        why = _ditto(["; ".join(x for x in (v.reason, v.detail) if x) for v in differ])
        out += _longtable((0.18, 0.27, 0.24, 0.31), ("claim", "the document says", "derived",
                                                    "why"),
                          [[_id_cell(v), quote_latex(v.claim.quote), _derived_cell(v),
                            prose_latex(w)] for v, w in zip(differ, why)])
    sections = list(dict.fromkeys(v.claim.section for v in verdicts))
    for section in sections:
        these = [v for v in verdicts if v.claim.section == section]
        why = _ditto(["; ".join(x for x in (v.detail, v.reason) if x) for v in these])
        rows = [[_id_cell(v), quote_latex(v.claim.quote), v.status, _derived_cell(v),
                 prose_latex(w)] for v, w in zip(these, why)]
        out += [NEEDSPACE, rf"\subsection{{{latex_escape(section)}}}"]
        out += _longtable((0.18, 0.26, 0.11, 0.22, 0.23),
                          ("claim", "the document says", "verdict", "derived", "why"), rows)
    return "\n".join(out) + "\n"


def render_json(verdicts: list[Verdict], title: str) -> str:
    data = {"title": title, "counts": tally(verdicts),
            "claims": [v.as_dict() for v in verdicts],
            "closing_note": closing_note(verdicts)}
    return json.dumps(data, indent=2, ensure_ascii=True) + "\n"


def report(claims: list[Claim], fmt: str = "markdown",
           title: str = "Claims of the reference document, checked against the derivations"
           ) -> str:
    """The claims report in ``fmt`` (markdown or json); the same bytes on every run."""
    renderers = {"markdown": render_markdown, "json": render_json, "latex": render_latex}
    if fmt not in renderers:
        raise UsageError(f"unknown format {fmt!r} ({', '.join(renderers)})")
    return renderers[fmt](judge_all(claims), title)
