"""Identities: equivalences (and non-equivalences) between forms of a component, each
proved or refuted symbolically and checked numerically.

A catalogue states them as ``Identity`` records (name, statement, what a reference text
claims, verdict, derivation steps with SymPy expressions) through the entry point group
``symflop.identities``: a dict of name -> function returning an ``Identity``.  The
engine knows no particular identity.  A numeric check is named by a plain name, which
the installed validation suite (entry point group ``symflop.validation``, the one
``symflop validate`` runs) looks up and runs through its ``identity_check(name)``,
returning a ``NumericResult``.  The suite is loaded only when a check runs, so the
records and their symbolic derivations never need torch, and a catalogue never names
the package that checks it.

``step`` runs one pass of a component on one element of each tensor, symbolically, so
that a catalogue can compose its components' own equations (an optimizer step, a
normalization at inference) instead of writing them again.

Rendering is deterministic: text, Markdown and JSON depend only on the records.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from importlib.metadata import entry_points

import sympy as sp

from symflop.core.model import Component, Role
from symflop.errors import ComponentError, UsageError

GROUP = "symflop.identities"
VALIDATION_GROUP = "symflop.validation"
FORMATS = ("text", "markdown", "json", "latex")


@dataclass(frozen=True)
class Step:
    """One line of a derivation: words, and optionally the expression they name."""

    text: str
    expr: sp.Basic | None = None

    def plain(self) -> str:
        return self.text if self.expr is None else f"{self.text} {sp.sstr(self.expr)}"

    def as_dict(self) -> dict:
        out: dict = {"text": self.text}
        if self.expr is not None:
            out["expr"] = sp.sstr(self.expr)
            out["latex"] = latex(self.expr)
        return out


@dataclass(frozen=True)
class NumericResult:
    """The outcome of a numeric check: passed is None when the check did not run."""

    passed: bool | None
    summary: str
    lines: tuple[str, ...] = ()

    @property
    def status(self) -> str:
        return {True: "agrees", False: "FAILS", None: "not run"}[self.passed]


@dataclass(frozen=True)
class Identity:
    """A statement, its verdict and the derivation behind it.

    holds: whether the statement is true; condition: the change of variables or the
    condition under which it holds ("" if it holds as stated).  document: what the
    reference text asserts, and document_agrees whether the verdict bears it out.
    numeric_check: the name of the check the installed validation suite runs.
    """

    name: str
    title: str
    statement: str
    holds: bool
    derivation: tuple[Step, ...]
    condition: str = ""
    document: str = ""
    document_agrees: bool | None = None
    notes: tuple[str, ...] = ()
    numeric_check: str | None = None
    numeric: NumericResult | None = field(default=None, compare=False)

    @property
    def verdict(self) -> str:
        if not self.holds:
            return "does not hold"
        return f"holds under {self.condition}" if self.condition else "holds"


# -- running a component's equations on scalars ---------------------------------------

def step(c: Component, pass_name: str, values: Mapping[str, sp.Expr]) -> dict[str, sp.Expr]:
    """Run ``pass_name`` of ``c`` on one element of every tensor, symbolically.

    ``values`` maps tensor names (and hyperparameter names, optionally) to SymPy
    expressions standing for one element; tensors not given stand for themselves, as a
    plain symbol of their name.  Each assignment is applied in order, so later ones read
    the values earlier ones wrote (an updated state, an intermediate).  Returns every
    tensor's value after the pass.  Only elementwise passes can be run this way: an
    assignment with a sum, or one that reads a tensor at indices other than its own,
    is rejected.
    """
    if pass_name not in c.passes:
        raise ComponentError(f"{c.name} has no pass {pass_name!r} (passes: "
                             f"{', '.join(c.passes)})")
    env: dict[str, sp.Expr] = {}
    for name, t in c.tensors.items():
        if name in values:
            env[name] = sp.sympify(values[name])
        elif t.role is Role.HYPER:
            env[name] = t.symbol
        else:
            env[name] = sp.Symbol(name, real=True)
    for a in c.passes[pass_name].assignments:
        if a.rhs.has(sp.Sum):
            raise ComponentError(f"{c.name}.{pass_name}: assignment to {a.lhs.name!r} has a "
                                 "sum; only elementwise passes can be stepped on scalars")
        mapping: dict = {}
        for ref in a.rhs.atoms(sp.Indexed):
            name = str(ref.base)
            if set(ref.indices) - set(a.idx):
                raise ComponentError(f"{c.name}.{pass_name}: {ref} is read at an index the "
                                     f"assignment to {a.lhs.name!r} does not run over")
            mapping[ref] = env[name]
        for name, t in c.tensors.items():
            if not t.shape:
                mapping[t.symbol] = env[name]
        env[a.lhs.name] = a.rhs.xreplace(mapping)
    return env


# -- finding and running ---------------------------------------------------------------

@lru_cache(maxsize=1)
def installed() -> dict[str, Callable[[], Identity]]:
    """Identities from every installed catalogue (entry point group symflop.identities)."""
    found: dict = {}
    for ep in sorted(entry_points(group=GROUP), key=lambda e: e.name):
        try:
            entries = ep.load()
        except Exception as e:  # noqa: BLE001 - a broken plug-in is reported in one line
            raise UsageError(f"identities {ep.name!r} ({ep.value}) failed to load: "
                             f"{type(e).__name__}: {e}") from None
        for name, build in entries.items():
            found.setdefault(name, build)
    return found


def run_numeric(ident: Identity) -> NumericResult:
    """Run the identity's numeric check, or say why it did not run."""
    if ident.numeric_check is None:
        return NumericResult(None, "no numeric check")
    try:
        suite = _validation_suite()
    except ImportError as e:
        return NumericResult(None, f"not run: {e.name or e} is not installed")
    check = getattr(suite, "identity_check", None)
    if check is None:
        return NumericResult(None, "not run: no installed validation suite checks identities")
    return check(ident.numeric_check)


