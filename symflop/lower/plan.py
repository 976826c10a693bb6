"""The lowering stage: from the stabilized program to kernels with buffers.

Three decisions are made here, each from the program alone:

* **what a pass returns** (``results``): what the author named as an output,
  state or parameter, what another pass reads (the tensors saved for backward)
  and nothing else.  Every other step is a temporary;
* **which temporaries are never stored** (``inline_temporaries``): an elementwise
  temporary read at every index of its readers' spaces is computed inside each
  reader instead of being written out and read back, wherever that moves fewer
  bytes (a temporary made from ``k`` full-size reads, read by ``r`` steps: ``k*r``
  reads inlined against ``k + 1 + r`` stored).  This is the fusion of an
  elementwise producer into its consumers; it can add FLOPs (BatchNorm's ``x - mu``
  is computed by both the variance and ``y``), which the lowered stage's counts show;
* **how each step runs** (``Kernel``): over blocks of rows of one index, so that
  every intermediate of a step lives in a block-sized buffer that stays in cache
  (a reduction over the blocked index accumulates block by block); in place into
  an input's buffer where the step updates that input elementwise (optimizer
  state, in the opt-in in-place call form); in place into a dead temporary's
  buffer for a scatter.

Bytes moved at this stage are per kernel: every tensor a kernel reads once, what it
writes once (``symflop.cost.memory``), since the block-sized intermediates never
leave the cache.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from symflop.core.functions import draws_random
from symflop.core.ir import Node, step_root
from symflop.core.model import Role
from symflop.core.program import (
    Program,
    Step,
    label_inputs,
    ref_indices,
    ref_name,
    step_reads,
    tensor_refs,
)
from symflop.cost.counting import lowerer_for, program_names
from symflop.rewrite.edits import drop_dead, try_inline
from symflop.rewrite.rules import rule

RESULT_ROLES = (Role.OUTPUT, Role.STATE, Role.PARAMETER)


@dataclass(frozen=True)
class Kernel:
    """How one step runs.

    ``block``: the index whose rows are processed a block at a time (None: the step
    runs in one call); ``accumulate``: the block index is reduced, so block results
    are added up (or maxed); ``inplace``: the input whose buffer the in-place call
    form writes the result into; ``reuse_base``: a scatter adds into its base's
    buffer, which nothing reads afterwards; ``contraction``: the step is a matrix
    product, run as one (``einsum``) call."""

    step: Step
    block: sp.Idx | None = None
    accumulate: bool = False
    inplace: str | None = None
    reuse_base: bool = False
    contraction: tuple | None = None  # (operands, einsum spec) of a matrix product


@dataclass(frozen=True)
class Lowered:
    """One pass at the lowered stage: its program, kernels, returned tensors, and the
    kernels that share one loop over blocks (``loops``: kernel positions, in order)."""

    program: Program
    kernels: tuple[Kernel, ...]
    results: tuple[str, ...]
    loops: tuple[tuple[int, ...], ...] = ()

    @property
    def temporaries(self) -> tuple[str, ...]:
        """Steps stored in a full-size buffer but not returned (a scatter's base whose
        buffer the scatter takes over is the result's memory, not a temporary)."""
        taken = {k.step.scatter[2] for k in self.kernels if k.reuse_base and k.step.scatter}
        return tuple(k.step.lhs for k in self.kernels
                     if k.step.lhs not in self.results and k.step.lhs not in taken)


def results(program: Program, read_elsewhere: frozenset[str]) -> tuple[str, ...]:
    """What a pass returns: named outputs, state and parameters it assigns, what other
    passes read from it, and its random draws (so that a run can be reproduced)."""
    out = []
    for st in program.steps:
        t = program.tensors.get(st.lhs)
        if st.lhs in read_elsewhere or (t is not None and t.role in RESULT_ROLES) \
                or draws_random(st.body):
            out.append(st.lhs)
    return tuple(dict.fromkeys(out))


def lower(program: Program, read_elsewhere: frozenset[str]) -> Lowered:
    """The lowered form of one pass (see the module docstring)."""
    keep = results(program, read_elsewhere)
    program = drop_dead(inline_temporaries(program, frozenset(keep)), frozenset(keep))
    inputs = pass_inputs(program)
    kernels = []
    for n, st in enumerate(program.steps):
        product = matrix_product(st, program)
        block, accumulate = (None, False) if product else _block(st, program)
        kernels.append(Kernel(st, block, accumulate, _inplace(st, inputs, program),
                              _base_dead(program, n, keep), product))
    blocked = any(not program.tensors[n].is_scalar and n not in label_inputs(program)
                  for n in inputs)  # an array input gives the blocks' dtype and device
    return Lowered(program, tuple(kernels), keep, fuse_loops(kernels, program, blocked))


# -- loops shared by kernels ---------------------------------------------------------------

def runs_blocked(kernel: Kernel) -> bool:
    st = kernel.step
    return kernel.block is not None and not draws_random(st.body) and st.scatter is None


def rows_of(kernel: Kernel) -> sp.Expr:
    """Elements of one row of a blocked kernel: the product of its other extents."""
    st = kernel.step
    return sp.Mul(*[j.upper + 1 for j in st.space if j != kernel.block
                    and j not in st.labelled])


def _reads(st: Step, program: Program) -> dict[str, set]:
    reads: dict[str, set] = {}
    for r in tensor_refs(st.body, program.tensors):
        reads.setdefault(ref_name(r), set()).add(tuple(ref_indices(r)))
    for _j, y in st.gather:
        reads.setdefault(y.base.label.name, set()).add(tuple(y.indices[:-1]))
    return reads


@rule("fuse-loops", "lower", on="kernel")
def fuse_loops(kernels: list[Kernel], program: Program, blocked: bool = True
               ) -> tuple[tuple[int, ...], ...]:
    """Consecutive blocked kernels over the same rows share one loop, so that each block
    of what they read is read from memory once.

    A kernel joins the loop if it reads what an earlier one of the loop wrote only at
    the rows being done (an accumulated total is complete only after the loop), and
    it updates in place nothing another one reads whole."""
    groups: list[list[int]] = []
    for n, kernel in enumerate(kernels):
        if blocked and runs_blocked(kernel) and groups and _joins(n, groups[-1], kernels,
                                                                  program):
            groups[-1].append(n)
        else:
            groups.append([n])
    return tuple(tuple(g) for g in groups)


def _joins(n: int, group: list[int], kernels: list[Kernel], program: Program) -> bool:
    item, head = kernels[n], kernels[group[0]]
    if not runs_blocked(head) or item.block != head.block or rows_of(item) != rows_of(head):
        return False
    made = {kernels[m].step.lhs: kernels[m] for m in group}
    for name, ats in _reads(item.step, program).items():
        producer = made.get(name)
        if producer is not None and (producer.accumulate or ats != {producer.step.idx}):
            return False
    updated = item.inplace
    return not (updated and any(
        any(item.block not in at for at in _reads(kernels[m].step, program).get(updated, ()))
        for m in group))


# -- fusion of elementwise temporaries ---------------------------------------------------

@rule("fuse-elementwise", "lower", on="program")
def inline_temporaries(program: Program, keep: frozenset[str]) -> Program:
    """An elementwise temporary is computed inside each step that reads it, never stored,
    where that moves fewer bytes.

    Repeated until no temporary is worth it (module docstring)."""
    while True:
        for n in range(len(program.steps)):
            if _worth_inlining(program, n, keep):
                new = try_inline(program, n, keep)
                if new is not None:
                    program = new
                    break
        else:
            return program


def _worth_inlining(program: Program, n: int, keep: frozenset[str]) -> bool:
    st = program.steps[n]
    if st.lhs in keep or not st.idx or st.reduce or st.gather or st.scatter is not None \
            or draws_random(st.body):
        return False
    readers = [s for s in program.steps[n + 1:] if st.lhs in step_reads(s, program.tensors)]
    if not readers:
        return False
    for s in readers:  # read at every index of the reader: inlining adds no work per element
        for r in tensor_refs(s.body, program.tensors):
            if ref_name(r) == st.lhs and set(ref_indices(r)) != set(s.space) - set(s.labelled):
                return False
    full = sum(1 for r in tensor_refs(st.body, program.tensors)
               if set(ref_indices(r)) == set(st.idx))
    return full * len(readers) <= full + 1 + len(readers)


# -- kernels -------------------------------------------------------------------------------

def pass_inputs(program: Program) -> set[str]:
    """What a pass reads that it does not compute first."""
    assigned: set[str] = set()
    out: set[str] = set()
    for st in program.steps:
        out |= step_reads(st, program.tensors) - assigned
        assigned.add(st.lhs)
    return out


@rule("blocked-rows", "lower", on="kernel")
def _block(st: Step, program: Program) -> tuple[sp.Idx | None, bool]:
    """A step runs over blocks of rows of one index, its intermediates in cache-sized
    buffers.

    The index to run ``st`` over in blocks of rows, and whether it is reduced: the
    outermost axis of the largest tensor the step reads or writes, if blocks of it
    give the same result (no reduction runs over it, or one whose block results are
    then added up, what is outside it being applied once, after the blocks)."""
    if st.scatter is not None:
        return None, False
    refs = [r for r in tensor_refs(st.body, program.tensors) if ref_indices(r)]
    shapes = ([st.idx] if st.idx else []) + [ref_indices(r) for r in refs]
    if not shapes:
        return None, False
    k = max(shapes, key=len)[0]
    if k in st.labelled or k not in st.space:
        return None, False
    root = step_root(st, lowerer_for(program_names(program)))
    over_k = [n for n in _nodes(root) if n.op in ("sum", "amax") and k in n.leaf]
    if k in st.idx:
        return (k, False) if not over_k else (None, False)
    if len(over_k) == 1 and k in over_k[0].args[0].idx:
        return k, True  # block results of the one reduction over k are added up
    return None, False


def _nodes(root: Node) -> list[Node]:
    seen: dict[Node, None] = {}

    def go(n: Node) -> None:
        if n in seen:
            return
        seen[n] = None
        for a in n.args:
            go(a)
    go(root)
    return list(seen)


@rule("matrix-product", "lower", on="kernel")
def matrix_product(st: Step, program: Program) -> tuple | None:
    """A sum of the product of two tensors in which each misses an output index (so each
    element of each is used more than once) runs as one matrix-product call.

    Returns (operand names, einsum spec), e.g. (("x", "W"), "bi,oi->bo")."""
    if not st.reduce or st.gather or st.scatter is not None or st.reduce_op != "sum":
        return None
    factors = sp.Mul.make_args(st.body)
    if len(factors) != 2 or not all(isinstance(f, sp.Indexed) for f in factors):
        return None
    indices = [tuple(ref_indices(f)) for f in factors]
    if any(len(set(ix)) != len(ix) for ix in indices) or \
            not all(set(st.idx) - set(ix) for ix in indices):
        return None
    if set(st.idx) | set(st.reduce) != set(indices[0]) | set(indices[1]):
        return None
    order = st.idx + st.reduce
    names = [str(k) for k in order]
    if all(len(n) == 1 and n.isascii() and n.isalpha() for n in names) \
            and len(set(names)) == len(names):
        letters = dict(zip(order, names))  # the equations' own index names
    else:
        letters = dict(zip(order, "abcdefghijklmnopqrstuvwxyz"))
    spec = ",".join("".join(letters[k] for k in ix) for ix in indices)
    spec += "->" + "".join(letters[k] for k in st.idx)
    return tuple(ref_name(f) for f in factors), spec


@rule("in-place-update", "lower", on="kernel")
def _inplace(st: Step, inputs: set[str], program: Program) -> str | None:
    """A step that updates an input elementwise writes into the input's buffer (in the
    in-place call form).

    ``st.lhs`` when each element's new value reads the old one at the same index only,
    so blocks can overwrite it."""
    if st.lhs not in inputs or not st.idx or st.reduce or st.gather or st.scatter is not None:
        return None
    for r in tensor_refs(st.body, program.tensors):
        if ref_name(r) == st.lhs and tuple(ref_indices(r)) != tuple(st.idx):
            return None
    return st.lhs


@rule("scatter-in-place", "lower", on="kernel")
def _base_dead(program: Program, n: int, keep) -> bool:
    """A scatter adds into its base's buffer when the base is a temporary nothing reads
    afterwards."""
    st = program.steps[n]
    if st.scatter is None:
        return False
    base = st.scatter[2]
    if base in keep or not any(s.lhs == base for s in program.steps[:n]):
        return False
    return not any(base in step_reads(s, program.tensors) for s in program.steps[n + 1:])
