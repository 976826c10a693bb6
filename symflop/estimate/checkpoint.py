"""Modules run under torch.utils.checkpoint, as the estimate counts them.

Why apart: a checkpointed module (a segment) changes two things of the step, and both
follow from the operations that ran in it.  Its operations keep nothing for backward
but the module's inputs, and its forward runs again in the backward pass, as far as
its backward needs (``recomputed``).  ``segment_of`` says which segment an operation's
module runs in; the memory timeline (``timeline``) replays the same segments.
"""

from __future__ import annotations

import sympy as sp

from symflop.estimate.calls import OpCall, TensorRef
from symflop.estimate.result import Line
from symflop.estimate.work import Saved, Work, add_into


def segment_of(module: str, checkpointed) -> str | None:
    """The checkpointed module (of ``checkpointed``) that ``module`` runs in, if any."""
    return next((p for p in checkpointed if module == p or module.startswith(p + ".")),
                None)


class Checkpoints:
    """The segments of one estimate (module path -> its inputs) and the operations that
    ran in each, with what each did."""

    def __init__(self, inputs: dict[str, tuple[TensorRef, ...]]):
        self.inputs = inputs
        self.ops: dict[str, list[tuple[OpCall, Work]]] = {p: [] for p in inputs}

    def enter(self, call: OpCall, line: Line, saved: Saved) -> str | None:
        """The segment ``call`` runs in, if any; before its first operation the segment
        keeps its module's inputs (counted on ``line``)."""
        segment = segment_of(call.module, self.inputs)
        if segment is not None and not self.ops[segment]:
            for t in self.inputs[segment]:
                if t.parameter is None:
                    line.saved_bytes += saved.add(t.storage, t.storage_elements * t.itemsize)
        return segment

    def add(self, segment: str | None, call: OpCall, work: Work) -> None:
        """One more operation of ``segment`` (none: not checkpointed)."""
        if segment is not None:
            self.ops[segment].append((call, work))

    def lines(self) -> list[Line]:
        """Each segment's recomputation, in the order the segments were given."""
        return [recomputed(p, self.ops[p]) for p in self.inputs]


def recomputed(path: str, ops: list[tuple[OpCall, Work]]) -> Line:
    """The forward of a checkpointed module, run again in the backward pass as far as its
    backward needs: torch stops once every tensor the segment keeps exists again, so
    the operations after the last one whose result is kept do not run again."""
    kept = set().union(*(w.keeps for _, w in ops)) if ops else set()
    last = max((k for k, (call, w) in enumerate(ops)
                if "itself" in w.keeps or {t.storage for t in call.outputs} & kept),
               default=-1)
    line = Line(f"{path} (recomputed)", "checkpoint")
    for _call, w in ops[:last + 1]:
        add_into(line.backward, w.forward)
        line.flops_backward = sp.expand(line.flops_backward + w.flops)
        line.macs_backward = sp.expand(line.macs_backward + w.macs)
    line.components.append("recomputation")
    return line
