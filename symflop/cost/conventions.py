"""Counting conventions: explicit values, never ``if`` statements in the counter.

The counter tallies raw operations by kind (and, separately, the multiply-add
pairs that a fused multiply-add instruction would execute as one).  A convention
turns those tallies into FLOPs: a weight per kind, whether a fused multiply-add
counts as 1 or 2.  What fuses is decided once, for every component, by the counter
(``symflop.cost.counting``): a multiplication (or an integer power) feeding an
addition over the same indices, and the multiplication of a scaled quotient
``c*a/b + d``, which runs as ``c*(a/b) + d``; a division itself never fuses.  Which program is
counted (the equations as written, or the optimized program with its reuse of
common subexpressions) is a stage of the derivation, not a convention.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from symflop.core.ops import KINDS
from symflop.errors import UsageError

__all__ = ["CONVENTIONS", "KINDS", "Convention", "get_convention"]



@dataclass(frozen=True)
class Convention:
    name: str
    description: str
    weights: dict = field(default_factory=lambda: dict.fromkeys(KINDS, 1))
    fma_flops: int = 2

    def weight(self, kind: str) -> int:
        return self.weights[kind]

    @property
    def key(self) -> tuple:
        """Everything that changes a count: two conventions with equal keys count alike."""
        return (tuple(sorted(self.weights.items())), self.fma_flops)


def _weights(**over: int) -> dict:
    w = dict.fromkeys(KINDS, 1)
    w.update(over)
    return w


CONVENTIONS: dict[str, Convention] = {c.name: c for c in (
    Convention(
        "default",
        "every add, subtract, multiply, divide, transcendental (each function the engine "
        "knows: exp, log, sqrt, tanh, sigmoid, softplus, ..., and a general power), "
        "compare/select (abs, sign, max, min, where) and random draw is 1 FLOP; "
        "a multiply-add is 2"),
    Convention(
        "fma",
        "as default, but a multiply feeding an add of the same size is one fused "
        "multiply-add counted as 1 FLOP (fvcore's multiply-accumulate count of matrix "
        "products, applied to every such pair); a scaled quotient x*y/z feeding an add "
        "runs as a multiply-add of x and the quotient y/z: its multiply fused, its "
        "division counted",
        fma_flops=1),
    Convention(
        "weighted",
        "as default, but each transcendental costs 4 FLOPs: on NVIDIA GPUs since Volta a "
        "streaming multiprocessor has 16 special-function units against 64 FP32 lanes",
        weights=_weights(transcendental=4)),
    Convention(
        "xla",
        "as XLA's HloCostAnalysis: elementwise ops and compares 1 FLOP each, transcendentals "
        "reported on their own and not counted as FLOPs, random draws not counted",
        weights=_weights(transcendental=0, random=0)),
)}


def get_convention(name: str | Convention) -> Convention:
    if isinstance(name, Convention):
        return name
    try:
        return CONVENTIONS[name]
    except KeyError:
        known = ", ".join(CONVENTIONS)
        raise UsageError(f"unknown convention {name!r} (known: {known})") from None
