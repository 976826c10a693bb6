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
    saved = []
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
    moved = tuple((name, _moved(p)) for name, p in programs.items())
    return Memory(params, state, tuple(saved), moved, grads)


def _moved(p: Program) -> sp.Expr:
    """Elements read and written, each step on its own (no fusion across steps)."""
    total = sp.Integer(0)
    as_labels = label_inputs(p)
    for st in p.steps:
        names = step_reads(st, p.tensors) | {st.lhs}
        total += sum((elements(p.tensors[n], n in as_labels) for n in names), sp.Integer(0))
    return sp.expand(total)
