"""A reference text's quotes as LaTeX that compiles: its own math kept as math.

A quote is a piece of the document as its source has it: prose with ``$...$`` math,
table cells joined by `` | `` and rows by ``; ``, and now and then a display equation
without dollars.  The math is the document's LaTeX and is compiled, not escaped, so the
PDF shows the formula the author wrote; the prose is escaped.  Math that uses a
command outside ``MATH_COMMANDS`` (or unbalanced braces) would stop pdflatex, so such a
part is printed as escaped text instead, and ``unsafe_math`` names what was wrong.
"""

from __future__ import annotations

import re

from symflop.report.latex import latex_escape

# Commands a quote's math may use: LaTeX and amsmath, bm's \bm, and the document's own
# macros, which ``MACROS`` defines (\pd, \R).
MATH_COMMANDS = frozenset("""
alpha beta gamma delta epsilon varepsilon zeta eta theta kappa lambda mu nu xi pi rho
sigma tau phi varphi chi psi omega Gamma Delta Theta Lambda Sigma Phi Psi Omega
approx cdot times odot otimes div pm leq geq ll gg neq sim propto in notin subset to
leftarrow rightarrow Leftarrow Rightarrow mapsto infty partial nabla sum prod int log
exp max min sqrt frac tfrac dfrac hat bar tilde vec dot ddot bm mathbf mathrm mathcal
mathbb text textbf operatorname left right big Big quad qquad ldots cdots dots mid
pd R
""".split())
MACROS = (r"\providecommand{\pd}[2]{\frac{\partial #1}{\partial #2}}",
          r"\providecommand{\R}{\mathbb{R}}")
PACKAGES = ("amsmath", "amssymb", "bm")

_MATH_UNICODE = {"\u2192": r"\to ", "\u2248": r"\approx ", "\u00d7": r"\times ",
                 "\u2013": "-", "\u2014": "-", "\u2212": "-", "\u2264": r"\leq ",
                 "\u2265": r"\geq ", "\u221d": r"\propto "}
_COMMAND = re.compile(r"\\([A-Za-z]+)")


def unsafe_math(math: str) -> str:
    """Why ``math`` would not compile in the report ("" when it would)."""
    unknown = sorted(set(_COMMAND.findall(math)) - MATH_COMMANDS)
    if unknown:
        return "unknown command(s) " + ", ".join("\\" + c for c in unknown)
    depth = 0
    for ch in re.sub(r"\\[{}]", "", math):
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if depth < 0:
            break
    return "unbalanced braces" if depth else ""


def _math(math: str) -> str:
    text = "".join(_MATH_UNICODE.get(ch, ch) for ch in math.strip())
    if not text or unsafe_math(text):
        return r"\texttt{" + latex_escape(math) + "}"
    return f"${text}$"


def _prose(text: str) -> str:
    """Prose, where a piece of a row or cell that holds a LaTeX command is a display
    equation written without dollars."""
    out = []
    for row_sep, row in _split(text, "; "):
        cells = []
        for cell_sep, cell in _split(row, " | "):
            body = _math(cell) if "\\" in cell else _words(cell)
            cells.append((r" \textbar{} " if cell_sep else "") + body)
        out.append(("; " if row_sep else "") + "".join(cells))
    return "".join(out)


def _words(text: str) -> str:
    """The document's words: ~ before a number is "about" (~7.6G), **...** is bold."""
    parts = re.split(r"\*\*(.+?)\*\*", text)
    out = "".join(r"\textbf{" + latex_escape(p, collapse=False) + "}" if n % 2
                  else latex_escape(p, collapse=False) for n, p in enumerate(parts))
    return re.sub(r"\\textasciitilde\{\}(?=\d)", r"${\\sim}$", out)


def _split(text: str, sep: str) -> list[tuple[bool, str]]:
    parts = text.split(sep)
    return [(n > 0, p) for n, p in enumerate(parts)]


def quote_latex(quote: str) -> str:
    """``quote`` as LaTeX: math compiled, prose escaped."""
    quote = " ".join(quote.split())
    pieces = quote.split("$")
    if len(pieces) % 2 == 0:  # an odd number of dollars: no math can be trusted
        return latex_escape(quote)
    return "".join(_math(p) if n % 2 else _prose(p) for n, p in enumerate(pieces))
