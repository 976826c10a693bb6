"""The reuse phase's search: normalize, then take the cheapest improving move, again
and again.

The normalizations are the reuse phase's rules of kind ``program`` (they never add
work) and the moves its rules of kind ``moves`` (``symflop.rewrite.reuse``); both are
found through the registry (``symflop.rewrite.rules``), so this module imports no rule
module.  A move is kept only where the program gets cheaper.

A program's cost is (FLOPs, elements it reads from the forward pass, steps) at
the sizes of ``symflop.cost.counting.numeric_sizes``, compared in that order.
"""

from __future__ import annotations

from collections.abc import Iterator

from symflop.core.model import Role
from symflop.core.program import Program, label_inputs
from symflop.cost.counting import program_names, step_cost
from symflop.cost.memory import elements
from symflop.rewrite.edits import plain_indices, propagate, reads
from symflop.rewrite.rules import Context, rule, rules

MAX_ROUNDS = 40
MAX_TRIALS = 400  # moves tried per program (the catalogue stays well below: a test checks)


def normalize(program: Program, ctx: Context) -> Program:
    """The reuse phase's normalizations (never more work), in registration order."""
    program = plain_indices(propagate(program, ctx))
    for r in rules("reuse", "program"):
        out = r.apply(program, ctx)
        if out is not None:
            program = out
    return program


def cost(program: Program, ctx: Context) -> tuple[int, int, int]:
    """(FLOPs, elements read from the forward pass, steps the engine made): a step the
    author named is never dropped only to save a step."""
    names = program_names(program)
    flops = sum(step_cost(st, names, ctx.sizes) for st in program.steps)
    made = sum(1 for st in program.steps if st.lhs not in ctx.named)
    return flops, saved_elements(program, ctx), made


def saved_elements(program: Program, ctx: Context) -> int:
    """Elements of the forward pass's tensors this program reads (what must be saved)."""
    made = {st.lhs for st in program.steps}
    as_labels = label_inputs(program)
    total = 0
    seen: set[str] = set()
    for st in program.steps:
        for name in reads(st, program.tensors):
            if name in made or name in seen or name not in ctx.forward:
                continue
            seen.add(name)
            t = program.tensors[name]
            if t.role in (Role.PARAMETER, Role.STATE, Role.HYPER):
                continue
            total += int(elements(t, name in as_labels).xreplace(ctx.sizes))
    return total


def optimize(program: Program, ctx: Context) -> Program:
    """Normalize, then take the cheapest improving move until none improves (or the
    search has tried ``MAX_TRIALS`` moves: a bound that keeps large components fast and
    the result the same on every machine)."""
    program = normalize(program, ctx)
    best = cost(program, ctx)
    trials = 0
    for _ in range(MAX_ROUNDS):
        choice = None
        for label, move in _moves(program, ctx):
            trials += 1
            if trials > MAX_TRIALS:
                ctx.note("search-bound", f"{MAX_TRIALS} moves tried")
                break
            trial_ctx = _trial(ctx)
            out = move(trial_ctx)
            if out is None:
                continue
            out = normalize(out, trial_ctx)
            c = cost(out, ctx)
            if c < best and (choice is None or c < choice[0]):
                choice = (c, out, label, trial_ctx)
        if choice is None:
            return program
        best, program, label, trial_ctx = choice
        for entry in trial_ctx.fired:
            ctx.note(*entry)
        ctx.note(*label)
    return program


def _trial(ctx: Context) -> Context:
    return Context(ctx.tensors, ctx.facts, ctx.sizes, ctx.keep, ctx.forward, [],
                   ctx.assumptions, ctx.state, ctx.skip_definitions, ctx.named, ctx.shared)


def _moves(program: Program, ctx: Context) -> Iterator:
    for r in rules("reuse", "moves"):
        for where, move in r.apply(program, ctx):
            yield (r.name, where), move


@rule("search-bound", "reuse", on="moves")
def search_bound(program: Program, ctx: Context) -> Iterator:
    """The search stopped after its bound on moves tried; a cheaper program may exist."""
    return iter(())
