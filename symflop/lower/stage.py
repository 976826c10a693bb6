"""The lowered stage of a whole component: every pass lowered, and the save-or-recompute
choice made by bytes moved.

The derived passes can read what the forward pass named (BatchNorm's ``xhat``) or
recompute it from the forward's inputs (``symflop.rewrite.pipeline.recompute_point``; the
pipeline keeps them, stabilized, in the stabilized stage).
Both are lowered; the one whose forward and derived passes together move fewer bytes
is kept (ties keep the reading form).  On a memory-bound device that is the faster
program, and it is the one that saves less for backward.
"""

from __future__ import annotations

import sympy as sp

from symflop.core.model import Component
from symflop.core.program import Program
from symflop.core.stages import DERIVED
from symflop.cost.counting import numeric_sizes
from symflop.cost.memory import moved_elements
from symflop.lower.plan import Lowered, lower, pass_inputs
from symflop.rewrite.pipeline import Stage
from symflop.rewrite.rules import rule


@rule("recompute-forward", "lower", on="program")
def _recompute(c: Component, stages: tuple[Stage, ...]) -> dict[str, Program]:
    """The derived passes recompute the forward's large intermediates from its inputs
    when that moves fewer bytes than saving them."""
    return stages[-1].recompute


def lower_component(c: Component, stages: tuple[Stage, ...]) -> tuple[Stage, dict[str, Lowered]]:
    """The lowered ``Stage`` and each pass's ``Lowered`` form."""
    code = stages[-1].programs
    options: list[tuple[dict[str, Program], tuple[tuple[str, str, str], ...]]] = [(code, ())]
    recomputed = _recompute(c, stages)
    if recomputed:
        options.append(({**code, **recomputed},
                         tuple(("recompute-forward", name, "reads the forward's inputs")
                               for name in recomputed)))
    sizes = numeric_sizes(c.dims)
    tried = []
    for programs, fired in options:
        lowered = _lower_all(programs)
        moved = sp.expand(sum((moved_elements(lw.program, lw.loops)
                               for lw in lowered.values()), sp.Integer(0)))
        tried.append((int(moved.xreplace(sizes)), moved, lowered, fired))
    best = min(tried, key=lambda t: t[0])  # the first (reading what the forward saved) on a tie
    _value, _moved, lowered, fired = best
    if len(tried) > 1:
        note = (f"all passes move {tried[1][1]} elements, against {tried[0][1]} reading what "
                "the forward saved")
        fired = tuple((rule_, name, note) for rule_, name, _where in fired)
    fired = fired + tuple(entry for name, lw in lowered.items()
                          for entry in _record(name, code[name], lw))
    return Stage("lowered", {n: lw.program for n, lw in lowered.items()}, fired, {}), lowered


def _lower_all(programs: dict[str, Program]) -> dict[str, Lowered]:
    inputs = {name: pass_inputs(p) for name, p in programs.items()}
    out = {}
    for name, p in programs.items():
        elsewhere = set()
        for other, names in inputs.items():
            if other != name and not (name in DERIVED and other in DERIVED):
                elsewhere |= names
        out[name] = lower(p, frozenset(elsewhere))
    return out


def _record(name: str, before: Program, lw: Lowered):
    """(rule, pass, step) for what lowering did to one pass."""
    kept = {k.step.lhs for k in lw.kernels}
    for st in before.steps:
        if st.lhs not in kept:
            yield ("fuse-elementwise", name, st.lhs)
    for k in lw.kernels:
        if k.inplace:
            yield ("in-place-update", name, k.step.lhs)
        if k.reuse_base:
            yield ("scatter-in-place", name, k.step.lhs)
        if k.block is not None:
            yield ("blocked-rows", name, f"{k.step.lhs} over {k.block}")
    for loop in lw.loops:
        if len(loop) > 1:
            yield ("fuse-loops", name, " + ".join(lw.kernels[n].step.lhs for n in loop))
