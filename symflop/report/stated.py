"""The stated-value mini-language: how a claim's figure, as the text writes it, is read.

A claim quotes its figure as text (``Claim.claimed``); comparing it with what the
engine derives needs it read first, into a ``Stated`` value that knows its form,
its unit and its precision.  The stated value is one of:

* a count or size polynomial in the sizes, ``7*N*d + 2*d`` (a unit word such as
  ``bytes`` or ``elements`` may follow);
* counts per kind of operation, ``add: B*d - 1, mul: B*d`` (only the kinds named
  are compared; ``other`` stands for the sum of every kind not named);
* an order, ``O(B*C)`` or ``O(1)``;
* a number with an optional scale or unit: ``524,288``, ``51.2M`` (K, M, G are
  10**3, 10**6, 10**9), ``195.3 MB`` (MB and GB are 2**20 and 2**30 bytes, as the
  reference document uses them), ``4.72%``;
* a stated equation, when the derivation returns an ``Equation``;
* any other text, compared as text.

A prefix ``≈``, ``~`` or ``about`` marks an approximate value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from tokenize import TokenError
from typing import Any, cast

import sympy as sp

from symflop.core.model import size_symbol
from symflop.cost.conventions import KINDS
from symflop.errors import UsageError

APPROX = re.compile(r"^\s*(≈|~|∼|about\s+)\s*")
_NUMBER = re.compile(r"^([-+]?[\d,]*\.?\d+)\s*(K|M|G|%|MB|GB|bytes)?$")
SCALE = {None: 1, "K": 10 ** 3, "M": 10 ** 6, "G": 10 ** 9, "%": 1, "MB": 2 ** 20,
         "GB": 2 ** 30, "bytes": 1}
_UNIT_WORDS = ("bytes", "elements", "values", "FLOPs", "parameters")
BINARY = {"MB": "MiB", "GB": "GiB"}  # what the document's MB and GB are
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class Stated:
    """A stated value, read: its form, whether approximate, its value, unit and step."""

    form: str                 # polynomial | kinds | order | number | text | equation
    approx: bool
    value: Any = None         # sp.Expr, dict, float, str
    unit: str | None = None
    step: float = 0.0         # a unit of the last stated digit (numbers), in the unit


def parse_polynomial(text: str, known: dict | None = None) -> sp.Expr:
    """``7*N*d + 2*d`` with every name a size symbol (never SymPy's own N, E, S, ...)."""
    names = {n: (known or {}).get(n, size_symbol(n)) for n in _NAME.findall(text)}
    try:
        return sp.expand(sp.parse_expr(text, local_dict=names, evaluate=True))
    except (SyntaxError, TypeError, TokenError, sp.SympifyError) as e:
        raise UsageError(f"cannot read the stated value {text!r}: {e}") from None


def parse_claimed(text: str) -> Stated:
    """Read a claim's stated value (see the module docstring for its forms)."""
    m = APPROX.match(text)
    approx = bool(m)
    body = text[m.end():].strip() if m else text.strip()
    if body.startswith("O(") and body.endswith(")"):
        return Stated("order", approx, parse_polynomial(body[2:-1]))
    num = _NUMBER.match(body)
    if num:
        digits, unit = num.group(1).replace(",", ""), num.group(2)
        d = Decimal(digits)
        if "." in digits:
            step = float(Decimal(1).scaleb(cast(int, d.as_tuple().exponent)))
        else:
            stripped = digits.lstrip("+-")
            zeros = len(stripped) - len(stripped.rstrip("0")) if d != 0 else 0
            step = float(10 ** zeros)
        return Stated("number", approx, float(d), unit, step)
    if re.match(r"^[a-z]+\s*:", body):
        kinds = {}
        for part in body.split(","):
            kind, _, expr = part.partition(":")
            kind = kind.strip()
            if kind not in KINDS and kind not in ("fma", "other"):
                raise UsageError(f"unknown kind {kind!r} in {text!r}")
            kinds[kind] = parse_polynomial(expr)
        return Stated("kinds", approx, kinds)
    words = body.split()
    unit = words[-1] if len(words) > 1 and words[-1] in _UNIT_WORDS else None
    expr_text = " ".join(words[:-1]) if unit else body
    return Stated("polynomial", approx, parse_polynomial(expr_text), unit)
