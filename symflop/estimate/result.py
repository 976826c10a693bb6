"""What an estimate is: its lines (a module of the model, the loss, the optimizer) and
the step's memory, as polynomials in the sizes left symbolic.  Apart from the tracing
and costing (``step``) and the rendering (``table``), which both read it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import sympy as sp

from symflop.core.ops import KINDS
from symflop.errors import UsageError

ZERO = sp.Integer(0)


def _zeros() -> dict[str, sp.Expr]:
    return dict.fromkeys(KINDS, ZERO)


@dataclass
class Line:
    """One row of the estimate: a module of the model, or the loss, optimizer, schedule."""

    name: str
    what: str                                   # module type, or "loss", "optimizer", ...
    forward: dict[str, sp.Expr] = field(default_factory=_zeros)
    backward: dict[str, sp.Expr] = field(default_factory=_zeros)
    flops_forward: sp.Expr = ZERO               # under the estimate's convention
    flops_backward: sp.Expr = ZERO
    macs_forward: sp.Expr = ZERO                # multiplications of products/convolutions
    macs_backward: sp.Expr = ZERO
    saved_bytes: sp.Expr = ZERO                 # kept for backward, first kept here
    integer: sp.Expr = ZERO                     # operations on integers and booleans
    components: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)

    @property
    def flops(self) -> sp.Expr:
        return sp.expand(self.flops_forward + self.flops_backward)


@dataclass
class Estimate:
    """Per-line counts and the step's memory, as polynomials in ``symbols``."""

    model: str
    convention: str
    symbols: dict[str, sp.Symbol]
    hints: dict[str, int]
    lines: list[Line]
    parameters: int
    parameter_bytes: int
    gradient_bytes: int
    state_bytes: sp.Expr
    activation_bytes: sp.Expr
    optimizer: str
    loss: str
    flop_counter: dict[str, tuple[int, int]] | None = None   # module -> (fwd, bwd) at hints
    flop_counter_error: str = ""          # why the FlopCounterMode column is missing
    fitted: tuple[str, ...] = ()          # sizes the trace fixed: fitted over several traces
    notes: list[str] = field(default_factory=list)   # what a reader must know of the figures
    peak: Any = None                      # timeline.Peak of a steady step (state allocated)
    first_step_peak: Any = None           # timeline.Peak of the first step
    optimizer_impl: str = "for-loop"      # torch's implementation of the optimizer step
    tensor_parallel: Any = None           # tensor_parallel.TensorParallel: one device's share
    communication: tuple = ()             # tensor_parallel.Communication of one device
    parameter_sizes: tuple = ()           # (name, elements, bytes each, trainable, shape)
    boundaries: dict = field(default_factory=dict)  # by_block: block -> bytes of its output
    replay: Any = None                    # timeline.Replay: the peak with other checkpoints

    def total(self, attr: str) -> sp.Expr:
        return sp.expand(sp.Add(*[getattr(ln, attr) for ln in self.lines]))

    def flops(self, part: str = "step") -> sp.Expr:
        """FLOPs of one part of the step: "forward" or "backward" (the network's),
        "loss", "optimizer", "schedule" (forward and backward together), or "step"."""
        parts = ("forward", "backward", "loss", "optimizer", "schedule", "step")
        if part not in parts:
            raise UsageError(f"unknown part {part!r} (known: {', '.join(parts)})")
        if part == "step":
            return sp.expand(self.total("flops_forward") + self.total("flops_backward"))
        if part in ("forward", "backward"):
            return sp.expand(sp.Add(*[getattr(ln, f"flops_{part}") for ln in self.lines
                                      if ln.what not in ("loss", "optimizer", "schedule")]))
        return sp.expand(sp.Add(*[ln.flops for ln in self.lines if ln.what == part]))

    def by_kind(self, which: str) -> dict[str, sp.Expr]:
        out = _zeros()
        for ln in self.lines:
            for k, v in getattr(ln, which).items():
                out[k] = sp.expand(out[k] + v)
        return out

    @property
    def memory_bytes(self) -> sp.Expr:
        return sp.expand(self.parameter_bytes + self.gradient_bytes + self.state_bytes
                         + self.activation_bytes)

    @property
    def unknown(self) -> list[tuple[str, str]]:
        return [(ln.name, u) for ln in self.lines for u in ln.unknown]

    def at(self, expr: sp.Expr, **sizes: int) -> int:
        """A count at concrete sizes (the trace's sizes for any not given)."""
        values = {self.symbols[n]: v for n, v in {**self.hints, **sizes}.items()
                  if n in self.symbols}
        return int(sp.expand(expr).xreplace(values))
