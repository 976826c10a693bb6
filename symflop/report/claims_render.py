"""The claims report's renderers: the verdicts as Markdown, LaTeX or JSON.

Each renderer takes the verdicts ``judge_all`` gives and a title, and returns the
same bytes on every run; the LaTeX one also provides the macros and the page-break
test the report's other sections use (``PAGE_MACROS``, ``NEEDSPACE``).
"""

from __future__ import annotations

import json

from symflop.report.latex import latex_escape
from symflop.report.tables import END_UNNUMBERED
from symflop.report.verdict import Verdict, tally


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
    """The claims as Markdown: counts, one table per section, then the closing note."""
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
              "assumption does; a figure written as one term (8P) is matched at leading "
              "order, one written with lower-order terms (Nd + d) term by term, a number "
              "at its last digit",
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


def _why(v: Verdict) -> str:
    """The why column: the detail (how it agrees), and the reason it differs or, where
    there is none, what was derived (the figure alone does not say which steps: "all
    but the running statistics", a bare 81, "sgd")."""
    return "; ".join(x for x in (v.detail, v.reason or v.claim.how) if x)


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
        why = _ditto([_why(v) for v in these])
        rows = [[_id_cell(v), quote_latex(v.claim.quote), v.status, _derived_cell(v),
                 prose_latex(w)] for v, w in zip(these, why)]
        out += [NEEDSPACE, rf"\subsection{{{latex_escape(section)}}}"]
        out += _longtable((0.18, 0.26, 0.11, 0.22, 0.23),
                          ("claim", "the document says", "verdict", "derived", "why"), rows)
    return "\n".join(out) + "\n"


def render_json(verdicts: list[Verdict], title: str) -> str:
    """The claims, their counts and the closing note as JSON."""
    data = {"title": title, "counts": tally(verdicts),
            "claims": [v.as_dict() for v in verdicts],
            "closing_note": closing_note(verdicts)}
    return json.dumps(data, indent=2, ensure_ascii=True) + "\n"
