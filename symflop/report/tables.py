"""Tables of derived results, rendered as LaTeX, Markdown, CSV or JSON.

The engine knows no particular table: a catalogue builds ``Table`` values whose
cells are SymPy expressions (counts, bytes, equations), numbers or text, and
this module renders them.  Rendering is deterministic: the same table gives the
same bytes in every process, whatever ``PYTHONHASHSEED`` is (expressions are
printed by SymPy's printers, which order terms canonically; JSON keys are
sorted; nothing iterates over a set).

Cells:

* ``str``: text (escaped for LaTeX; ``|`` escaped for Markdown);
* ``int`` / ``float`` / ``Num``: a number (``Num`` carries its display format;
  CSV and JSON always get the unformatted value);
* a SymPy expression (``sp.Basic``): ``$...$`` with SymPy's LaTeX printer in
  LaTeX and Markdown, SymPy's string form in CSV and JSON; an ``Eq`` prints as
  ``lhs = rhs``; index variables print as their plain names;
* ``Seq``: several cells in one, joined by a separator (a list in JSON).

A LaTeX table is a ``table`` float holding a booktabs ``tabular``, with caption
and label, or, when taller than a page, a ``longtable`` that breaks across pages;
either is ready to ``\\input`` into a document whose preamble loads
``LATEX_PACKAGES`` (``latex_document`` writes a whole document).
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from dataclasses import dataclass, field

import sympy as sp

from symflop.errors import UsageError
from symflop.report.latex import (  # noqa: F401 - the printer's names, also reached here
    expr_latex,
    expr_text,
    latex_escape,
    set_symbol_latex,
    symbol_latex,
    word_subscript,
)
from symflop.report.prose import prose_latex

FORMATS = ("latex", "markdown", "csv", "json")
LATEX_PACKAGES = ("booktabs", "amsmath", "amssymb", "array", "tabularx", "longtable")
# More rows than fit on a landscape page: such a table is a longtable.
LONG_TABLE_ROWS = 30
# About the characters a line of a paper's one-column portrait page (6.5 in) holds at
# 10 pt: a table whose columns would be wider stacks its headers and wraps its widest
# columns (never shrinks its font), so that every fragment fits a paper as it is.
LINE_CHARACTERS = 90
# A column's padding (2 \tabcolsep = 12 pt) in those characters (about 5 pt each).
PADDING_CHARACTERS = 2.4


# The end of a longtable without a caption, inside a ``{\small ...}`` group: longtable
# numbers every table it sets, so one without a caption would take a number (the first
# captioned table was Table 2).
END_UNNUMBERED = r"\end{longtable}\addtocounter{table}{-1}}"


@dataclass(frozen=True)
class Num:
    """A number with its display format (a ``format`` spec such as ``",.1f"``)."""

    value: int | float
    fmt: str = ","

    def text(self) -> str:
        return format(self.value, self.fmt)


@dataclass(frozen=True)
class Seq:
    """Several cells shown in one, e.g. a list of hyperparameters."""

    items: tuple
    sep: str = ", "


Cell = str | int | float | Num | Seq | sp.Basic


@dataclass
class Table:
    """A named table: title, caption, column headers and rows of cells."""

    name: str
    title: str
    columns: tuple
    rows: list = field(default_factory=list)
    caption: str = ""
    notes: tuple[str, ...] = ()
    options: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.columns = tuple(self.columns)
        self.rows = [tuple(r) for r in self.rows]
        for r in self.rows:
            if len(r) != len(self.columns):
                raise ValueError(f"table {self.name!r}: a row has {len(r)} cells for "
                                 f"{len(self.columns)} columns: {r!r}")
            for cell in r:
                _check_cell(cell)

    def add(self, *cells) -> None:
        if len(cells) != len(self.columns):
            raise ValueError(f"table {self.name!r}: {len(cells)} cells for "
                             f"{len(self.columns)} columns")
        for cell in cells:
            _check_cell(cell)
        self.rows.append(tuple(cells))


def _check_cell(cell) -> None:
    if isinstance(cell, Seq):
        for c in cell.items:
            _check_cell(c)
    elif isinstance(cell, bool) or not isinstance(cell, (str, int, float, Num, sp.Basic)):
        raise TypeError(f"a table cell must be text, a number or a SymPy expression, "
                        f"not {type(cell).__name__}: {cell!r}")
    elif isinstance(cell, float) and not math.isfinite(cell):
        raise ValueError(f"a table cell must be finite, got {cell!r}")


# -- cells --------------------------------------------------------------------------

def _number_text(v) -> str:
    if isinstance(v, Num):
        return v.text()
    return format(v, ",") if isinstance(v, int) else repr(v)


def cell_latex(cell, breakable: bool = False) -> str:
    """A cell's LaTeX; ``breakable``: in a wrapped column, a long formula may break."""
    if isinstance(cell, Seq):
        return latex_escape(cell.sep, collapse=False).join(cell_latex(c, breakable)
                                                           for c in cell.items)
    if isinstance(cell, str):
        return _prose(cell)
    if isinstance(cell, (int, float, Num)):
        return latex_escape(_number_text(cell))
    tex = expr_latex(cell, breakable=breakable)
    # a fraction or a sum in text style has its numerator in script size: too small
    style = r"\displaystyle " if "\\frac" in tex or "\\sum" in tex else ""
    return f"${style}{tex}$"


