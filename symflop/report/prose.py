"""Prose with ASCII formulas (``SGD step: theta - lr*g``) as LaTeX with the formulas
typeset (``SGD step: $\\theta - \\eta g$``).

Captions and cells are written once, as plain text that also serves the terminal and
Markdown.  For LaTeX, a run of the text made only of known symbols, numbers and
operators, holding an operator or a Greek name, is parsed by SymPy and printed by its
LaTeX printer (with the catalogue's names, ``symbol_latex``); anything that does not
parse stays text.  Known symbols are the Greek names, the functions below and the
names a catalogue registers (``add_symbols``): a word of English is never a symbol.
"""

from __future__ import annotations

import re

import sympy as sp
from sympy.parsing.sympy_parser import parse_expr

from symflop.report.latex import expr_latex, latex_escape, symbol_latex, word_subscript


class _Norm(sp.Function):
    """||x||, the Euclidean norm, as the prose writes it."""

    def _latex(self, printer, exp=None) -> str:
        tex = r"\lVert " + printer._print(self.args[0]) + r" \rVert"
        return tex if exp is None else f"{tex}^{{{exp}}}"


class _Sigmoid(sp.Function):
    """sigmoid(z) and sigma(z), the logistic function, as the document writes it: sigma."""

    def _latex(self, printer, exp=None) -> str:
        tex = r"\sigma\left(" + printer._print(self.args[0]) + r"\right)"
        return tex if exp is None else f"{tex}^{{{exp}}}"


class _GradL(sp.Function):
    """gradL(x), the gradient of the loss at x, as the prose writes it."""

    def _latex(self, printer, exp=None) -> str:
        return r"\nabla L\left(" + printer._print(self.args[0]) + r"\right)"


_FUNCTIONS = {"sqrt": sp.sqrt, "exp": sp.exp, "log": sp.log, "Abs": sp.Abs,
              "Norm": _Norm, "gradL": _GradL, "sigmoid": _Sigmoid, "sign": sp.sign,
              "max": sp.Max, "min": sp.Min,
              "oo": sp.oo, "eps": sp.Symbol("epsilon")}
# names the prose writes for what has a symbol of its own: gradL alone is the gradient of
# the loss (gradL(x), called, is _GradL)
_NAMED = {"gradL": r"\nabla L"}
_GREEK = set("""alpha beta gamma delta epsilon eta theta kappa lambda mu nu xi pi rho
sigma tau phi chi psi omega""".split())
_SYMBOLS: set[str] = set()
# a hyphenated word (per-step, ResNet-50, adagrad-eps-inside) is one word, never a formula
# a name may carry subscripts: theta_t, v_{t-1}, lam_wd
_NAME = r"[A-Za-z][A-Za-z0-9]*(?:_[A-Za-z0-9]+)*(?:_\{[^{}]*\})?"
_SCIENTIFIC = r"(\d+(?:\.\d+)?)e([-+]?\d+)"  # 1e-08: mantissa, exponent
_GROUPED = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?(?![\d,])"  # 25,600,000: one number, its commas no list
_NUMBER = _GROUPED + r"|\d+(?:\.\d+)?(?:e[-+]?\d+)?"  # 0.5, 1e-08
# relations between two sides of a formula: theta <- theta - lr*g, z -> -oo, x != 0
_RELATIONS = {"<-": r"\leftarrow", "->": r"\to", "!=": r"\neq", "<=": r"\leq",
              ">=": r"\geq", "=": "=", "~": r"\sim"}
