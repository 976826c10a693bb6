"""Which additions of an operation tree one fused backend call computes with the
product or quotient they add (``axpy``, ``addcmul``, ``addcdiv``).

The statement printer (``symflop.lower.statements``) asks once per tree; the
backends (``symflop.lower.backend.Backend``) run the calls.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from symflop.core.ir import Node
from symflop.lower.call_text import BOOL


@dataclass(frozen=True)
class FusedCall:
    """One backend call computing an add or subtract together with the product or
    quotient it adds: ``a + s*x`` (``axpy``), ``a + s*x*y`` (``addcmul``), ``a + s*x/y``
    (``addcdiv``), as torch's ``add(alpha=)``, ``addcmul`` and ``addcdiv`` do.  Fewer,
    larger operations: each is one pass over a block and one parallel region."""

    call: str
    operands: tuple[Node, ...]
    scale: Node | None   # a number (None: 1)
    sub: bool            # the product is subtracted
    absorbed: tuple[Node, ...]


def fusions(order: list[Node], uses: dict, varies: dict, after: dict, on_host: dict,
            total: Callable[[Node], bool]) -> dict[Node, FusedCall]:
    """The additions whose product or quotient operand one fused call computes with
    them.  An absorbed operation must be read by that addition only and run where it
    does (the same block, the same side of a reduction), so that nothing else needs its
    value; a scale of 1 or -1 is left alone (it is no multiplication in the count)."""
    out: dict[Node, FusedCall] = {}

    def alone(c: Node, p: Node) -> bool:
        return (uses.get(c) == 1 and c.idx == p.idx and varies[c] == varies[p]
                and after[c] == after[p] and not on_host[c] and not total(c)
                and c.op not in BOOL)

    for p in order:
        if p.op not in ("add", "sub") or not p.idx or on_host[p] or total(p):
            continue
        for j in ((1,) if p.op == "sub" else (1, 0)):
            a, c = p.args[1 - j], p.args[j]
            if not a.idx or not alone(c, p):
                continue
            found = _fused_with(a, c, p.op == "sub", alone)
            if found is not None:
                out[p] = found
                break
    return out


def _fused_with(a: Node, c: Node, sign: bool,
                alone: Callable[[Node, Node], bool]) -> FusedCall | None:
    """The call computing ``a + c`` (``a - c`` with ``sign``) for a product or quotient
    ``c``, if one does."""
    sx = _scaled(c)
    if sx is not None:
        s, x = sx
        if x.op == "pow" and x.leaf == 2 and alone(x, c):
            return FusedCall("addcmul", (a, x.args[0], x.args[0]), s, sign, (c, x))
        if x.op == "mul" and len(x.args) == 2 and all(y.idx for y in x.args) \
                and alone(x, c):
            return FusedCall("addcmul", (a, *x.args), s, sign, (c, x))
        return FusedCall("axpy", (a, x), s, sign, (c,))
    if c.op == "div" and c.args[1].idx:
        num, den = c.args
        sx = _scaled(num) if alone(num, c) else None
        if sx is not None:
            return FusedCall("addcdiv", (a, sx[1], den), sx[0], sign, (c, num))
        if num.idx:
            return FusedCall("addcdiv", (a, num, den), None, sign, (c,))
    return None


def _scaled(c: Node) -> tuple[Node, Node] | None:
    """``c`` as (scalar, tensor factor): ``s*x``; None if it is not such a product.
    (A scalar that is a 0-dimensional tensor at run time, not a number, makes the
    backend run the operations apart.)"""
    if c.op != "mul" or len(c.args) != 2:
        return None
    for s, x in (c.args, c.args[::-1]):
        if not s.idx and x.idx and not (
                s.op == "const" and s.leaf in (1, -1)):
            return s, x
    return None
