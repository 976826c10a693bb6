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
from sympy.printing.latex import greek_letters_set

from symflop.errors import UsageError

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

def _plain(e: sp.Basic) -> sp.Basic:
    """Index variables as plain symbols (an ``Idx`` prints its range as a subscript)."""
    idx = sorted(e.atoms(sp.Idx), key=sp.default_sort_key)
    return e.xreplace({k: sp.Symbol(k.name) for k in idx}) if idx else e


# How a catalogue wants its ASCII names typeset (``lr`` as \eta): ``set_symbol_latex``.
_SYMBOL_LATEX: dict[str, str] = {}


def set_symbol_latex(mapping: dict[str, str]) -> None:
    """Typeset the symbols named in ``mapping`` with its LaTeX in every table and report
    (a catalogue's abbreviations; SymPy already prints Greek names as Greek)."""
    _SYMBOL_LATEX.update(mapping)


def symbol_latex(name: str) -> str:
    """A symbol's LaTeX: the catalogue's, else a multi-letter name upright, else SymPy's."""
    return _name_latex(name) or sp.latex(sp.Symbol(name))


def _name_latex(name: str) -> str:
    r"""A symbol's LaTeX: the catalogue's choice; else SymPy's where the name is one letter
    or a Greek name, with subscripts (``x_i``, ``sigma_2``); else the whole name upright,
    as a name, never read as an italic product with a subscript
    (``grad_mu_part2`` as \mathrm{grad\_mu\_part2}, not grad_{\mu part2})."""
    if name in _SYMBOL_LATEX:
        return _SYMBOL_LATEX[name]
    if name.startswith("grad_") and len(name) > len("grad_"):
        return _gradient_latex(name[len("grad_"):])
    first, _, sub = name.partition("_")
    head = first.rstrip("0123456789'")  # x2, k' are one letter
    letter = len(head) <= 1 or head.lower() in _GREEK
    if sub and (letter or first in _SYMBOL_LATEX) and word_subscript(sub):
        # a letter with a word under it (mu_sum, lam_wd, eta_max): the word upright
        base = _SYMBOL_LATEX.get(first) or sp.latex(sp.Symbol(first))
        return f"{{{base}}}_{{\\mathrm{{{sub.replace('_', ',')}}}}}"
    if letter:
        return ""
    # an inner atom: TeX sets a thin space between it and a letter beside it, so that
    # N momentum sigma^2 reads as three factors, not one word
    return r"\mathinner{\mathrm{" + name.replace("_", r"\_") + "}}"


def word_subscript(sub: str) -> bool:
    """A subscript that is a word (sum, wd, max, part2_cse), not an index or a number."""
    return bool(re.fullmatch(r"[A-Za-z][A-Za-z0-9]+(?:_[A-Za-z0-9]+)*", sub)) and \
        sum(ch.isalpha() for ch in sub) > 1


def _gradient_latex(of: str) -> str:
    r"""The engine's ``grad_<x>`` (the loss's gradient with respect to x) as d x, and the
    parts of one it keeps (``grad_mu_part2_cse``) as tags: \mathrm{d}\mu_{part2, cse}.
    The longest leading name that prints as itself (a registered name, one letter, a
    Greek name) is the base."""
    parts = of.split("_")
    for n in range(len(parts), 0, -1):
        base = "_".join(parts[:n])
        tex = _SYMBOL_LATEX.get(base) or (sp.latex(sp.Symbol(base)) if "_" not in base
                                          and not _name_latex(base) else "")
        if tex:
            tags = ",".join(parts[n:])
            return (rf"{{\mathrm{{d}}{tex}" + (rf"_{{\mathrm{{{tags}}}}}" if tags else "")
                    + "}")
    return r"{\mathrm{d}\mathrm{" + of.replace("_", r"\_") + "}}"


_GREEK = frozenset(greek_letters_set) | {"lamda"}


class _Step(sp.Function):
    """The unit step, printed as a name (SymPy prints Heaviside as theta, here the
    parameters' letter)."""

    def _latex(self, printer, exp=None) -> str:
        tex = r"\operatorname{step}\left(" + printer._print(self.args[0]) + r"\right)"
        return tex if exp is None else f"{tex}^{{{exp}}}"