def _prose(text: str) -> str:
    """Text with its ASCII formulas typeset (``symflop.report.prose``)."""
    return prose_latex(text)


def _md_escape(text: str, collapse: bool = True) -> str:
    if collapse:
        text = " ".join(text.split())
    return text.replace("|", r"\|")


def cell_markdown(cell) -> str:
    if isinstance(cell, Seq):
        return _md_escape(cell.sep, collapse=False).join(cell_markdown(c) for c in cell.items)
    if isinstance(cell, str):
        return _md_escape(cell)
    if isinstance(cell, (int, float, Num)):
        return _md_escape(_number_text(cell))
    return _md_escape(f"${expr_latex(cell)}$")


def cell_text(cell) -> str:
    """Plain text for CSV: expressions as SymPy strings, numbers unformatted."""
    if isinstance(cell, Seq):
        return cell.sep.join(cell_text(c) for c in cell.items)
    if isinstance(cell, str):
        return " ".join(cell.split())
    if isinstance(cell, Num):
        return cell_text(cell.value)
    if isinstance(cell, (int, float)):
        return repr(cell)
    return expr_text(cell)


def cell_json(cell):
    if isinstance(cell, Seq):
        return [cell_json(c) for c in cell.items]
    if isinstance(cell, Num):
        return cell.value
    if isinstance(cell, (str, int, float)):
        return cell
    return expr_text(cell)


# -- tables -------------------------------------------------------------------------

def _is_numeric(cell) -> bool:
    return isinstance(cell, (int, float, Num)) and not isinstance(cell, bool)


def _align(t: Table) -> str:
    cols = []
    for k in range(len(t.columns)):
        column = [r[k] for r in t.rows]
        cols.append("r" if column and all(_is_numeric(c) for c in column) else "l")
    return "".join(cols)


def label(t: Table) -> str:
    return "tab:" + "".join(ch if ch.isalnum() or ch in "-." else "-" for ch in t.name)


def _shown(cell) -> str:
    """About the text a cell shows: a number as formatted (CSV keeps it unformatted)."""
    if isinstance(cell, Num):
        return cell.text()
    return cell_text(cell)


