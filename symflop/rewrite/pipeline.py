"""The staged pipeline: the one place that knows the order of the phases.

    written         the author's passes in normal form (one reduction per step)
    differentiated  + ``backward`` (reverse mode) and ``gradient`` (its closed forms)
    simplified      simplify rules, with facts derived from the forward pass; the
                    backward is derived again from the simplified forward
    reused          reuse: forward tensors read where that is cheaper, work shared
                    between steps, intermediates inlined (the optimized program)
    stabilized      stability rewrites: the program the generated code runs

Every stage keeps its programs, the rules that fired (rule, pass, step) and the
closed-form gradients it implies; nothing is thrown away.  The reused and stabilized
stages also keep the derived passes at the recompute point (``recompute_point``),
computed once here for the lowering and the save-or-recompute tradeoffs to read.  The
stages' names live in ``symflop.core.stages``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

# A plain import, so it runs before the rule modules below: the search's own rule
# (search-bound) leads the reuse phase's moves, as it always has.
import symflop.rewrite.search as search
from symflop.core.functions import draws_random
from symflop.core.model import Component, Role
from symflop.core.program import Program, normalize, ref_name, tensor_refs
from symflop.core.stages import DERIVED
from symflop.cost.counting import numeric_sizes
from symflop.errors import UsageError
from symflop.rewrite import (  # noqa: F401 - importing registers their rules, in this order
    algebra,
    reuse,
    specialize,
    stability,
)
from symflop.rewrite.autodiff import backward, grad_name
from symflop.rewrite.edits import propagate, reads
from symflop.rewrite.facts import Facts, derive_facts
from symflop.rewrite.fused import FusedGradient, closed_forms, fuse, fused_program
from symflop.rewrite.rules import Context, rewrite_steps, rules

FINAL = frozenset({"affine-form"})  # reuse rules applied once the search is done


@dataclass(frozen=True)
class Stage:
    name: str
    programs: dict[str, Program]
    fired: tuple[tuple[str, str, str], ...]       # (rule, pass, step)
    fused: dict[str, FusedGradient]
    assumptions: tuple[str, ...] = ()
    # the derived passes at the recompute point, in this stage's form (``recompute_point``;
    # reused: as the search left them, stabilized: as the code runs them); empty if none
    recompute: dict[str, Program] = field(default_factory=dict)


@dataclass(frozen=True)
class Plan:
    """What the pipeline needs to know about a component besides its equations."""

    forward: str | None             # the pass that computes what is differentiated
    keep: dict[str, frozenset[str]]  # per pass: tensors it must still compute
    sizes: dict                      # concrete sizes for cost comparisons


def run(c: Component, skip: frozenset[str] = frozenset()) -> tuple[Stage, ...]:
    """Every stage of ``c``; ``skip`` names rules to leave out (e.g. to report what
    recomputing instead of reusing costs)."""
    written = {name: normalize(c, name) for name in c.passes}
    plan = _plan(c, written)
    stages = [Stage("written", written, (), {})]
    if plan.forward is None:
        differentiated = dict(written)
        stages.append(Stage("differentiated", differentiated, (), {}))
        simplified, fired_s, _ = _simplify_passes(c, plan, differentiated, None, skip)
        stages.append(Stage("simplified", simplified, fired_s, {}))
        reused, fired_r = _reuse_passes(c, plan, simplified, skip)
        stages.append(Stage("reused", reused, fired_r, {}))
        stages.append(_stabilize(c, plan, reused))
        return tuple(stages)

    fwd = written[plan.forward]
    ctx = _context(c, plan, fwd, Facts(), plan.forward)
    prepared = _apply_program_rules("differentiate", fwd, ctx)
    bwd = backward(c, prepared)
    fused = fuse(c, prepared, bwd)
    differentiated = {**written, "backward": bwd, "gradient": fused_program(fused, bwd)}
    stages.append(Stage("differentiated", differentiated, _tag(ctx.fired, plan.forward),
                        fused))

    simplified, fired_s, assumptions = _simplify_passes(c, plan, differentiated, plan.forward,
                                                         skip)
    named = frozenset(c.tensors)
    stages.append(Stage("simplified", simplified, fired_s,
                        closed_forms(simplified["gradient"], c.wrt, assumptions,
                                     simplified[plan.forward], named), assumptions))
    reused, fired_r = _reuse_passes(c, plan, simplified, skip)
    stages.append(Stage("reused", reused, fired_r,
                        closed_forms(reused["gradient"], c.wrt, assumptions,
                                     reused[plan.forward], named), assumptions))
    stages.append(_stabilize(c, plan, reused))
    return _with_recompute_points(c, plan, tuple(stages))


def _plan(c: Component, written: dict[str, Program]) -> Plan:
    forward = None
    if c.differentiate is not None:
        forward = c.grad_pass or _pass_computing(c, written, c.differentiate)
        if forward not in written:
            raise UsageError(f"{c.name}: gradient pass {forward!r} does not exist")
    kept_roles = (Role.OUTPUT, Role.STATE, Role.PARAMETER)
    keep = {}
    read_elsewhere: dict[str, set[str]] = {}
    for name, p in written.items():
        for st in p.steps:
            read_elsewhere.setdefault(name, set()).update(reads(st, p.tensors))
    for name, p in written.items():
        assigned = {st.lhs for st in p.steps}
        others = set().union(*(r for n, r in read_elsewhere.items() if n != name))
        if name == forward:
            others |= set(c.tensors)  # the backward may read any tensor the author named
        keep[name] = frozenset(n for n in assigned if n in others
                               or c.tensors.get(n) is not None
                               and c.tensors[n].role in kept_roles)
    if forward is not None:
        wrt = frozenset(grad_name(w) for w in c.wrt)
        keep.update({d: wrt for d in DERIVED})
    return Plan(forward, keep, numeric_sizes(c.dims))


def _pass_computing(c: Component, programs: dict[str, Program], name: str) -> str:
    for pname, p in programs.items():
        if any(st.lhs == name for st in p.steps):
            return pname
    raise UsageError(f"{c.name}: no pass computes {name!r}")


def _context(c: Component, plan: Plan, program: Program, facts: Facts, pass_name: str,
             forward: frozenset[str] = frozenset()) -> Context:
    return Context(dict(program.tensors), facts, plan.sizes,
                   plan.keep.get(pass_name, frozenset()), forward, named=frozenset(c.tensors),
                   shared=tuple(c.shared.items()))


def _tag(fired, pass_name: str) -> tuple[tuple[str, str, str], ...]:
    return tuple((r, pass_name, where) for r, where in fired)


def _apply_program_rules(phase: str, program: Program, ctx: Context,
                         skip: frozenset[str] = frozenset()) -> Program:
    for r in rules(phase, "program"):
        if r.name in skip:
            continue
        out = r.apply(program, ctx)
        if out is not None:
            program = out
    return program


def _algebra(program: Program, ctx: Context, skip) -> Program:
    return propagate(rewrite_steps(program, "simplify", ctx, skip), ctx)


def _simplify_passes(c: Component, plan: Plan, programs: dict[str, Program],
                     forward: str | None, skip):
    """Simplify every pass; the backward and its closed forms are derived again from the
    simplified forward, so that simplifications of the loss carry into its gradient."""
    out: dict[str, Program] = {}
    fired: list = []
    assumptions: set[str] = set()
    facts = Facts()
    for name, p in programs.items():
        if name in DERIVED:
            continue
        ctx = _context(c, plan, p, derive_facts(p) if name == forward else Facts(), name)
        out[name] = _algebra(p, ctx, skip)
        fired += _tag(ctx.fired, name)
        assumptions |= ctx.assumptions
        if name == forward:
            facts = derive_facts(out[name])
    if forward is not None:
        fwd = out[forward]
        bwd = backward(c, fwd)
        made = frozenset(fwd.tensors)
        ctx = _context(c, plan, bwd, facts, "backward", made)
        out["backward"] = _algebra(bwd, ctx, skip)
        fired += _tag(ctx.fired, "backward")
        assumptions |= ctx.assumptions
        grad = fused_program(fuse(c, fwd, bwd), bwd)
        ctx = _context(c, plan, grad, facts, "gradient", made)
        out["gradient"] = _algebra(grad, ctx, skip)
        fired += _tag(ctx.fired, "gradient")
        assumptions |= ctx.assumptions
    for name, p in out.items():  # one-hot work at the labels, once the algebra is done
        ctx = _context(c, plan, p, Facts(), name)
        out[name] = _apply_program_rules("simplify", p, ctx, skip)
        fired += _tag(ctx.fired, name)
    return out, tuple(fired), tuple(sorted(assumptions))


def _reuse_passes(c: Component, plan: Plan, programs: dict[str, Program], skip):
    out: dict[str, Program] = {}
    fired: list = []
    facts = Facts()
    made: frozenset[str] = frozenset()
    for name, p in programs.items():
        derived = name in DERIVED
        if derived and plan.forward in out:  # it may read any tensor the forward computes
            p = Program(p.name, p.steps, {**out[plan.forward].tensors, **p.tensors})
        ctx = _context(c, plan, p, facts if derived else Facts(), name,
                       made if derived else frozenset())
        out[name] = _reuse(p, ctx, skip, derived)
        fired += _tag(ctx.fired, name)
        if name == plan.forward:
            facts = forward_facts(programs[name], out[name])
            made = frozenset(out[name].tensors)
    return out, tuple(fired)


def _reuse(program: Program, ctx: Context, skip, derived: bool) -> Program:
    """The reuse phase on one pass: its rules on each step (a backward pass only reads
    the forward's tensors), the search over moves, then the final rules."""
    if derived:
        program = rewrite_steps(program, "reuse", ctx, skip | FINAL)
    program = search.optimize(program, ctx)
    final = propagate(rewrite_steps(program, "reuse", ctx, skip, only=FINAL), ctx)
    if final.steps != program.steps:  # a collected body may make another move pay
        final = propagate(rewrite_steps(search.optimize(final, ctx), "reuse", ctx, skip,
                                        only=FINAL), ctx)
    return final


def forward_facts(simplified: Program, optimized: Program) -> Facts:
    """Facts the backward may use: those of the simplified forward (its definitions are
    written as the author wrote them, before common subexpressions were taken out),
    about tensors the optimized forward still computes, plus those of the optimized one."""
    computed = {st.lhs for st in optimized.steps}
    facts = derive_facts(simplified)
    extra = derive_facts(optimized)
    known = [k for k in facts.known if k.name is None or k.name in computed]
    definitions = [d for d in facts.definitions if d.name in computed]
    known += [k for k in extra.known if k not in known]
    definitions += [d for d in extra.definitions if d not in definitions]
    return Facts(known, definitions)


def _stabilize(c: Component, plan: Plan, programs: dict[str, Program]) -> Stage:
    out: dict[str, Program] = {}
    fired: list = []
    state: dict = {}
    for name, p in programs.items():
        ctx = _context(c, plan, p, Facts(), name)
        ctx.state = state
        out[name] = _apply_program_rules("stabilize", p, ctx)
        fired += _tag(ctx.fired, name)
    return Stage("stabilized", out, tuple(fired), {})


def recompute_point(c: Component, stages: tuple[Stage, ...],
                    derived: str = "backward") -> Program | None:
    """The optimized backward (or ``derived``, another derived pass) rewritten to
    recompute, from the forward's inputs and its smaller tensors, every forward
    intermediate as large as the largest input that it reads (BatchNorm's ``xhat`` from
    ``x``, ``mu`` and ``var``); None if it reads none.  ``run`` computes it once and keeps
    it in the stages (``Stage.recompute``)."""
    return _recompute_point(c, _plan(c, stages[0].programs), stages, derived)


def _recompute_point(c: Component, plan: Plan, stages: tuple[Stage, ...],
                     derived: str) -> Program | None:
    by_name = {s.name: s for s in stages}
    if plan.forward is None or derived not in by_name["reused"].programs:
        return None
    fwd = by_name["reused"].programs[plan.forward]
    facts = forward_facts(by_name["simplified"].programs[plan.forward], fwd)
    defs = {d.name: d for d in facts.definitions}
    largest = max((_elements(t, plan.sizes) for t in c.tensors.values()
                   if t.role is Role.INPUT), default=0)

    def large(name: str) -> bool:
        t = fwd.tensors.get(name)
        return (name in defs and t is not None and t.role is Role.INTERMEDIATE
                and _elements(t, plan.sizes) >= largest and not draws_random(defs[name].body))

    program = by_name["reused"].programs[derived]
    recomputed: set[str] = set()
    while True:
        targets = {n for st in program.steps for n in reads(st, program.tensors) if large(n)}
        if not targets:
            break
        recomputed |= targets
        steps = []
        for st in program.steps:
            refs = [r for r in tensor_refs(st.body, program.tensors) if ref_name(r) in targets]
            mapping = {r: _at(defs[ref_name(r)], r) for r in refs}
            steps.append(replace(st, body=st.body.xreplace(mapping)) if mapping else st)
        program = Program(program.name, steps, program.tensors)
    if not recomputed:
        return None
    ctx = _context(c, plan, program, facts, derived, frozenset(fwd.tensors))
    ctx.skip_definitions = frozenset(recomputed)
    return _reuse(program, ctx, frozenset(), derived=True)


def _with_recompute_points(c: Component, plan: Plan,
                           stages: tuple[Stage, ...]) -> tuple[Stage, ...]:
    """``stages`` with the derived passes at the recompute point: in the reused stage as
    the search left them, in the stabilized one stabilized like the code stage's (both
    empty when the backward reads no large forward intermediate)."""
    found: dict[str, Program] = {}
    for name in DERIVED:
        point = _recompute_point(c, plan, stages, name)
        if point is not None:
            found[name] = point
    if not found:
        return stages
    reused, stabilized = stages[-2:]
    return (*stages[:-2], replace(reused, recompute=found),
            replace(stabilized, recompute=_stabilize(c, plan, found).programs))


def _elements(t, sizes: dict) -> int:
    n = 1
    for s in t.shape:
        n *= int(s.xreplace(sizes))
    return n


def _at(d, ref):
    return d.body.xreplace(dict(zip(d.idx, ref.indices))) if d.idx else d.body
