"""Memory: parameters, persistent state, tensors saved for backward, bytes moved."""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from symflop.core.model import Fact, Role
from symflop.core.program import Program, label_inputs, step_reads
from symflop.errors import UsageError

DTYPE_BYTES = {"float16": 2, "bfloat16": 2, "float32": 4, "float64": 8}


def dtype_bytes(dtype: str) -> int:
    try:
        return DTYPE_BYTES[dtype]
    except KeyError:
        raise UsageError(f"unknown dtype {dtype!r} (known: {', '.join(DTYPE_BYTES)})") from None


@dataclass(frozen=True)
class Memory:
    """Element counts; ``bytes`` turns them into bytes for a dtype."""

    parameters: tuple[tuple[str, sp.Expr], ...]
    state: tuple[tuple[str, sp.Expr], ...]
    saved: tuple[tuple[str, sp.Expr], ...]
    moved: tuple[tuple[str, sp.Expr], ...]
    gradients: tuple[tuple[str, sp.Expr], ...] = ()
    # per pass, the lowered stage's full-size temporaries: stored by a step, not returned
    temporaries: tuple[tuple[str, sp.Expr], ...] = ()

    def elements(self, what: str) -> sp.Expr:
        return sp.expand(sp.Add(*[n for _, n in getattr(self, what)]))

    def bytes(self, what: str, dtype: str = "float32") -> sp.Expr:
        return sp.expand(dtype_bytes(dtype) * self.elements(what))


def size(shape) -> sp.Expr:
    return sp.Mul(*shape)


def elements(t, labels: bool = True) -> sp.Expr:
    """Values a tensor holds at run time: a one-hot tensor read at its labels only is kept
    as its labels (``labels``)."""
    return size(t.shape[:-1] if t.has(Fact.ONE_HOT) and labels else t.shape)


def memory(tensors: dict, programs: dict[str, Program], backward: Program | None,
           wrt: tuple[str, ...] = ()) -> Memory:
    params = tuple((n, size(t.shape)) for n, t in tensors.items() if t.role is Role.PARAMETER)
    grads = tuple((f"grad_{n}", size(tensors[n].shape)) for n in wrt
                  if tensors[n].role is Role.PARAMETER)
    state = tuple((n, size(t.shape)) for n, t in tensors.items() if t.role is Role.STATE)
    saved: list[tuple[str, sp.Expr]] = []
    if backward is not None:
        made_by_backward = {st.lhs for st in backward.steps}
        as_labels = label_inputs(backward)
        for st in backward.steps:
            for n in sorted(step_reads(st, backward.tensors)):
                t = backward.tensors[n]
                if (n in made_by_backward or t.role in (Role.PARAMETER, Role.STATE, Role.HYPER)
                        or n.startswith("grad_") or any(n == s for s, _ in saved)):
                    continue
                saved.append((n, elements(t, n in as_labels)))
    moved = tuple((name, moved_elements(p)) for name, p in programs.items())
    return Memory(params, state, tuple(saved), moved, grads)


def moved_elements(p: Program, loops: tuple[tuple[int, ...], ...] | None = None) -> sp.Expr:
    """Elements read and written: every tensor a step reads once, and its result once (an
    update in place, such as ``m = beta*m + ...``, reads the old value and writes the new
    one: two transfers).  ``loops`` groups steps that run in one loop over blocks
    (``symflop.lower.plan``): there a tensor is read once for the group, and what an
    earlier step of the group wrote is not read back from memory.  Without ``loops``,
    each step is on its own (no fusion across steps)."""
    groups = loops if loops is not None else tuple((n,) for n in range(len(p.steps)))
    return sp.expand(sum((group_elements([p.steps[n] for n in g], p) for g in groups),
                         sp.Integer(0)))


def group_elements(steps: list, p: Program) -> sp.Expr:
    """Elements a group of steps run in one loop reads (each tensor once, none that the
    group wrote first; a one-hot tensor read at its labels: its labels) and writes."""
    as_labels = label_inputs(p)
    read: list[str] = []
    written: list[str] = []
    for st in steps:
        read += [n for n in sorted(step_reads(st, p.tensors)) if n not in written
                 and n not in read]
        written.append(st.lhs)
    names = read + list(dict.fromkeys(written))
    return sp.Add(*[elements(p.tensors[n], n in as_labels) for n in names])
