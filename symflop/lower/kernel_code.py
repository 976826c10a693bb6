"""The code of one kernel run in one call: a matrix product, a scatter, or a step
with no block index; and what every kernel's code needs: each tensor it reads
aligned into the step's index space, and the texts of shapes and slices.

A kernel that runs over blocks of rows is printed by ``symflop.lower.loop_code``;
the pass around them by ``symflop.lower.codegen``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import sympy as sp

from symflop.core.ir import Lowerer, step_root
from symflop.core.program import Program, Step, ref_indices, ref_name, tensor_refs
from symflop.lower.plan import Kernel
from symflop.lower.statements import Emitter


@dataclass
class Context:
    """What printing one kernel needs besides the kernel: the lowerer, the array whose
    dtype and device new arrays take, a name counter, and the host section with the
    scalar names it may read."""

    lower: Lowerer
    like: str | None
    counter: Iterator[int]
    host: list[str]
    host_names: frozenset[str]


def idx_text(idx: tuple) -> str:
    return "[" + ", ".join(map(str, idx)) + "]" if idx else ""


def shape_text(idx: tuple) -> str:
    return "(" + "".join(f"{sp.pycode(k.upper + 1)}, " for k in idx) + ")"


def extent(k: sp.Idx) -> str:
    return sp.pycode(k.upper + 1)


def rows_slice(axis: int) -> str:
    return "[" + ":, " * axis + "__s:__s + __r]"


def align(name: str, ridx: tuple, space: tuple) -> str:
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


def references(st: Step, program: Program, space: tuple, labels: dict,
               counter: Iterator[int], sliced: Callable[[str, tuple], str]
               ) -> tuple[dict, list[str], dict]:
    """Each tensor a step reads, aligned into its index space as a local; the label texts."""
    label_text = {j: align(sliced(y.base.label.name, tuple(y.indices[:-1])),
                           tuple(y.indices[:-1]), space) for j, y in labels.items()}
    aligned: dict = {}
    lines: list[str] = []
    for r in tensor_refs(st.body, program.tensors):
        name, ridx = ref_name(r), ref_indices(r)
        if not ridx:
            continue
        local = f"_{name}_{next(counter)}"
        aligned[r] = local
        text = align(sliced(name, ridx), ridx, space)
        for j in ridx:
            if j in labels:  # read at the label only
                text = f"xp.gather({text}, {space.index(j)}, {label_text[j]})"
        lines.append(f"{local} = {text}")
    return aligned, lines, label_text


def step_labels(st: Step) -> dict:
    """The indices a step reads one-hot tensors at, each with the tensor read there."""
    labels = {j: y for j, y in st.gather}
    if st.scatter is not None:
        labels[st.scatter[0]] = st.scatter[1]
    return labels


def kernel_lines(kernel: Kernel, program: Program, ctx: Context) -> list[str]:
    """A kernel run in one call: a matrix product, a scatter, or a step with no block
    index."""
    st, like = kernel.step, ctx.like
    if kernel.contraction is not None:
        (a, b), spec = kernel.contraction
        return [f"{st.lhs} = xp.contract({spec!r}, {a}, {b})"]
    space = st.idx if st.scatter is not None else st.space
    labels = step_labels(st)
    aligned, body, label_text = references(st, program, space, labels, ctx.counter,
                                           lambda name, ridx: name)
    root = step_root(st, ctx.lower)
    emit = Emitter(aligned, space, like, tuple(labels), counter=ctx.counter,
                   host=(ctx.host, ctx.host_names))
    if st.scatter is not None:
        value = emit(root)
        j, _y, base = st.scatter
        call = "scatter_add_" if kernel.reuse_base else "scatter_add"
        return body + emit.lines + [f"{st.lhs} = xp.{call}({base}, {space.index(j)}, "
                                    f"{label_text[j]}, {value})"]
    folded = st.reduce + tuple(labels)
    expr = emit(root)
    if folded and aligned:  # reductions kept their axes (size 1): drop them now
        expr = f"xp.squeeze({expr}, {tuple(space.index(j) for j in folded)})"
    if st.idx and not root.idx >= set(st.idx):
        expr = f"xp.broadcast_to({expr}, {shape_text(st.idx)}, like={like})"
    return body + emit.lines + [f"{st.lhs} = {expr}"]
