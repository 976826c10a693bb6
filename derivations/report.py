"""The stages of ``symflop report``: the document's tables, the plots, the claims
report and the identities, each written as files and as a part of ``report.tex``."""

from __future__ import annotations

from symflop.report.report import ReportWriter
from symflop.report.tables import latex_escape

FORMATS = {"latex": "tex", "markdown": "md", "csv": "csv", "json": "json"}


def tables_stage(w: ReportWriter) -> str:
    from derivations.tables import TABLE_NAMES, build_table
    from symflop.report.tables import render
    parts = [r"\section{Cost tables}",
             "Every entry is derived by the engine (default counting convention, float32, "
             "leading order); the same tables in Markdown, CSV and JSON lie beside this file "
             r"in \texttt{tables/}."]
    for name in TABLE_NAMES:
        table = build_table(name)
        for fmt, ext in FORMATS.items():
            w.write(f"tables/{name}.{ext}", render(table, fmt))
        parts.append(f"\\input{{tables/{name}.tex}}")
    parts.append(r"\clearpage")
    return "\n".join(parts)


def plots_stage(w: ReportWriter) -> str:
    from derivations.plots import CAPTIONS, PLOTS
    parts = [r"\section{Plots}"]
    for name, draw in PLOTS.items():
        for ext, data in draw().items():
            w.write(f"figures/{name}.{ext}", data)
        parts += [r"\begin{figure}[htbp]\centering",
                  f"\\includegraphics[width=0.85\\textwidth]{{figures/{name}.pdf}}",
                  f"\\caption{{{latex_escape(CAPTIONS.get(name, name))}}}", r"\end{figure}"]
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


STAGES = [("tables", tables_stage), ("plots", plots_stage), ("claims", claims_stage),
          ("identities", identities_stage)]
