"""One operation of the tree (``symflop.core.ir.Node``) printed as a backend call.

The statement printer (``symflop.lower.statements``) decides where a result goes;
this module only spells the call: as a value (``xp.exp(_x_1)``, ``a + b``), or
written into a buffer (``xp.exp(_x_1, out=...)``), and a SymPy constant as a
Python literal.
"""

from __future__ import annotations

import sympy as sp

from symflop.core.ir import Node
from symflop.errors import ComponentError

_BINARY = {"add": "+", "sub": "-", "mul": "*", "div": "/"}
_CMP = {"<": "<", "<=": "<=", ">": ">", ">=": ">=", "==": "==", "!=": "!="}
BOOL = frozenset(("cmp", "and", "or", "not"))


def out_kind(n: Node) -> str | None:
    """The backend call that can write ``n``'s value into a given buffer, if any."""
    if n.op == "div" and n.args[0].op == "const" and n.args[0].leaf == 1:
        return "recip"
    if n.op == "div" and not n.args[0].reads_tensor and n.args[1].reads_tensor:
        return "divide"
    if n.op in _BINARY or n.op in ("neg", "pow"):
        return n.op
    if n.op == "fn" and n.leaf not in ("powf", "mod", "uniform"):
        return "fn"
    return None


def out_call(n: Node, kind: str, a: list[str], out: str, write: bool) -> str:
    """The call computing ``n`` (operands named ``a``) into ``out``: a destination it
    must write (``out=``), or a free buffer it may reuse (``reuse=``, returned)."""
    into = f"{'out' if write else 'reuse'}={out}"
    if kind == "pow":
        return f"xp.pow({a[0]}, {n.leaf}, {into})"
    if kind == "fn":
        return f"xp.{n.leaf}({a[0]}, {into})"
    if kind in ("neg", "recip"):
        return f"xp.{'neg' if kind == 'neg' else 'reciprocal'}({a[-1]}, {into})"
    return f"xp.{kind}({a[0]}, {a[1]}, {into})"


def missing_extent(n: Node, labelled: set) -> sp.Expr:
    """The size of the axes a reduction ``n`` sums over that its operand does not span
    (a labelled axis holds one value): the operand's sum is that many times too small."""
    inner = n.args[0]
    return sp.Mul(*[k.upper + 1 for k in n.leaf if k not in inner.idx
                    and k not in labelled])


def call_text(n: Node, a: list[str], space: tuple, like: str | None,
              labelled: set) -> str:
    """The expression computing ``n`` from its operands' names ``a``, in the index
    ``space`` of its step (``like``: the array new arrays take dtype and device from)."""
    if n.op == "div" and n.args[0].op == "const" and n.args[0].leaf == 1:
        return f"xp.reciprocal({a[1]})"  # 1/x: torch runs a Python 1 / x as two ops
    if n.op == "div" and not n.args[0].reads_tensor and n.args[1].reads_tensor:
        return f"xp.divide({a[0]}, {a[1]})"  # c / x: one division, as counted
    if n.op in _BINARY:
        return f"{a[0]} {_BINARY[n.op]} {a[1]}"
    if n.op == "neg":
        return f"-{a[0]}"
    if n.op == "pow":
        return f"{a[0]}**{n.leaf}"
    if n.op == "fn":
        return _function_text(n, a, space, like)
    if n.op in ("max", "min"):
        return f"xp.{n.op}imum({a[0]}, {a[1]})"
    if n.op == "where":
        return f"xp.where({a[0]}, {a[1]}, {a[2]}, like={like})"
    if n.op in ("sum", "amax"):
        axes = tuple(space.index(k) for k in n.leaf)
        missing = missing_extent(n, labelled)
        text = f"xp.{n.op}({a[0]}, {axes})" if n.args[0].idx else a[0]
        if missing == 1 or n.op == "amax":
            return text
        return f"{text} * {sp.pycode(missing)}"
    if n.op == "indicator":
        return f"xp.where({a[0]}, 1.0, 0.0, like={like})"
    if n.op == "cmp":
        return f"{a[0]} {_CMP[n.leaf]} {a[1]}"
    if n.op in ("and", "or"):
        return f"xp.logical_{n.op}({a[0]}, {a[1]})"
    if n.op == "not":
        return f"xp.logical_not({a[0]})"
    raise ComponentError(f"no code for operation {n.op!r}")


def _function_text(n: Node, a: list[str], space: tuple, like: str | None) -> str:
    if n.leaf == "powf":
        return f"{a[0]}**{a[1]}"
    if n.leaf == "mod":
        return f"{a[0]} % {a[1]}"
    if n.leaf == "uniform":
        shape = "".join(f"{sp.pycode(k.upper + 1) if k in n.idx else 1}, " for k in space)
        return f"xp.uniform(({shape}), like={like})"
    return f"xp.{n.leaf}({a[0]})"


def const_text(v) -> str:
    """A SymPy constant (or a size symbol) as Python source."""
    if isinstance(v, sp.Symbol):
        return v.name
    if v.is_Integer:
        return str(int(v))
    value = complex(v) if v in (sp.zoo,) else float(v)
    if value != value or isinstance(value, complex):  # nan (a complex infinity too)
        return "float('nan')"
    if value in (float("inf"), float("-inf")):  # oo, or a constant past float64's range
        return f"float('{value}')"
    return repr(value)
