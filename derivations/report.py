"""The stages of ``symflop report``: the document's tables, the plots, the claims
report and the identities, each written as files and as a part of ``report.tex``."""

from __future__ import annotations

from symflop.report.report import ReportWriter
from symflop.report.tables import END_UNNUMBERED

FORMATS = {"latex": "tex", "markdown": "md", "csv": "csv", "json": "json"}


def front_stage(w: ReportWriter) -> str:
    """What the report is, the counting conventions in words and as a table, units, and
    the glossary of every symbol the tables use."""
    from derivations.glossary import GRADIENT_TAGS, UNITS, glossary
    from symflop.cost.conventions import CONVENTIONS, KINDS
    from symflop.report.latex import latex_escape as esc
    from symflop.report.latex import symbol_latex
    from symflop.report.prose import prose_latex
    from symflop.report.tables import spaced_rows
    parts = [r"\section{About this report}",
             esc("Every figure in this report is derived by symflop from the components' "
                 "equations, written once in SymPy: gradients by differentiation, operation "
                 "counts by counting the program's operations under an explicit convention, "
                 "memory from the tensors each pass keeps. Each component is counted twice: "
                 "as the reference document writes its equations, and as the optimized "
                 "program the engine derives from them (common subexpressions reused, sums "
                 "that are zero removed, tensors of the forward pass read rather than "
                 "recomputed). The claims section checks every quantitative claim of the "
                 "reference document against these derivations; the identities section "
                 "proves or refutes the equivalences it states. The generated code of every "
                 "component is checked against torch (symflop validate).") + r"\par\medskip",
             esc(UNITS) + r"\par",
             r"\subsection{Counting conventions}",
             esc("A count tallies operations by kind; a convention weighs each kind. A "
                 "multiply-add is a multiplication feeding an addition over the same "
                 "indices. The tables use the default convention.") + r"\par\smallskip",
             r"\begin{tabular}{@{}l" + "c" * (len(KINDS) + 1) + "@{}}", r"\toprule",
             "convention & " + " & ".join(esc(k) for k in KINDS) + r" & multiply-add \\",
             r"\midrule"]
    for c in CONVENTIONS.values():
        parts.append(esc(c.name) + " & " + " & ".join(str(c.weight(k)) for k in KINDS)
                     + f" & {c.fma_flops}" + r" \\")
    parts += [r"\bottomrule", r"\end{tabular}\par\smallskip", r"\begin{description}"]
    parts += [rf"\item[{esc(c.name)}] {prose_latex(c.description)}"
              for c in CONVENTIONS.values()]
    parts += [r"\end{description}", r"\subsection{Glossary}",
              esc("Every symbol that appears in a table, and what it means there. A symbol "
                  "that the document uses for two things is listed with both.") + " "
              + r"In the derived equations, $\mathrm{d}x$ is the gradient of the loss with "
              r"respect to $x$, $\partial L/\partial x$, and a tag after it names a part of "
              r"that gradient which the engine keeps as a tensor of its own ("
              + "; ".join(rf"$\mathrm{{{tag}}}$: {prose_latex(meaning)}"
                          for tag, meaning in GRADIENT_TAGS.items()) + r").\par",
              r"{\small\begin{longtable}{@{}l l p{0.65\textwidth}@{}}", r"\toprule",
              r"\textbf{symbol} & \textbf{kind} & \textbf{meaning} \\", r"\midrule",
              r"\endhead"]
    parts += spaced_rows([f"${symbol_latex(sym)}$ & {esc(kind)} & {prose_latex(meaning)}"
                          + r" \\" for kind, sym, meaning in glossary()])
    parts += [r"\bottomrule", END_UNNUMBERED]
    return "\n".join(parts)


def tables_stage(w: ReportWriter) -> str:
    from derivations.tables import TABLE_NAMES, build_table
    from symflop.report.tables import LONG_TABLE_ROWS, render
    parts = [r"\section{Cost tables}",
             "Every entry is derived by the engine (default counting convention, float32, "
             "leading order); the same tables in Markdown, CSV and JSON lie beside this file "
             r"in \texttt{tables/}."]
    for name in TABLE_NAMES:
        table = build_table(name)
        for fmt, ext in FORMATS.items():
            w.write(f"tables/{name}.{ext}", render(table, fmt))
        if len(table.rows) > LONG_TABLE_ROWS:  # not a float: the floats before it go first
            parts.append(r"\clearpage")
        parts.append(f"\\input{{tables/{name}.tex}}")
    # no page break after the last table: it may float to the top of the next page, with
    # the next section below it, rather than stand alone on a page
    return "\n".join(parts)


def _pass_table(d, pass_name: str, stage: str) -> list[str]:
    """One pass of a derivation as a table: each equation, typeset, and its FLOPs."""
    from symflop.report.latex import expr_latex
    from symflop.report.latex import latex_escape as esc
    from symflop.report.render import lhs_text
    from symflop.report.tables import spaced_rows
    rows = []
    for st, cnt in d.step_counts(pass_name, "default", stage):
        kinds = ", ".join(f"{k} ${expr_latex(v)}$" for k, v in cnt.by_kind.items() if v != 0)
        rhs = expr_latex(st.rhs(), breakable=True)
        rows.append(rf"$\displaystyle {lhs_text(st.lhs, st.idx, True)} = {rhs}$ & "
                    rf"${expr_latex(cnt.total)}$ & {kinds or esc('none')} \\")
    total = d.counts(pass_name, "default", stage).total
    # fractions in display style need taller rows, or a denominator meets the row below
    return [r"{\small\renewcommand{\arraystretch}{1.9}"
            r"\begin{longtable}{@{}>{\raggedright\arraybackslash}p{0.5\textwidth}"
            r">{\raggedright\arraybackslash}p{0.2\textwidth}"
            r">{\raggedright\arraybackslash}p{0.24\textwidth}@{}}", r"\toprule",
            r"\textbf{equation} & \textbf{FLOPs} & \textbf{by kind} \\", r"\midrule",
            r"\endhead", *spaced_rows(rows), r"\midrule",
            rf"total & ${expr_latex(total)}$ & \\",
            r"\bottomrule", END_UNNUMBERED]


