"""Counting conventions: explicit values, never ``if`` statements in the counter.

The counter tallies raw operations by kind (and, separately, the multiply-add
pairs that a fused multiply-add instruction would execute as one).  A convention
turns those tallies into FLOPs: a weight per kind, whether a fused multiply-add
counts as 1 or 2, and whether a subexpression computed in one step is reused by
later steps of the same pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from symflop.errors import UsageError

KINDS = ("add", "mul", "div", "transcendental", "compare", "random")


@dataclass(frozen=True)
class Convention:
    name: str
    description: str
    weights: dict = field(default_factory=lambda: dict.fromkeys(KINDS, 1))
    fma_flops: int = 2
    share_across_steps: bool = False

    def weight(self, kind: str) -> int:
        return self.weights[kind]

    @property
    def key(self) -> tuple:
        """Everything that changes a count: two conventions with equal keys count alike."""
        return (tuple(sorted(self.weights.items())), self.fma_flops, self.share_across_steps)


def _weights(**over: int) -> dict:
    w = dict.fromkeys(KINDS, 1)
    w.update(over)
    return w


CONVENTIONS: dict[str, Convention] = {c.name: c for c in (
    Convention(
        "default",
        "every add, subtract, multiply, divide, transcendental (exp, log, sqrt, power, tanh), "
        "compare/select (abs, sign, max, min, where) and random draw is 1 FLOP; "
        "a multiply-add is 2; each step counted as written (no reuse across steps)"),
    Convention(
        "fma",
        "as default, but a multiply feeding an add of the same size is one fused "
        "multiply-add counted as 1 FLOP (fvcore's multiply-accumulate count of matrix "
        "products, applied to every such pair)",
        fma_flops=1),
    Convention(
        "weighted",
        "as default, but each transcendental costs 4 FLOPs: on NVIDIA GPUs since Volta a "
        "streaming multiprocessor has 16 special-function units against 64 FP32 lanes",
        weights=_weights(transcendental=4)),
    Convention(
        "shared",
        "as default, but a subexpression already computed by an earlier step of the same "
        "pass (e.g. BatchNorm's x - mu) is reused, not recomputed, as hand derivations do",
        share_across_steps=True),
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
