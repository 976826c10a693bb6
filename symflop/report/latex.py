"""Names and expressions as LaTeX: the one printer every table, claim, identity and
prose sentence uses, so that a symbol looks the same wherever it appears.

* a catalogue's names (``lr`` as \\eta) are registered with ``set_symbol_latex``;
* a name of several letters is set upright as one name, never an italic product;
* the engine's gradients (``grad_gamma``) are d of what they are the gradient of;
* ``latex_escape`` escapes text.
"""

from __future__ import annotations

import re

import sympy as sp
from sympy.printing.latex import greek_letters_set


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


# a name's word subscript and the tensor's indices: one subscript, mu_{sum,j}, not
# mu_{sum} with j set below and beside it
_TAG_THEN_INDEX = re.compile(r"_\{\\mathrm\{([^{}]*)\}\}(\}*)_\{([^{}]*)\}")


def _latex(e: sp.Basic, order: str | None, breakable: bool = False) -> str:
    return _TAG_THEN_INDEX.sub(r"_{\\mathrm{\1},\3}\2", _latex_of(e, order, breakable))


def _latex_of(e: sp.Basic, order: str | None, breakable: bool = False) -> str:
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
    if r"\begin{cases}" in tex:  # a bracket around cases must grow with them
        return tex
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
