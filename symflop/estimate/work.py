"""What one traced operation did, and the storages the backward pass keeps.

Why apart: the costing of a component's use (``costs``), the network's lines
(``network``), checkpointing (``checkpoint``) and the step's loss line all write these
records; none of them needs the others to read one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sympy as sp

from symflop.estimate.calls import TensorRef
from symflop.estimate.result import ZERO, Line, _zeros

ONE = sp.Integer(1)


def add_into(acc: dict, more: dict) -> None:
    """Add counts by kind into ``acc``."""
    for k, v in more.items():
        acc[k] = sp.expand(acc.get(k, ZERO) + v)


def read(reads: dict, t: TensorRef) -> None:
    """One more read of ``t`` that gives it a gradient."""
    reads[t.key] = t, reads.get(t.key, (t, 0))[1] + 1


class Saved:
    """Storages kept for backward, each counted once (views and in-place results share).
    ``sharding`` (tensor parallelism's) scales a storage cut over the devices; ``scale``
    is the factor of the operation now applied, for the tensors it makes."""

    def __init__(self, sharding=None):
        self.seen: set = set()
        self.fresh = 0
        self.sharding = sharding
        self.scale = ONE

    def new(self, nbytes: sp.Expr) -> sp.Expr:
        """A tensor the component makes and keeps (BatchNorm's normalized activations)."""
        self.fresh += 1
        return self.add(("new", self.fresh), nbytes * self.scale)

    def add(self, key, nbytes: sp.Expr) -> sp.Expr:
        if key in self.seen:
            return ZERO
        self.seen.add(key)
        if self.sharding is not None and not isinstance(key, tuple):
            return nbytes * self.sharding.storage(key)
        return nbytes


@dataclass
class Work:
    """What one traced operation did: its forward work, and what its backward keeps."""

    forward: dict = field(default_factory=_zeros)
    flops: sp.Expr = ZERO
    macs: sp.Expr = ZERO
    keeps: set = field(default_factory=set)   # storages kept; "itself" for its own tensors
    new_kept: sp.Expr = ZERO                   # bytes of its own tensors kept


def scaled_into(line: Line, part: Line, work: Work, factor: sp.Expr) -> None:
    """Add ``part`` (one operation's counts) to ``line`` at ``factor`` (1/t for work cut
    along the sequence over t devices), and scale ``work`` with it."""
    for which in ("forward", "backward"):
        add_into(getattr(line, which), {k: v * factor for k, v in getattr(part, which).items()})
    for attr in ("flops_forward", "flops_backward", "macs_forward", "macs_backward",
                 "integer"):
        setattr(line, attr, sp.expand(getattr(line, attr) + getattr(part, attr) * factor))
    line.saved_bytes += part.saved_bytes     # scaled per storage by Saved
    line.unknown += [u for u in part.unknown if u not in line.unknown]
    line.components += [c for c in part.components if c not in line.components]
    work.forward = {k: v * factor for k, v in work.forward.items()}
    work.flops, work.macs = work.flops * factor, work.macs * factor
    work.new_kept = work.new_kept * factor
