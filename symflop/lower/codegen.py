"""Lowering of a normalized program to vectorized array code.

Each index of a step becomes an axis of the step's index space (output indices
first, then reduced ones); a tensor reference is permuted and given size-1
axes so that it broadcasts into that space; a sum becomes one reduction call.
Elementwise bodies are printed from the same operation tree the counter uses
(``symflop.core.ir``), with repeated subexpressions computed once per step.  The
source is plain Python over an array namespace ``xp`` (``symflop.lower.backends``),
so one function serves NumPy and torch on any device.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from symflop.core.ir import Node, step_root
from symflop.core.model import Role
from symflop.core.program import Program, Step, ref_indices, ref_name, tensor_refs
from symflop.cost.counting import lowerer_for
from symflop.errors import ComponentError

_BINARY = {"add": "+", "sub": "-", "mul": "*", "div": "/"}
_CMP = {"<": "<", "<=": "<=", ">": ">", ">=": ">=", "==": "==", "!=": "!="}


@dataclass(frozen=True)
class Signature:
    """What a generated function takes and returns."""

    dims: tuple[str, ...]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


def signature(program: Program) -> Signature:
    assigned: set[str] = set()
    inputs: list[str] = []
    dims: set[str] = set()
    for st in program.steps:
        for r in tensor_refs(st.body, program.tensors):
            name = ref_name(r)
            if name not in assigned and name not in inputs:
                inputs.append(name)
        syms = set(st.body.free_symbols)
        for k in st.space:
            syms |= k.upper.free_symbols
        for s in sorted(syms, key=lambda s: s.name):  # never set order: PYTHONHASHSEED
            if isinstance(s, sp.Idx):
                continue
            t = program.tensors.get(s.name)
            if t is not None and t.role is Role.HYPER and s.name not in inputs:
                inputs.append(s.name)
            elif t is None and s.is_integer and s.is_positive:
                dims.add(s.name)
        assigned.add(st.lhs)
    outputs = tuple(dict.fromkeys(st.lhs for st in program.steps))
    return Signature(tuple(sorted(dims)), tuple(inputs), outputs)


def generate(program: Program, func_name: str) -> tuple[str, Signature]:
    """Python source of ``def func_name(xp, <dims>, <inputs>)`` returning a dict."""
    sig = signature(program)
    like = next((n for n in sig.inputs if not program.tensors[n].is_scalar), None)
    lines = [f"def {func_name}(xp, {', '.join(sig.dims + sig.inputs)}):"]
    lower = lowerer_for(program.tensors)
    for st in program.steps:
        lines.append(f"    # {st.lhs}{_idx_text(st.idx)} = {st.rhs()}")
        lines.extend("    " + ln for ln in _step_lines(st, program, lower, like))
    outs = ", ".join(f"{n!r}: {n}" for n in sig.outputs)
    lines.append(f"    return {{{outs}}}")
    return "\n".join(lines) + "\n", sig


def _idx_text(idx) -> str:
    return "[" + ", ".join(map(str, idx)) + "]" if idx else ""


def _shape_text(idx) -> str:
    return "(" + "".join(f"{sp.pycode(k.upper + 1)}, " for k in idx) + ")"


def _step_lines(st: Step, program: Program, lower, like: str | None) -> list[str]:
    space = st.space
    lines: list[str] = []
    aligned: dict = {}
    for r in tensor_refs(st.body, program.tensors):
        name, ridx = ref_name(r), ref_indices(r)
        if not ridx:
            continue
        local = f"_{name}_{len(aligned)}"
        aligned[r] = local
        lines.append(f"{local} = {_align(name, ridx, space)}")
    root = step_root(st.body, st.reduce, lower, st.op) if st.reduce else lower(st.body)
    printer = _Printer(aligned, space, like)
    lines.extend(printer.locals_for(root))
    expr = printer(root)
    if st.reduce and aligned:  # reductions kept their axes (size 1): drop them now
        expr = f"xp.squeeze({expr}, {tuple(space.index(k) for k in st.reduce)})"
    out_present = root.idx >= set(st.idx)
    if st.idx and not out_present:
        expr = f"xp.broadcast_to({expr}, {_shape_text(st.idx)}, like={like})"
    lines.append(f"{st.lhs} = {expr}")
    return lines


def _align(name: str, ridx: tuple, space: tuple) -> str:
    """``name`` (axes ordered as ``ridx``) permuted and expanded into ``space``."""
    pos = [space.index(k) for k in ridx]
    order = sorted(range(len(ridx)), key=lambda n: pos[n])
    out = name
    if order != list(range(len(ridx))):
        out = f"xp.permute({out}, {tuple(order)})"
    if len(ridx) == len(space):
        return out
    present = set(pos)
    sl = ", ".join(":" if p in present else "None" for p in range(len(space)))
    return f"{out}[{sl}]"


class _Printer:
    """Prints an operation tree; nodes used twice become locals ``_t0, _t1, ...``."""

    def __init__(self, aligned: dict, space: tuple = (), like: str | None = None):
        self.aligned = aligned
        self.space = space
        self.like = like
        self.names: dict[Node, str] = {}

    def locals_for(self, root: Node) -> list[str]:
        uses: dict[Node, int] = {}
        order: list[Node] = []

        def visit(n: Node) -> None:
            uses[n] = uses.get(n, 0) + 1
            if uses[n] > 1:
                return
            for a in n.args:
                visit(a)
            order.append(n)

        visit(root)
        lines = []
        for n in order:
            if uses[n] > 1 and n.args:
                text = self(n)
                name = f"_t{len(self.names)}"
                lines.append(f"{name} = {text}")
                self.names[n] = name
        return lines

    def __call__(self, n: Node) -> str:
        if n in self.names:
            return self.names[n]
        a = [self(x) for x in n.args]
        if n.op == "ref":
            return self.aligned.get(n.leaf, str(n.leaf))
        if n.op == "const":
            return _const(n.leaf)
        if n.op == "div" and n.args[0].op == "const" and n.args[0].leaf == 1:
            return f"xp.reciprocal({a[1]})"  # 1/x: torch runs a Python 1 / x as two ops
        if n.op in _BINARY:
            return f"({a[0]} {_BINARY[n.op]} {a[1]})"
        if n.op == "neg":
            return f"(-{a[0]})"
        if n.op == "pow":
            return f"({a[0]}**{n.leaf})"
        if n.op == "fn":
            if n.leaf == "powf":
                return f"({a[0]}**{a[1]})"
            if n.leaf == "mod":
                return f"({a[0]} % {a[1]})"
            if n.leaf == "uniform":
                shape = "".join(f"{sp.pycode(k.upper + 1) if k in n.idx else 1}, "
                                for k in self.space)
                return f"xp.uniform(({shape}), like={self.like})"
            return f"xp.{n.leaf}({a[0]})"
        if n.op in ("max", "min"):
            return f"xp.{n.op}imum({a[0]}, {a[1]})"
        if n.op == "where":
            return f"xp.where({a[0]}, {a[1]}, {a[2]}, like={self.like})"
        if n.op in ("sum", "logsumexp"):
            inner = n.args[0]
            axes = tuple(self.space.index(k) for k in n.leaf)
            missing = sp.Mul(*[k.upper + 1 for k in n.leaf if k not in inner.idx])
            if n.op == "logsumexp" and missing != 1:
                raise ComponentError("log-sum-exp over an axis its body does not use")
            text = f"xp.{n.op}({a[0]}, {axes})" if inner.idx else a[0]
            return text if missing == 1 else f"({text} * {sp.pycode(missing)})"
        if n.op == "indicator":
            return f"xp.where({a[0]}, 1.0, 0.0, like={self.like})"
        if n.op == "cmp":
            return f"({a[0]} {_CMP[n.leaf]} {a[1]})"
        if n.op in ("and", "or"):
            return f"xp.logical_{n.op}({a[0]}, {a[1]})"
        if n.op == "not":
            return f"xp.logical_not({a[0]})"
        raise ComponentError(f"no code for operation {n.op!r}")


def _const(v) -> str:
    if isinstance(v, sp.Symbol):
        return v.name
    if v.is_Integer:
        return str(int(v))
    return repr(float(v))