_RELATION = "|".join(re.escape(r) for r in _RELATIONS)
# 3x3, 56x56, 30x: sizes and factors, the x a times sign
_TIMES = re.compile(r"\d+(?:\.\d+)?(?:x\d+(?:\.\d+)?)+(?![\w.])|\d+(?:\.\d+)?x(?![\w.])")
_HYPHENATED = re.compile(r"[A-Za-z0-9_]+(?:-[A-Za-z0-9_]+)+")
# 7.6G, 295K, 7.5B: a number with its magnitude (giga, kilo, billion), words
_MAGNITUDE = re.compile(r"\d+(?:\.\d+)?[KMGT](?![\w.])|\d+\.\d+B(?![\w.])")
_TOKEN = re.compile(_TIMES.pattern + "|" + _MAGNITUDE.pattern + "|" + _HYPHENATED.pattern + "|"
                    + _NUMBER + "|" + _NAME + "|"
                    + _RELATION + r"|\*\*|[-+*/^(),|]| +")
# a name, also right after a number (9P), but not the e of 1e-08
_NAME_IN_FORMULA = re.compile(r"(?:(?<![\d.])|(?<=\d)(?!e[-+]?\d))" + _NAME)


def add_symbols(names) -> None:
    """Names that are symbols wherever they stand in prose (a catalogue's tensors,
    sizes and hyperparameters)."""
    _SYMBOLS.update(names)


def _derivative(word: str) -> str | None:
    """``dL``, ``dw``, ``dgamma``: d of a symbol (dL/dw is a derivative), else None."""
    rest = word[1:]
    return rest if word.startswith("d") and rest and _is_symbol(rest) else None


def _is_symbol(word: str) -> bool:
    base = re.sub(r"\d+$", "", word)
    if word in _SYMBOLS or word in _FUNCTIONS or base in _GREEK or word in _GREEK:
        return True
    if word in _NAMED or _derivative(word):
        return True
    head = word.split("_")[0]
    return "_" in word and head != word and _is_symbol(head)


def _name_latex(word: str) -> str:
    """theta_t as \\theta_{t}, v_{t-1} as v_{t-1}, lam_wd as \\lambda_{wd}."""
    if word == "eps":
        return r"\epsilon"
    if word in _NAMED:
        return _NAMED[word]
    if word not in _SYMBOLS and (of := _derivative(word)):
        return r"\mathrm{d}" + _name_latex(of)
    head, _, sub = word.partition("_")
    if word in _SYMBOLS or not sub or word_subscript(sub):
        return symbol_latex(word)
    return f"{{{_name_latex(head)}}}_{{{sub.strip('{}')}}}"


# words of English that read as symbols: capitals where a sentence starts ("A
# convolution", "I") and "do" (d of o, an index)
_ENGLISH = frozenset({"A", "I", "do"})


def _greek(word: str) -> bool:
    """A lone name worth typesetting: Greek, a symbol of one letter (z, k; not A or I,
    which start sentences), or printed otherwise than it is spelled (L_bn as L with a
    subscript)."""
    if re.sub(r"\d+$", "", word) in _GREEK or word == "eps" or "_" in word and \
            _is_symbol(word) or word not in _SYMBOLS | _ENGLISH and _derivative(word):
        return True  # dgamma
    if len(word) == 1 and word in _SYMBOLS and word not in _ENGLISH:
        return True
    if word not in _SYMBOLS:
        return False
    tex = expr_latex(sp.Symbol(word))  # a name set as itself, upright or not, is a word
    return tex != word and r"\mathrm{" + word.replace("_", r"\_") + "}" not in tex