def _latex(e: sp.Basic, order: str | None, breakable: bool = False) -> str:
    if e.has(sp.Heaviside):
        e = e.replace(sp.Heaviside, lambda x, *_: _Step(x))
    names = {s: tex for s in e.atoms(sp.Symbol) if (tex := _name_latex(s.name))}
    if not breakable:
        return sp.latex(e, symbol_names=names, order=order)
    # A long fraction as 1/denominator times its factors, and a line break allowed
    # between bracketed factors: TeX breaks inline math only after operators, and never
    # inside \left( ... \right), a group: fixed-size brackets (\bigl( ... \bigr)) are not
    # one, so it may break after an operator between them too.
    tex = sp.latex(e, symbol_names=names, order=order, long_frac_ratio=1)
    tex = re.sub(r"(\\right\)(?:\^\{[^{}]*\})?) ", r"\1 \\allowbreak ", tex)
    return tex.replace(r"\left(", r"\allowbreak\bigl(").replace(r"\right)", r"\bigr)")


def expr_latex(e: sp.Basic, order: str | None = None, breakable: bool = False) -> str:
    """SymPy's LaTeX of ``e`` with the registered names (``order="none"``: terms in the
    order they were written, for a formula parsed from text; ``breakable``: a long
    expression that may break across lines)."""
    e = _plain(e)
    if isinstance(e, sp.Equality):
        return f"{_latex(e.lhs, order)} = {_latex(e.rhs, order, breakable)}"
    return _latex(e, order, breakable)


def expr_text(e: sp.Basic) -> str:
    if isinstance(e, sp.Equality):
        return f"{sp.sstr(e.lhs)} = {sp.sstr(e.rhs)}"
    return sp.sstr(e)


def _number_text(v) -> str:
    if isinstance(v, Num):
        return v.text()
    return format(v, ",") if isinstance(v, int) else repr(v)


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
    "<": r"\textless{}", ">": r"\textgreater{}", "|": r"\textbar{}",
    # Characters the standard fonts lack, written as LaTeX math or text commands.
    "\u2248": r"$\approx$", "\u2013": "--", "\u2014": "---", "\u2192": r"$\to$",
    "\u00d7": r"$\times$", "\u221d": r"$\propto$", "\u2212": "-", "\u2264": r"$\leq$",
    "\u2265": r"$\geq$", "\u2026": r"\ldots{}", "\u00b2": r"\textsuperscript{2}",
    "\u03bc": r"$\mu$", "\u03c3": r"$\sigma$", "\u03b7": r"$\eta$", "\u03bb": r"$\lambda$",
    "\u03b5": r"$\varepsilon$", "\u03b1": r"$\alpha$", "\u03b2": r"$\beta$",
    "\u03b3": r"$\gamma$", "\u03b8": r"$\theta$", "\u2018": "`", "\u2019": "'",
    "\u201c": "``", "\u201d": "''",
}


def latex_escape(text: str, collapse: bool = True) -> str:
    """Text for LaTeX: every special character escaped, whitespace collapsed."""
    if collapse:
        text = " ".join(text.split())
    # "--" of a command-line option stays two hyphens (TeX would join them into a dash)
    return "".join("-{}" if ch == "-" and text[n + 1:n + 2] == "-"
                   else _LATEX_SPECIAL.get(ch, ch) for n, ch in enumerate(text))


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
    from symflop.report.prose import prose_latex
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
    rows = [_latex_row(r, wrapped) for r in t.rows]
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
             *header, r"\endfirsthead", *header, r"\endhead",
             r"\bottomrule", r"\endlastfoot"]
    lines.extend(_latex_row(r, wrapped) for r in t.rows)
    lines.append(r"\end{longtable}")
    lines += [*_latex_notes(t), r"\endgroup"]
    return _header_comment(t) + "\n".join(lines) + "\n"


def _stretch(rows: list[str]) -> list[str]:
    """Rows holding display-style fractions need more height, or a fraction's
    denominator runs into the numerator of the row below."""
    return [r"\renewcommand{\arraystretch}{1.9}"] if any(r"\frac" in r for r in rows) \
        else []


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
