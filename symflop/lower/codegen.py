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
from symflop.core.program import (
    Program,
    Step,
    label_inputs,
    ref_indices,
    ref_name,
    tensor_refs,
)
from symflop.cost.counting import lowerer_for, program_names
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
        for name in _ordered_reads(st, program.tensors):
            if name not in assigned and name not in inputs:
                inputs.append(name)
        syms = set(st.body.free_symbols)
        for k in st.space + st.labelled:
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


def _ordered_reads(st: Step, tensors) -> list[str]:
    """What a step reads, in a stable order: its body's tensors, then one-hot labels, then
    a scatter's base."""
    names = [ref_name(r) for r in tensor_refs(st.body, tensors)]
    names += [y.base.label.name for _k, y in st.gather]
    if st.scatter is not None:
        names += [str(st.scatter[1].base), st.scatter[2]]
    return list(dict.fromkeys(names))


def generate(program: Program, func_name: str, stage: str = "") -> tuple[str, Signature]:
    """Python source of ``def func_name(xp, <dims>, <inputs>)`` returning a dict; ``stage``
    names the stage the program comes from, in a comment.

    A one-hot tensor is passed as its labels (integers, without the one-hot axis)."""
    sig = signature(program)
    labels = label_inputs(program)
    like = next((n for n in sig.inputs if not program.tensors[n].is_scalar
                 and n not in labels), None)
    lines = [f"def {func_name}(xp, {', '.join(sig.dims + sig.inputs)}):"]
    if stage:
        lines.append(f"    # {program.name} pass, {stage} stage: what `symflop count --stage "
                     "code` counts")
    lower = lowerer_for(program_names(program))
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
    space = st.idx if st.scatter is not None else st.space
    labels = {k: y for k, y in st.gather}
    if st.scatter is not None:
        labels[st.scatter[0]] = st.scatter[1]
    lines: list[str] = []
    label_text = {k: _align(y.base.label.name, tuple(y.indices[:-1]), space)
                  for k, y in labels.items()}
    aligned: dict = {}
    for r in tensor_refs(st.body, program.tensors):
        name, ridx = ref_name(r), ref_indices(r)
        if not ridx:
            continue
        local = f"_{name}_{len(aligned)}"
        aligned[r] = local
        text = _align(name, ridx, space)
        for k in ridx:
            if k in labels:  # read at the label only
                text = f"xp.gather({text}, {space.index(k)}, {label_text[k]})"
        lines.append(f"{local} = {text}")
    root = step_root(st, lower)
    printer = _Printer(aligned, space, like, tuple(labels))
    lines.extend(printer.locals_for(root))
    expr = printer(root)
    if st.scatter is not None:
        k, _y, base = st.scatter
        lines.append(f"{st.lhs} = xp.scatter_add({base}, {space.index(k)}, {label_text[k]}, "
                     f"{expr})")
        return lines
    folded = st.reduce + tuple(labels)
    if folded and aligned:  # reductions kept their axes (size 1): drop them now
        expr = f"xp.squeeze({expr}, {tuple(space.index(k) for k in folded)})"
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

    def __init__(self, aligned: dict, space: tuple = (), like: str | None = None,
                 labelled: tuple = ()):
        self.aligned = aligned
        self.space = space
        self.like = like
        self.labelled = set(labelled)
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
        if n.op == "div" and not n.args[0].reads_tensor and n.args[1].reads_tensor:
            return f"xp.divide({a[0]}, {a[1]})"  # c / x: one division, as counted
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
        if n.op in ("sum", "amax"):
            inner = n.args[0]
            axes = tuple(self.space.index(k) for k in n.leaf)
            missing = sp.Mul(*[k.upper + 1 for k in n.leaf if k not in inner.idx
                               and k not in self.labelled])
            text = f"xp.{n.op}({a[0]}, {axes})" if inner.idx else a[0]
            return text if missing == 1 or n.op == "amax" else f"({text} * {sp.pycode(missing)})"
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
