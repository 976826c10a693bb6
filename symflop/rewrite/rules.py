"""Rules as data: named rewrites registered by phase, and the record of what fired.

A ``Rule`` is a name, the phases it belongs to (``differentiate``, ``simplify``,
``reuse``, ``stabilize``), what it works on and the function that does it:

* ``expr``: one step's right-hand side in, an equivalent one out (or ``None``);
* ``program``: a whole program in, a rewritten one out (or ``None``); in the reuse
  phase these are the normalizations applied after every change;
* ``moves``: a whole program in, candidate rewrites out, as (where, function)
  pairs; the reuse phase's search (``symflop.rewrite.search.optimize``) keeps
  the cheapest improving one, again and again;
* ``kernel``: in the ``lower`` phase (``symflop.lower``), a decision about how one
  step runs (in blocks, in place), recorded like a rewrite.

Modules of this package register their rules with ``@rule``; the pipeline
(``symflop.rewrite.pipeline``) is the only place that knows the order of the
phases, and it applies each phase's rules in registration order.  Adding
a rule is one decorated function in the module of its phase.

A rule marked ``cost_driven`` proposes a form that is equivalent but not always
cheaper; the phase keeps it only where the counter, at concrete sizes where every
size is large (``symflop.cost.counting.numeric_sizes``), says it costs less.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import sympy as sp

from symflop.core.model import Tensor
from symflop.core.program import Program, Step, to_steps
from symflop.cost.counting import step_cost, tensor_names
from symflop.rewrite.facts import Facts

PHASES = ("differentiate", "simplify", "reuse", "stabilize", "lower")


@dataclass(frozen=True)
class Rule:
    name: str
    phases: tuple[str, ...]
    on: str                  # "expr", "program" or "moves" (see the module docstring)
    apply: Callable
    doc: str
    cost_driven: bool = False


REGISTRY: list[Rule] = []


def rule(name: str, phases: str | tuple[str, ...], on: str = "expr",
         cost_driven: bool = False):
    """Register the decorated function as a rule of ``phases``; the first sentence of
    its docstring is the rule's description in stage reports."""
    phases = (phases,) if isinstance(phases, str) else tuple(phases)
    if not set(phases) <= set(PHASES) or on not in ("expr", "program", "moves", "kernel"):
        raise ValueError(f"rule {name!r}: unknown phase in {phases} or kind {on!r}")

    def register(fn: Callable) -> Callable:
        if any(r.name == name for r in REGISTRY):
            raise ValueError(f"rule {name!r} registered twice")
        doc = " ".join((fn.__doc__ or name).split("\n\n")[0].split())
        REGISTRY.append(Rule(name, phases, on, fn, doc, cost_driven))
        return fn
    return register


def rules(phase: str, on: str | None = None) -> list[Rule]:
    """The rules of ``phase`` (of one kind), in the order they were registered."""
    return [r for r in REGISTRY if phase in r.phases and (on is None or r.on == on)]


def describe(name: str) -> str:
    """A rule's one-line description (for reports)."""
    return next((r.doc for r in REGISTRY if r.name == name), name)


@dataclass
class Context:
    """What rules may read: the program's tensors, facts derived from the forward pass,
    the sizes at which costs are compared, and the log of what fired."""

    tensors: dict[str, Tensor]
    facts: Facts
    sizes: dict
    keep: frozenset[str] = frozenset()
    forward: frozenset[str] = frozenset()     # tensors the forward pass computes
    fired: list[tuple[str, str]] = field(default_factory=list)
    assumptions: set[str] = field(default_factory=set)
    state: dict = field(default_factory=dict)  # what a phase carries from pass to pass
    skip_definitions: frozenset[str] = frozenset()  # forward tensors not to read back
    named: frozenset[str] = frozenset()  # tensors the author named: kept unless it pays
    shared: tuple[tuple[str, sp.Expr], ...] = ()  # the author's names of shared terms

    def note(self, rule_name: str, where: str) -> None:
        entry = (rule_name, where)
        if entry not in self.fired:
            self.fired.append(entry)


def steps_cost(steps, names: frozenset[str], sizes: dict) -> int:
    return sum(step_cost(st, names, sizes) for st in steps)


def rewrite_steps(program: Program, phase: str, ctx: Context,
                  skip: frozenset[str] = frozenset(), only: frozenset[str] | None = None
                  ) -> Program:
    """Apply the expression rules of ``phase`` to every step, in registration order.

    A step that runs against a one-hot tensor's labels or reduces by a maximum is left
    as it is; a cost-driven rule's result is kept only where the step costs less."""
    tensors = dict(program.tensors)
    ctx.tensors = tensors
    out: list[Step] = []
    for st in program.steps:
        if st.gather or st.scatter is not None or st.reduce_op != "sum":
            out.append(st)
            continue
        rhs, current = st.rhs(), [st]
        for r in rules(phase, "expr"):
            if r.name in skip or (only is not None and r.name not in only):
                continue
            new = r.apply(rhs, ctx)
            if new is None or new == rhs:
                continue
            trial = dict(tensors)
            candidate = to_steps(st.lhs, st.idx, new, trial)
            if r.cost_driven:
                names = tensor_names(trial)
                if steps_cost(candidate, names, ctx.sizes) >= steps_cost(current, names,
                                                                          ctx.sizes):
                    continue
            tensors.update(trial)
            rhs, current = new, candidate
            ctx.note(r.name, st.lhs)
        out.extend(current)
    return Program(program.name, out, tensors)