def _math(run: str) -> str | None:
    """LaTeX of ``run`` if it is a formula worth typesetting, else None."""
    text = run.strip().rstrip(",")
    if not text or text.count("(") != text.count(")") or text.count("|") % 2:
        return None
    lone = re.fullmatch("([-+]?)" + _SCIENTIFIC, text)
    if lone:  # a tolerance, 1e-12: 10^{-12}; -9.08e-05: -9.08 \cdot 10^{-5}
        return lone.group(1) + _power_of_ten(lone.group(2), lone.group(3))
    if re.fullmatch(r"[-+]\d+(?:\.\d+)?", text):  # a signed number: a minus, not a hyphen
        return text
    words = _NAME_IN_FORMULA.findall(text)
    if not words and re.fullmatch(r"[\d.\s()]*\d[\d.\s()]*(?:[-+*/=][\d.\s()]+)+", text):
        words = ["1"]  # (1 - 0.9) = 0.1: numbers and operators, a formula
    operators = re.search(_RELATION + r"|[-+*/^|]|\b(?:" + "|".join((*_FUNCTIONS, *_NAMED))
                          + r")\(", text)  # gradL(phi_t): a call is a formula
    if not words or not (operators or len(words) == 1 and _greek(words[0])):
        return None
    # each name becomes a placeholder SymPy can parse, printed as the name's LaTeX
    names: dict[str, str] = {}

    def placeholder(m: re.Match) -> str:
        w = m.group(0)
        called = text[m.end():m.end() + 1] == "("
        if w in _FUNCTIONS and w != "eps" and (w != "gradL" or called):
            return w
        if w == "sigma" and called:  # sigma(z): the logistic function, not sigma times z
            return "sigmoid"
        return names.setdefault(w, f"S{len(names)}x")

    src = _NAME_IN_FORMULA.sub(placeholder, re.sub(r"(\d)(?=[A-Za-z])", r"\1*", text)
                               if re.search(r"\d[A-Za-z]", text) and not
                               re.search(_SCIENTIFIC, text) else text)
    src = re.sub(r"(S\d+x)\(", r"\1*(", src)  # w(1 - lr): a product, not a call
    by_tex: dict[str, str] = {}  # 1e-08 as 10^{-8}, a name of its own to SymPy
    src = re.sub(r"(?<![\w.])" + _SCIENTIFIC,
                 lambda m: by_tex.setdefault(_power_of_ten(m.group(1), m.group(2)),
                                             f"E{len(by_tex)}x"), src)
    src = re.sub(_GROUPED, lambda m: by_tex.setdefault(m.group(0).replace(",", "{,}"),
                                                       f"E{len(by_tex)}x"), src)
    numbers = {p: tex for tex, p in by_tex.items()}
    src = re.sub(r"\|\|([^|]+)\|\|", r"Norm(\1)", src)
    src = re.sub(r"\|([^|]+)\|", r"Abs(\1)", src).replace("^", "**")
    local = {p: sp.Symbol(p) for p in (*names.values(), *numbers)}
    local.update({f: fn for f, fn in _FUNCTIONS.items() if f != "eps"})
    shown = {sp.Symbol(p): _name_latex(w) for w, p in names.items()}
    shown.update({sp.Symbol(p): tex for p, tex in numbers.items()})
    try:
        parts = re.split(f"({_RELATION})", src)
        out = [sp.latex(_drop_ones(parse_expr(side, local_dict=local, evaluate=False)),
                        symbol_names=shown, order="none", fold_short_frac=True) if n % 2 == 0 else
               _RELATIONS[side] for n, side in enumerate(parts)]
        return " ".join(out)
    except Exception:  # noqa: BLE001 - anything SymPy cannot read stays text
        return None


def _power_of_ten(mantissa: str, exponent: str) -> str:
    """1e-08 (mantissa, exponent) as 10^{-8}; 2.5e3 as 2.5 \\cdot 10^{3}."""
    power = f"10^{{{int(exponent)}}}"
    return power if float(mantissa) == 1 else rf"{mantissa} \cdot {power}"


def _drop_ones(e: sp.Basic) -> sp.Basic:
    """``1/N`` parsed unevaluated is ``Mul(1, 1/N)``, printed ``1 \\frac{1}{N}``: the 1 goes."""
    if not e.args:
        return e
    args = [_drop_ones(a) for a in e.args]
    if isinstance(e, sp.Mul) and len(args) > 1 and sp.S.One in args:
        args = [a for a in args if a != sp.S.One] or [sp.S.One]
        return args[0] if len(args) == 1 else sp.Mul(*args, evaluate=False)
    return e.func(*args, evaluate=False) if isinstance(e, (sp.Add, sp.Mul, sp.Pow)) \
        else e.func(*args)