def _validation_suite():
    """The validation suite of the first installed catalogue that has one (as ``symflop
    validate`` finds it), or None; imported now (it may need torch)."""
    eps = sorted(entry_points(group=VALIDATION_GROUP), key=lambda e: e.name)
    return eps[0].load() if eps else None


def evaluate(identities: Mapping[str, Callable[[], Identity]], numeric: bool = True,
             names: tuple[str, ...] | None = None) -> list[Identity]:
    """Build the identities (all, or ``names`` in that order), with numeric results."""
    names = tuple(identities) if names is None else names
    unknown = [n for n in names if n not in identities]
    if unknown:
        raise UsageError(f"unknown identity {unknown[0]!r} (identities: "
                         f"{', '.join(identities)})")
    out = []
    for n in names:
        ident = identities[n]()
        result = run_numeric(ident) if numeric else NumericResult(None, "not run (disabled)")
        out.append(_with_numeric(ident, result))
    return out


def _with_numeric(ident: Identity, result: NumericResult) -> Identity:
    fields = {k: getattr(ident, k) for k in Identity.__dataclass_fields__}
    fields["numeric"] = result
    return Identity(**fields)


# -- rendering -----------------------------------------------------------------------

def latex(e: sp.Basic) -> str:
    from symflop.report.latex import expr_latex
    return expr_latex(e)


def _document_line(ident: Identity) -> str:
    if not ident.document:
        return ""
    tag = {True: "agrees", False: "WRONG", None: "not a claim of the document"}
    return f"{ident.document} ({tag[ident.document_agrees]})"


def _numeric_head(r: NumericResult) -> str:
    return r.summary if r.passed is None else f"{r.status}: {r.summary}"


def render_text(items: list[Identity]) -> str:
    out = []
    for ident in items:
        out.append(f"{ident.name}: {ident.title}")
        out.append(f"  statement: {ident.statement}")
        out.append(f"  verdict:   {ident.verdict}")
        if ident.document:
            out.append(f"  document:  {_document_line(ident)}")
        out.append("  derivation:")
        out.extend(f"    {s.plain()}" for s in ident.derivation)
        out.extend(f"  note: {n}" for n in ident.notes)
        if ident.numeric is not None:
            out.append(f"  numeric: {_numeric_head(ident.numeric)}")
            out.extend(f"    {line}" for line in ident.numeric.lines)
        out.append("")
    wrong = [i.name for i in items if i.document_agrees is False]
    failed = [i.name for i in items if i.numeric is not None and i.numeric.passed is False]
    out.append(f"{len(items)} identities; the document is wrong in: "
               + (", ".join(wrong) if wrong else "none"))
    if failed:
        out.append("numeric checks FAIL: " + ", ".join(failed))
    return "\n".join(out)


