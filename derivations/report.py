"""The stages of ``symflop report``: the document's tables, the plots, the claims
report and the identities, each written as files and as a part of ``report.tex``."""

from __future__ import annotations

import json

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


def _verbatim_section(title: str, text: str) -> str:
    body = "\n".join(latex_escape(line, collapse=False) + r"\\" if line.strip() else r"\medskip"
                     for line in text.splitlines())
    return f"\\section{{{latex_escape(title)}}}\n{{\\small\\raggedright\n{body}\n}}\n\\clearpage"


def claims_stage(w: ReportWriter) -> str:
    from derivations.claims import report
    w.write("claims.md", report("markdown"))
    w.write("claims.json", report("json"))
    return _claims_latex(json.loads(report("json")))


def _breakable(text: str) -> str:
    """Escaped text that may break after operators and brackets: the document's quotes
    hold long LaTeX and formulas without spaces, which would overrun a table column."""
    out = latex_escape(text)
    for token in ("}", "(", ")", ",", "+", "=", "*", "/"):
        out = out.replace(token, token + r"\allowbreak{}")
    return out


def _claims_latex(data: dict) -> str:
    counts = data.get("counts", {})
    lines = [r"\section{The document's claims, checked}",
             latex_escape(", ".join(f"{v} {k}" for k, v in counts.items())) + r"\par\medskip",
             r"\begin{longtable}{" + "".join(
                 rf">{{\raggedright\arraybackslash}}p{{{w}\textwidth}}"
                 for w in ("0.13", "0.36", "0.1", "0.35")) + "}", r"\toprule",
             r"claim & the document says & verdict & derived (why) \\", r"\midrule",
             r"\endhead"]
    for r in data["claims"]:
        why = r.get("reason") or r.get("detail") or ""
        cells = [r["id"], f"{r['quote']} [{r['claimed']}]", r["verdict"],
                 f"{r.get('derived') or ''} {('(' + why + ')') if why else ''}"]
        lines.append(" & ".join(_breakable(str(c)) for c in cells) + r" \\")
    lines += [r"\bottomrule", r"\end{longtable}", r"\clearpage"]
    return "\n".join(lines)


def identities_stage(w: ReportWriter) -> str:
    from derivations.identities import report
    text = report("text")
    w.write("identities.txt", text)
    w.write("identities.md", report("markdown"))
    return _verbatim_section("Identities the document states", text)


STAGES = [("tables", tables_stage), ("plots", plots_stage), ("claims", claims_stage),
          ("identities", identities_stage)]