def _wrapped(text: str) -> bool:
    """``text`` is one bracketed group, "(...)", whose brackets the formula would drop."""
    if not (text.startswith("(") and text.endswith(")")):
        return False
    depth = 0
    for n, ch in enumerate(text):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if depth == 0 and n < len(text) - 1:
            return False
    return True


def _render(chunk: str) -> str:
    core = chunk.strip()
    if _wrapped(core):  # "(1 - m)" keeps its brackets, as text around the formula
        lead, trail = chunk[:chunk.index("(")], chunk[chunk.rindex(")") + 1:]
        return f"{lead}({_render(core[1:-1])}){trail}"
    math = _math(chunk)
    if math is None:
        return latex_escape(chunk, collapse=False)
    lead = chunk[:len(chunk) - len(chunk.lstrip())]
    return f"{lead}${math}${chunk[len(chunk.rstrip()):]}"


def _peel(run: list[str]) -> list[str]:
    """Tokens at the end of ``run`` that cannot end a formula (an operator, a comma, a
    closing bracket opened before the run): returned, and taken off ``run``."""
    tail: list[str] = []
    while run:
        text = "".join(run)
        last = run[-1]
        if last.strip() == "" or last in ("+", "-", "*", "/", "^", ",", "(", "**") \
                or last in _RELATIONS \
                or last == ")" and text.count(")") > text.count("("):
            tail.insert(0, run.pop())
        elif text.count("(") > text.count(")"):  # "sqrt(v) (eps left": the bracket opened
            tail.insert(0, run.pop())           # last is the text's, not the formula's
        else:
            break
    return tail


def _peel_head(run: list[str], before: str) -> list[str]:
    """Tokens at the start of ``run`` that cannot start a formula: a binary operator whose
    left operand is the text before (``(1 - m) r + m s``: the ``+`` is between ``r`` and
    ``m s``; parsed with them it would read as a unary plus and be lost)."""
    head: list[str] = []
    left = before.rstrip()[-1:]

    def sign() -> bool:  # "is -lr times": a minus after a space, before its operand
        return bool(head) and head[-1].strip() == "" and len(run) > 1 and \
            run[1].strip() != ""
    while run and (run[0].strip() == "" or run[0] in ("*", "/", "^", "**")
                   or run[0] in _RELATIONS
                   or run[0] == "+" and not sign()
                   or run[0] == "-" and left and (left.isalnum() or left in ")$}")
                   and not sign()):
        head.append(run.pop(0))
    return head


def _unmatched_open(run: list[str]) -> int | None:
    """Where in ``run`` the last bracket opens that no later bracket closes."""
    depth = 0
    for n in range(len(run) - 1, -1, -1):
        depth += {")": 1, "(": -1}.get(run[n], 0)
        if depth < 0:
            return n
    return None


def sentence(text: str) -> str:
    """``text`` with a capital first letter, where its first word is a word of English
    (not a symbol such as sigma, nor code such as torch.optim.SGD)."""
    first = re.match(r"[a-z]+(?=[\s,;:]|$)", text)
    return text if first is None or _is_symbol(first.group(0)) else \
        text[:1].upper() + text[1:]


def _in_call(run: list[str]) -> bool:
    """``run`` ends inside the brackets of a call (``max(0``), where a comma separates
    arguments, not the text's items."""
    opened = _unmatched_open(run)
    return opened is not None and opened > 0 and re.fullmatch(_NAME, run[opened - 1]) is not None


# Names of code in prose, set as code: torch's paths (torch.optim.SGD, F.mse_loss) and
# keyword arguments (weight_decay=0.05, nesterov=True); a `backquoted` span is code too.
_CALLED = r"\((?:[^()]|\([^()]*\))*\)"  # a call's brackets, one level of brackets inside
_TORCH_CLASSES = r"(?:SGD|Adam|AdamW|Adagrad|RMSprop|Linear|Conv[123]d|BatchNorm[123]d|" \
                 r"LayerNorm|GroupNorm|InstanceNorm[123]d|Dropout)"