def render_markdown(items: list[Identity]) -> str:
    out = ["| identity | verdict | document | numeric |", "|---|---|---|---|"]
    for i in items:
        doc = {True: "agrees", False: "wrong", None: "-"}[i.document_agrees]
        num = i.numeric.status if i.numeric is not None else "-"
        out.append(f"| `{i.name}` | {i.verdict} | {doc} | {num} |")
    for i in items:
        out += ["", f"### `{i.name}`: {i.title}", "", f"**Statement.** {i.statement}", "",
                f"**Verdict.** {i.verdict}."]
        if i.document:
            out += ["", f"**Document.** {_document_line(i)}"]
        out += ["", "**Derivation.**", ""]
        for s in i.derivation:
            out.append(f"- {s.text.strip()}"
                       + (f" ${latex(s.expr)}$" if s.expr is not None else ""))
        if i.notes:
            out.append("")
            out.extend(f"*Note.* {n}" + "\n" for n in i.notes)
            out[-1] = out[-1].rstrip("\n")
        if i.numeric is not None:
            out += ["", f"**Numeric check.** {_numeric_head(i.numeric)}"]
            if i.numeric.lines:
                out.append("")
                out.extend(f"- {line.strip()}" for line in i.numeric.lines)
    return "\n".join(out)


def _continued(item: str, tex: str) -> str:
    """A derivation line with ``tex`` (its next value, "= 31.62", or a further line of
    it) added: inside its display or formula, else as a display of its own."""
    if tex.startswith("=") and item.endswith(r"\]"):
        return item[:-2] + f" {tex}" + r"\]"
    if tex.startswith("=") and item.endswith("$") and len(tex) <= 70:
        return item[:-1] + f" {tex}$"
    return item + (f" ${tex}$" if len(tex) <= 70 else rf"\[{tex}\]")


def _named_value(text: str) -> tuple[str, str] | None:
    """A step's words that end by naming its value ("the output: z =", "the next point
    theta_{t+1} - lr*mu*v_t ="), as (the words before, in LaTeX; the name's LaTeX), so
    that name and value print as one formula; None when the words end otherwise."""
    from symflop.report.latex import symbol_latex
    from symflop.report.prose import prose_latex
    if not text.endswith(" ="):
        return None
    before = text[:-2].rstrip()
    words = prose_latex(before)
    if words.endswith("$"):  # a formula: theta_{t+1} - lr*mu*v_t
        start = words.rindex("$", 0, len(words) - 1)
        return words[:start], words[start + 1:-1]
    lone = re.fullmatch(r"(|.*[:\w] )([A-Za-z][A-Za-z0-9]*(?:_[A-Za-z0-9]+)*)", before)
    return (prose_latex(lone.group(1)), symbol_latex(lone.group(2))) if lone else None