def _layout(t: Table) -> tuple[set[int], bool, float]:
    """(the columns that wrap, whether headers stack over lines, the share of the line
    each wrapped column may take) so that the table fits
    the line: headers wider than their column stack first, word by word; then text
    columns wrap (math breaks badly), the widest first, until the rest (and about 15
    characters for each wrapped one, and every column's padding) fit ``LINE_CHARACTERS``."""
    n = len(t.columns)
    body = [max([len(_shown(r[k])) for r in t.rows], default=0) for k in range(n)]
    head = [len(_shown(c)) for c in t.columns]
    word = [max((len(w) for w in _shown(c).split()), default=0) for c in t.columns]
    padding = PADDING_CHARACTERS * n
    stack = sum(map(max, body, head)) + padding > LINE_CHARACTERS
    widths = list(map(max, body, word if stack else head))
    text = [all(isinstance(r[k], str) for r in t.rows) for k in range(n)]
    wrapped: set[int] = set()
    while sum(w for k, w in enumerate(widths) if k not in wrapped) + 15 * len(wrapped) \
            + padding > LINE_CHARACTERS:
        k = max((k for k in range(n) if k not in wrapped and widths[k] > 15),
                key=lambda k: (text[k], widths[k]), default=None)
        if k is None:
            break
        wrapped.add(k)
    rest = sum(w for k, w in enumerate(widths) if k not in wrapped) + padding
    share = max(0.1, (1 - rest / LINE_CHARACTERS) / max(len(wrapped), 1))
    return wrapped, stack, share


def _header_row(t: Table, wrapped: set[int], stack: bool, align: str) -> str:
    """The header row; stacked, a header wider than its column's cells takes a line per
    group of words that fits them (a wrapped column's header wraps by itself)."""
    if not stack:
        return _latex_row(t.columns)
    cells = []
    for k, head in enumerate(t.columns):
        words = _shown(head).split()
        body = max([len(_shown(r[k])) for r in t.rows], default=0)
        width = max([body, *map(len, words)])
        lines: list[str] = []
        for w in words:
            if lines and len(lines[-1]) + 1 + len(w) <= width:
                lines[-1] += " " + w
            else:
                lines.append(w)
        if k in wrapped or len(lines) < 2 or not isinstance(head, str):
            cells.append(cell_latex(head))
        else:
            cells.append(rf"\begin{{tabular}}[b]{{@{{}}{align[k]}@{{}}}}"
                         + r" \\ ".join(_prose(x) for x in lines) + r"\end{tabular}")
    return " & ".join(cells) + r" \\"


def _header_comment(t: Table) -> str:
    return (f"% symflop table {t.name}: \\input it into a document whose preamble loads "
            f"{', '.join(LATEX_PACKAGES)}\n"
            f"% (or compile `symflop table {t.name} --format latex --standalone`)\n")


def to_latex(t: Table) -> str:
    if len(t.rows) > LONG_TABLE_ROWS:
        return _to_longtable(t)
    caption = _prose(t.caption or t.title)
    wrapped, stack, _share = _layout(t)
    align = "".join(r">{\raggedright\arraybackslash}X" if k in wrapped else a
                    for k, a in enumerate(_align(t)))
    begin, end = (rf"\begin{{tabularx}}{{\linewidth}}{{{align}}}", r"\end{tabularx}") \
        if wrapped else (rf"\begin{{tabular}}{{{align}}}", r"\end{tabular}")
    rows = spaced_rows([_latex_row(r, wrapped) for r in t.rows])
    lines = [r"\begin{table}[htbp]", r"\centering", *_stretch(rows),
             f"\\caption{{{caption}}}", f"\\label{{{label(t)}}}", r"\smallskip",
             begin, r"\toprule", _header_row(t, wrapped, stack, _align(t)), r"\midrule"]
    lines.extend(rows)
    lines += [r"\bottomrule", end]
    lines.extend(_latex_notes(t))
    lines.append(r"\end{table}")
    return _header_comment(t) + "\n".join(lines) + "\n"