def shown_passes() -> list[tuple]:
    """The passes section "Derived equations" prints, as (derivation, component, pass,
    stage, what it shows): every backward pass, BatchNorm's forward pass with its
    running statistics, and cross-entropy's stable log-sum-exp as the code runs it."""
    from derivations import CATALOGUE
    from symflop import derive
    derived = {name: derive(c) for name, c in ((n, b()) for n, b in CATALOGUE.items())
               if hasattr(c, "passes")}  # every component once; composites have no passes
    shown = [("cross-entropy", "forward", "lowered",
              "the stable log-sum-exp, with its max shift"),
             ("batchnorm", "forward", "optimized", "with the running statistics")]
    shown += [(name, "backward", "optimized", "") for name, d in derived.items()
              if "backward" in d.passes]
    return [(derived[name], name, *rest) for name, *rest in shown]


def _normalization_note(shown: list[tuple]) -> str:
    """Why LayerNorm's backward costs more per element than the other normalizations',
    with each one's derived leading FLOPs per element of x."""
    import sympy as sp

    from symflop.cost.counting import leading_order
    per = {}
    for d, name, *_shown in shown:
        if name in ("batchnorm", "layernorm", "groupnorm", "instancenorm"):
            elements = sp.Mul(*d.programs["backward"].tensors["x"].shape)
            per[name] = sp.cancel(leading_order(d.counts("backward").total) / elements)
    names = {"batchnorm": "BatchNorm", "groupnorm": "GroupNorm",
             "instancenorm": "InstanceNorm", "layernorm": "LayerNorm"}
    listed = ", ".join(f"{per[n]} ({names[n]})" for n in names if n in per)
    return (f"Per element of x, the optimized backward passes cost {listed} FLOPs at "
            "leading order. LayerNorm's gamma varies along the axis it normalizes over, "
            "so gamma*dy stays inside the sums over that axis; a per-channel gamma is "
            "constant over the values the others sum over, leaves those sums, and the "
            "sums of dy and dy*xhat that remain are shared with dgamma and dbeta.")


def equations_stage(w: ReportWriter) -> str:
    """The equations the document relies on without writing them out, as the engine
    derives them: every backward pass, BatchNorm's running statistics, and the stable
    log-sum-exp that the generated code computes."""
    from symflop.core.stages import stage_label
    from symflop.report.claims import NEEDSPACE, PAGE_MACROS
    from symflop.report.latex import latex_escape as esc
    from symflop.report.prose import prose_latex
    shown = shown_passes()  # derived once, for the note and the tables
    parts = [r"\section{Derived equations}",
             esc("Equations the reference document uses without writing them out, as the "
                 "engine derives them: the backward pass of every component that has one "
                 "(optimized program), BatchNorm's forward pass with its running "
                 "statistics, and the numerically stable log-sum-exp of cross-entropy as "
                 "the generated code runs it (the lowered stage: the maximum is subtracted "
                 "before the exponentials, and counted). FLOPs under the default "
                 "convention.") + " " + prose_latex(_normalization_note(shown))
             + r"\par",
             *PAGE_MACROS]
    for d, name, pass_name, stage, what in shown:
        title = f"{name}: {pass_name} pass, {stage_label(stage)}" + \
            (f" \N{EM DASH} {what}" if what else "")
        parts += [NEEDSPACE, rf"\subsection*{{{esc(title)}}}",
                  *_pass_table(d, pass_name, stage)]
    parts.append(r"\clearpage")
    return "\n".join(parts)


def plots_stage(w: ReportWriter) -> str:
    from derivations.plots import CAPTIONS, PLOTS
    from symflop.report.prose import prose_latex
    parts = [r"\section{Plots}"]
    for name, draw in PLOTS.items():
        for ext, data in draw().items():
            w.write(f"figures/{name}.{ext}", data)
        # in the text's flow, not a float: a section of figures alone would set them one
        # to a float page; a figure that does not fit starts the next page
        parts += [r"\par\noindent\begin{minipage}{\linewidth}\centering",
                  # at its own size, so that its 9 pt text stays 9 pt
                  f"\\includegraphics{{figures/{name}.pdf}}",
                  r"\makeatletter\def\@captype{figure}\makeatother",
                  f"\\caption{{{prose_latex(CAPTIONS.get(name, name))}}}",
                  r"\end{minipage}\par\bigskip"]
    parts.append(r"\clearpage")
    return "\n".join(parts)


def claims_stage(w: ReportWriter) -> str:
    from derivations.claims import CLAIMS
    from symflop.report.claims import judge_all, render_json, render_latex, render_markdown
    title = "Claims of the reference document, checked against the derivations"
    verdicts = judge_all(CLAIMS)  # judged once, rendered three ways
    w.write("claims.md", render_markdown(verdicts, title))
    w.write("claims.json", render_json(verdicts, title))
    return render_latex(verdicts, "The document's claims, checked") + r"\clearpage"


def identities_stage(w: ReportWriter) -> str:
    from derivations.identities import report
    w.write("identities.txt", report("text"))
    w.write("identities.md", report("markdown"))
    return report("latex") + r"\clearpage"


STAGES = [("front", front_stage), ("tables", tables_stage), ("equations", equations_stage),
          ("plots", plots_stage),
          ("claims", claims_stage), ("identities", identities_stage)]