def render_latex(items: list[Identity], title: str = "Identities the document states"
                 ) -> str:
    """A LaTeX section: the conclusions first (a table of verdicts), then each identity
    with its statement, the document's version and the derivation, every expression
    typeset by SymPy's LaTeX printer."""
    from symflop.report.prose import prose_latex as esc
    from symflop.report.prose import sentence
    from symflop.report.tables import END_UNNUMBERED

    doc = {True: "agrees", False: "wrong", None: "--"}
    wrong = [i.name for i in items if i.document_agrees is False]
    out = [rf"\section{{{esc(title)}}}",
           esc(f"{len(items)} identities; the document is wrong in "
               + (", ".join(wrong) if wrong else "none") + ". Each is proved or refuted "
               "symbolically from the components' own equations and checked numerically "
               "against torch.") + r"\par\medskip",
           r"{\small\begin{longtable}{@{}" + "".join(
               rf">{{\raggedright\arraybackslash}}p{{{w}\textwidth}}"
               for w in (0.27, 0.4, 0.12, 0.13)) + "@{}}", r"\toprule",
           r"\textbf{identity} & \textbf{verdict} & \textbf{document} & "
           r"\textbf{numeric check} \\", r"\midrule"]
    for i in items:
        num = i.numeric.status if i.numeric is not None else "--"
        out.append(rf"{esc(i.title)} & {esc(i.verdict)} & {doc[i.document_agrees]} & "
                   rf"{esc(num)} \\")
    out += [r"\bottomrule", END_UNNUMBERED]
    for i in items:
        out += [rf"\subsection{{{esc(i.title)}}}",
                rf"\textbf{{Verdict.}} {esc(i.verdict[0].upper() + i.verdict[1:])}.\par",
                rf"\textbf{{Statement.}} {esc(i.statement)}\par"]
        if i.document:
            out.append(rf"\textbf{{The document.}} {esc(sentence(i.document))} "
                       rf"(\emph{{{doc[i.document_agrees]}}})\par")
        out.append(r"\textbf{Derivation.}\begin{itemize}")
        for st in i.derivation:
            text = st.text.strip()
            words, tex = esc(text), latex(st.expr) if st.expr is not None else ""
            lead = _named_value(text) if tex else None
            if lead is not None:  # "the output: z =" and z's value: one formula, z = ...
                words, tex = lead[0].rstrip(), f"{lead[1]} = {tex}"
            if tex and (text == "=" or not words.strip()) and out[-1].startswith(r"\item"):
                out[-1] = _continued(out[-1], f"= {tex}" if text == "=" else tex)
                continue  # "= 31.62" goes on with the line before, not a bullet alone
            # a short expression stays on the line of its words, a long one is displayed
            math = (f" ${tex}$" if len(tex) <= 70 else rf"\[{tex}\]") if tex else ""
            out.append(rf"\item {words}{math}")
        out.append(r"\end{itemize}")
        out += [rf"\emph{{Note.}} {esc(sentence(n))}\par" for n in i.notes]
        if i.numeric is not None:
            out.append(rf"\textbf{{Numeric check.}} {esc(_numeric_head(i.numeric))}")
            if i.numeric.lines:
                out.append(r"{\small\begin{itemize}")
                out += [rf"\item {esc(line.strip())}" for line in i.numeric.lines]
                out.append(r"\end{itemize}}")
        out.append(r"\medskip")
    return "\n".join(out) + "\n"


def to_json(items: list[Identity]) -> dict:
    rows = []
    for i in items:
        row = {"name": i.name, "title": i.title, "statement": i.statement,
               "verdict": i.verdict, "holds": i.holds, "condition": i.condition,
               "document": i.document, "document_agrees": i.document_agrees,
               "derivation": [s.as_dict() for s in i.derivation], "notes": list(i.notes)}
        if i.numeric is not None:
            row["numeric"] = {"status": i.numeric.status, "passed": i.numeric.passed,
                              "summary": i.numeric.summary, "lines": list(i.numeric.lines)}
        rows.append(row)
    return {"identities": rows}


def render(items: list[Identity], fmt: str) -> str:
    if fmt == "text":
        return render_text(items)
    if fmt == "markdown":
        return render_markdown(items)
    if fmt == "json":
        return json.dumps(to_json(items), indent=2)
    if fmt == "latex":
        return render_latex(items)
    raise UsageError(f"unknown format {fmt!r} (formats: {', '.join(FORMATS)})")


def report(fmt: str = "text", numeric: bool = True,
           identities: Mapping[str, Callable[[], Identity]] | None = None,
           names: tuple[str, ...] | None = None) -> str:
    """Every identity (or ``names``), evaluated and rendered as ``fmt``.

    ``identities`` defaults to those installed through the ``symflop.identities``
    entry points.
    """
    if fmt not in FORMATS:
        raise UsageError(f"unknown format {fmt!r} (formats: {', '.join(FORMATS)})")
    found = installed() if identities is None else identities
    if not found:
        raise UsageError("no identities are installed (pip install -e . in the repository)")
    return render(evaluate(found, numeric, names), fmt)