def _to_longtable(t: Table) -> str:
    """A table taller than a page: a ``longtable`` that breaks across pages and repeats
    its header (a float would run off the page; it cannot be shrunk to fit)."""
    caption = _prose(t.caption or t.title)
    wrapped, stack, share = _layout(t)
    header = [r"\toprule", _header_row(t, wrapped, stack, _align(t)), r"\midrule"]
    align = "".join(rf">{{\raggedright\arraybackslash}}p{{{share:.2f}\linewidth}}"
                    if k in wrapped else a for k, a in enumerate(_align(t)))
    lines = [r"\begingroup\small", f"\\begin{{longtable}}{{{align}}}",
             f"\\caption{{{caption}}}\\label{{{label(t)}}} \\\\",
             *header, r"\endfirsthead",
             rf"\multicolumn{{{len(t.columns)}}}{{@{{}}l}}{{\emph{{Table \thetable, continued}}}}"
             r" \\", *header, r"\endhead",
             r"\bottomrule", r"\endlastfoot"]
    lines.extend(spaced_rows([_latex_row(r, wrapped) for r in t.rows]))
    lines.append(r"\end{longtable}")
    lines += [*_latex_notes(t), r"\endgroup"]
    return _header_comment(t) + "\n".join(lines) + "\n"


def _stretch(rows: list[str]) -> list[str]:
    """Rows holding display-style fractions need more height, or a fraction's
    denominator runs into the numerator of the row below."""
    return [r"\renewcommand{\arraystretch}{1.9}"] if any(r"\frac" in r for r in rows) \
        else []


_TALL = re.compile(r"\\frac|\\sum_|\\sqrt|\\substack")


def spaced_rows(rows: list[str]) -> list[str]:
    r"""Rows with space between two where either holds a tall formula (a fraction, a sum
    with limits): a wrapped cell is a paragraph, which \arraystretch does not heighten,
    so a denominator would touch the numerator or the limit of the row below."""
    return [row + (r" \addlinespace[5pt]" if n + 1 < len(rows) and (
        _TALL.search(row) or _TALL.search(rows[n + 1])) else "")
            for n, row in enumerate(rows)]


def _latex_row(cells, wrapped: frozenset | set = frozenset()) -> str:
    return " & ".join(cell_latex(c, k in wrapped) for k, c in enumerate(cells)) + r" \\"


def _latex_notes(t: Table) -> list[str]:
    if not t.notes:
        return []
    return [r"\par\smallskip\footnotesize", *(_prose(n) + r"\par" for n in t.notes)]


def to_markdown(t: Table) -> str:
    lines = [f"**{_md_escape(t.title)}**", ""]
    lines.append("| " + " | ".join(cell_markdown(c) for c in t.columns) + " |")
    lines.append("|" + "|".join("---:" if a == "r" else "---" for a in _align(t)) + "|")
    lines.extend("| " + " | ".join(cell_markdown(c) for c in r) + " |" for r in t.rows)
    if t.caption:
        lines += ["", _md_escape(t.caption)]
    if t.notes:
        lines += [""] + [f"* {_md_escape(n)}" for n in t.notes]
    return "\n".join(lines) + "\n"


def to_csv(t: Table) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([cell_text(c) for c in t.columns])
    for r in t.rows:
        w.writerow([cell_text(c) for c in r])
    return buf.getvalue()


def to_json(t: Table) -> str:
    doc = {"name": t.name, "title": t.title, "caption": t.caption,
           "columns": [cell_json(c) for c in t.columns],
           "rows": [[cell_json(c) for c in r] for r in t.rows],
           "notes": list(t.notes), "options": dict(t.options)}
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=True) + "\n"


RENDERERS = {"latex": to_latex, "markdown": to_markdown, "csv": to_csv, "json": to_json}


def render(t: Table, fmt: str) -> str:
    try:
        fn = RENDERERS[fmt]
    except KeyError:
        raise UsageError(f"unknown table format {fmt!r} (known: {', '.join(FORMATS)})") from None
    return fn(t)


def latex_document(tables: list[Table]) -> str:
    """A whole LaTeX document holding ``tables``, one per page."""
    body = "\n\\clearpage\n".join(to_latex(t) for t in tables)
    return ("\\documentclass{article}\n"
            f"\\usepackage{{{','.join(LATEX_PACKAGES)}}}\n"
            "\\usepackage[margin=1.5cm,landscape]{geometry}\n"
            "\\usepackage[T1]{fontenc}\n\\usepackage{lmodern}\n"
            "\\begin{document}\n" + body + "\\end{document}\n")