_CODE = re.compile(r"`([^`]+)`|\b((?:torch|F|nn)(?:\.\w+)+(?:" + _CALLED + ")?"
                   r"|[A-Za-z_]\w+(?:\.[A-Za-z_]\w+)+"  # prims.bessel_j0 (not e.g., i.e.)
                   r"|" + _TORCH_CLASSES + _CALLED + r"(?:\.\w+\(\))?"
                   r"|[A-Za-z_]\w*=(?:\([^()]*\)|[\w.\-]+))")


def prose_latex(text: str) -> str:
    """``text`` escaped for LaTeX, its ASCII formulas typeset; code (a `backquoted` span,
    a torch path, a keyword argument, a name with an underscore that is no symbol, such
    as kl_div) set in typewriter type as it is."""
    text = " ".join(text.split())
    out, pos = [], 0
    for m in _CODE.finditer(text):
        out += [_prose(text[pos:m.start()]),
                r"\texttt{" + latex_escape(m.group(1) or m.group(2), collapse=False) + "}"]
        pos = m.end()
    return "".join(out) + _prose(text[pos:])


def _prose(text: str) -> str:
    out: list[str] = []
    run: list[str] = []

    def flush():
        opened = _unmatched_open(run)
        if opened:  # "sqrt(v) (eps": the bracket is the text's; a formula on each side
            rest = run[opened + 1:]
            del run[opened:]
            flush()
            out.append("(")
            run.extend(rest)
        out.append(latex_escape("".join(_peel_head(run, "".join(out))), collapse=False))
        while run and run[0] == "(" and "".join(run).count("(") > "".join(run).count(")"):
            out.append(latex_escape(run.pop(0), collapse=False))  # "(see": a bracket opened
        tail = _peel(run)
        if run:
            out.append(_render("".join(run)))
            run.clear()
        out.append(latex_escape("".join(tail), collapse=False))

    pos = 0
    for m in _TOKEN.finditer(text):
        if m.start() > pos:  # characters no formula holds
            flush()
            out.append(latex_escape(text[pos:m.start()], collapse=False))
        tok = m.group(0)
        word = tok[0].isalpha() or tok[0] == "_"
        possessive = word and text[m.start() - 1:m.start()] == "'"  # the s of torch's
        # GB/s, TFLOP/s: a unit, not the symbol s
        unit = re.search(r"([A-Za-z]\w*)/$", text[:m.start()])
        possessive = possessive or word and unit is not None and not _is_symbol(unit.group(1))
        # F.mse_loss, torch.nn.L1Loss: a name of code, not a symbol
        dotted = word and (text[m.start() - 1:m.start()] == "." or
                           re.match(r"\.\w", text[m.end():m.end() + 2]) is not None)
        times = _TIMES.fullmatch(tok)
        if _MAGNITUDE.fullmatch(tok) or _HYPHENATED.fullmatch(tok) and \
                not re.fullmatch(_SCIENTIFIC, tok):
            # 5-10 epochs, 2026-11-30, per-step: words (1e-08 is a number)
            flush()
            out.append(latex_escape(tok, collapse=False))
        elif times:
            flush()
            out.append("$" + r" \times ".join(tok.split("x")).strip() + "$")
        elif word and "_" in tok.strip("_") and not _is_symbol(tok):  # kl_div: code
            flush()
            out.append(r"\texttt{" + latex_escape(tok, collapse=False) + "}")
        elif word and (possessive or dotted or not _is_symbol(tok)) or \
                tok == "," and not _in_call(run):  # max(0, x): one formula
            flush()
            out.append(latex_escape(tok, collapse=False))
        else:
            run.append(tok)
        pos = m.end()
    flush()
    out.append(latex_escape(text[pos:], collapse=False))
    return "".join(out)
