"""The code of a loop over blocks of rows: the kernels that share it
(``symflop.lower.plan.fuse_loops``), each split into what runs before the loop,
in each iteration and after it, and the block-sized buffers they share.

``xp.rows`` says how many rows a block holds; a backend that fuses on its own
asks for all of them at once.
"""

from __future__ import annotations

from dataclasses import replace

import sympy as sp

from symflop.core.ir import step_root
from symflop.core.program import Program, Step, ref_indices, tensor_refs
from symflop.lower.kernel_code import (
    Context,
    extent,
    idx_text,
    references,
    rows_slice,
    shape_text,
    step_labels,
)
from symflop.lower.plan import Kernel, rows_of
from symflop.lower.statements import Emitter, Pool


def fused_loop(group: list[Kernel], program: Program, ctx: Context,
               host_at: list[frozenset[str]]) -> list[str]:
    """One loop over blocks of rows running each kernel of ``group`` in turn
    (``symflop.lower.plan.fuse_loops``)."""
    setup: list[str] = []
    body: list[str] = []
    post: list[str] = []
    final: list[str] = []
    head = group[0]
    size = extent(head.block)
    rows = f"xp.rows({size}, {sp.pycode(rows_of(head))}, {ctx.like})"
    rename: dict[str, str] = {}
    pool = Pool()
    for kernel in group:
        st = kernel.step
        position = next(n for n, k in enumerate(program.steps) if k is st)
        parts = _blocked_parts(kernel, program, replace(ctx, host_names=host_at[position]),
                               rename, pool)
        setup += [f"# {st.lhs}{idx_text(st.idx)} = {st.rhs()}"] + parts["setup"]
        body += parts["body"]
        post += parts["post"]
        final += parts["final"]
        rename[st.lhs] = f"_{st.lhs}"
    before, views = pool.lines()
    if views:
        views.insert(0, f"__n = min(__r, {size} - __s)")
    out = setup[:1] + [f"__r = {rows}"] + setup[1:] + before
    out.append(f"for __s in range(0, {size}, __r):")
    out += ["    " + ln for ln in views + body]
    return out + post + final


def _destination(kernel: Kernel, like: str | None) -> str:
    """The line naming the buffer a blocked kernel writes its rows into."""
    st, dest = kernel.step, f"_{kernel.step.lhs}"
    if kernel.accumulate:
        return f"{dest} = None"
    if kernel.inplace:
        return (f"{dest} = {st.lhs} if _inplace else xp.result(_out, {st.lhs!r}, "
                f"{shape_text(st.idx)}, {like})")
    return f"{dest} = xp.result(_out, {st.lhs!r}, {shape_text(st.idx)}, {like})"


def _blocked_parts(kernel: Kernel, program: Program, ctx: Context,
                   rename: dict[str, str], pool: Pool) -> dict[str, list[str]]:
    """A blocked kernel's lines: ``setup`` (before the loop: its destination, what does
    not depend on the block, block buffers), ``views`` and ``body`` (each iteration),
    ``post`` (after the loop, on an accumulated total) and ``final`` (naming the result).
    ``rename``: results of earlier kernels of the same loop, read from their buffers."""
    st, k, like, counter = kernel.step, kernel.block, ctx.like, ctx.counter
    labels = step_labels(st)
    refs = [ref_indices(r) for r in tensor_refs(st.body, program.tensors)]
    widest = max([st.idx] + refs, key=len)  # the operand whose memory order leads
    space = _memory_space(st, widest, labels)

    def sliced(name: str, ridx: tuple) -> str:
        name = rename.get(name, name)
        return name + rows_slice(ridx.index(k)) if k in ridx else name

    aligned, refs_lines, _ = references(st, program, space, labels, counter, sliced)
    root = step_root(st, ctx.lower)
    squeeze = tuple(space.index(j) for j in st.reduce + tuple(labels)) if (
        st.reduce or labels) and aligned else ()
    dest = f"_{st.lhs}"
    setup = [_destination(kernel, like)]
    target = None
    if not kernel.accumulate and not st.reduce and not labels and root.idx == set(st.idx):
        target = dest + rows_slice(st.idx.index(k))
    in_block = {r for r, local in aligned.items()
                if any(ln.startswith(local + " = ") and "__s:__s" in ln for ln in refs_lines)}
    emit = Emitter(aligned, space, like, tuple(labels), block=in_block,
                   accumulator=dest if kernel.accumulate else None, index=k, counter=counter,
                   pool=pool, memory_order=widest,
                   host=(ctx.host, ctx.host_names))
    value = emit(root, target)
    # what does not depend on the block runs once, before the loop
    setup += [ln for ln in refs_lines if "__s:__s" not in ln] + emit.pre
    body = [ln for ln in refs_lines if "__s:__s" in ln] + emit.lines
    part = f"xp.squeeze({value}, {squeeze})" if squeeze else value
    if not kernel.accumulate and value != target:
        body.append(f"xp.assign({dest}{rows_slice(st.idx.index(k))}, {part})")
    final = [f"{st.lhs} = {part if kernel.accumulate else dest}"]
    return {"setup": setup, "body": body, "post": emit.post, "final": final}


def _memory_space(st: Step, order: tuple, labels: dict) -> tuple:
    """A blocked step's index space in the order of the tensor it reads that spans it
    (``x[i, j]``: (i, j), summed over axis 0), so that no operand is a permuted view: a
    compiler (Inductor) then reduces down the rows with vector accumulators instead of
    striding across them.  Kept only where the output indices stay in their order (the
    reduced axes are squeezed out, leaving the output's); else output indices first."""
    base = st.space
    if labels or set(order) != set(base) or len(order) != len(base):
        return base
    if tuple(k for k in order if k in st.idx) != tuple(st.idx):
        return base
    return tuple(order)
