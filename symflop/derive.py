"""Everything derived from one component, computed once and cached.

``derive(component)`` runs the staged pipeline (``symflop.rewrite.pipeline``) and
returns a ``Derivation``: every stage's programs and the rules that fired, per
step raw operation tallies of every stage, memory per stage, the save-or-recompute
points of the backward pass, and generated source of every pass printed from
the lowered stage (``symflop.lower``).  Counts, memory and code all name the stage they come
from; by default that is the optimized stage (``reused``), and the equations as
written stay one argument away (``stage="written"``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace

import sympy as sp

from symflop import cache
from symflop.core.model import Component, Fact, Role
from symflop.core.program import label_inputs
from symflop.core.stages import as_written_stage, stage_label, stage_name
from symflop.cost.conventions import Convention, get_convention
from symflop.cost.counting import Counts, Tally, apply_convention, tally_program, total_tally
from symflop.cost.memory import Memory, elements, memory, moved_elements
from symflop.errors import ComponentError, UsageError
from symflop.lower.codegen import Signature, generate
from symflop.lower.compiled import CompiledPass, shapes_of
from symflop.lower.plan import Lowered
from symflop.lower.stage import lower_component
from symflop.rewrite.fused import FusedGradient
from symflop.rewrite.pipeline import Stage, run

DEFAULT_STAGE = "reused"


@dataclass(frozen=True)
class Tradeoff:
    """One way to split the work between forward and backward: what the backward
    costs (default convention) and what the forward must save for it (elements)."""

    label: str
    flops: sp.Expr
    saved: sp.Expr
    tensors: tuple[str, ...]


@dataclass
class Derivation:
    component: str
    dims: tuple[str, ...]
    stages: tuple[Stage, ...]
    tallies: dict[tuple[str, str], tuple[Tally, ...]]
    memories: dict[str, Memory]
    sources: dict[str, tuple[str, Signature, dict]]
    wrt: tuple[str, ...] = ()
    tradeoffs: tuple[Tradeoff, ...] = ()
    lowered: dict[str, Lowered] = field(default_factory=dict)
    _compiled: dict = field(default_factory=dict, repr=False)
    _count_fns: dict = field(default_factory=dict, repr=False)

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_compiled"], state["_count_fns"] = {}, {}
        return state

    # -- stages ---------------------------------------------------------------------------
    def stage(self, name: str = DEFAULT_STAGE) -> Stage:
        name = stage_name(name)
        return next(s for s in self.stages if s.name == name)

    @property
    def programs(self):
        return self.stage().programs

    @property
    def fused(self) -> dict[str, FusedGradient]:
        return self.stage().fused

    def fused_at(self, stage: str) -> dict[str, FusedGradient]:
        """The closed forms a stage implies: as written, those reverse mode derives; at the
        code stage, the optimized ones (stabilization rewrites how, not what)."""
        name = {"written": "differentiated", "stabilized": "reused",
                "lowered": "reused"}.get(stage_name(stage), stage_name(stage))
        return self.stage(name).fused

    @property
    def memory(self) -> Memory:
        return self.memories[DEFAULT_STAGE]

    def memory_at(self, stage: str) -> Memory:
        return self.memories[stage_name(stage)]

    @property
    def passes(self) -> tuple[str, ...]:
        return tuple(self.programs)

    def _repr_latex_(self) -> str:
        """Each pass's FLOPs, optimized and as written, and the memory (Jupyter)."""
        rows = [r"\text{pass} & \text{FLOPs (optimized)} & \text{as written}\\ \hline"]
        for p in self.passes:
            got = self.counts(p).total
            written = self.counts(p, stage="written").total
            rows.append(rf"\text{{{p}}} & {sp.latex(got)} & {sp.latex(written)}\\")
        m = self.memory
        rows.append(r"\hline")
        for what in ("parameters", "state", "saved"):
            rows.append(rf"\text{{{what} (bytes, float32)}} & {sp.latex(m.bytes(what))} & \\")
        return r"$$\begin{array}{lll}" + "\n".join(rows) + r"\end{array}$$"

    # -- counts ---------------------------------------------------------------------------
    def counts(self, pass_name: str, convention: str | Convention = "default",
               stage: str = DEFAULT_STAGE) -> Counts:
        conv = get_convention(convention)
        return apply_convention(total_tally(list(self._tallies(pass_name, stage))), conv)

    def step_counts(self, pass_name: str, convention: str | Convention = "default",
                    stage: str = DEFAULT_STAGE):
        conv = get_convention(convention)
        self._check_pass(pass_name)
        steps = self.stage(self._resolve(pass_name, stage)).programs[pass_name].steps
        return [(st, apply_convention(t, conv))
                for st, t in zip(steps, self._tallies(pass_name, stage))]

    def count_function(self, pass_name: str, convention: str | Convention = "default",
                       stage: str = DEFAULT_STAGE):
        """A plain Python function of the sizes (keyword arguments) giving total FLOPs.

        It needs the sizes its polynomial uses and ignores any other."""
        conv = get_convention(convention)
        key = (pass_name, conv.key, self._resolve(pass_name, stage))
        fn = self._count_fns.get(key)
        if fn is None:
            fn = compile_polynomial(self.counts(pass_name, conv, stage).total)
            self._count_fns[key] = fn
        return fn

    def _tallies(self, pass_name: str, stage: str) -> tuple[Tally, ...]:
        self._check_pass(pass_name)
        return self.tallies[self._resolve(pass_name, stage), pass_name]

    def _resolve(self, pass_name: str, stage: str) -> str:
        """A stage by name; "written" for a derived pass means as reverse mode derived it."""
        name = stage_name(stage)
        if pass_name not in self.stage(name).programs:
            return as_written_stage(self, pass_name)
        return name

    # -- code -----------------------------------------------------------------------------
    def compiled(self, pass_name: str) -> CompiledPass:
        """The generated code of a pass (printed from the lowered stage)."""
        self._check_pass(pass_name)
        hit = self._compiled.get(pass_name)
        if hit is None:
            source, sig, shapes = self.sources[pass_name]
            program = self.lowered[pass_name].program if pass_name in self.lowered else None
            results = {n: tuple(str(s) for s in program.tensors[n].shape)
                       for n in sig.outputs} if program is not None else {}
            tensors = program.tensors if program is not None else {}
            nonfinite_ok = frozenset(n for n in sig.inputs if n in tensors
                                     and tensors[n].has(Fact.MAY_BE_NONFINITE))
            carried = frozenset(n for n in sig.outputs if n in tensors
                                and tensors[n].role is Role.INTERMEDIATE)
            hit = CompiledPass(func_name(pass_name), source, sig, shapes,
                               result_shapes=results, nonfinite_ok=nonfinite_ok,
                               carried=carried)
            self._compiled[pass_name] = hit
        return hit

    def _check_pass(self, pass_name: str) -> None:
        if pass_name not in self.programs:
            raise UsageError(f"{self.component} has no pass {pass_name!r} "
                             f"(passes: {', '.join(self.programs)})")


def compile_polynomial(poly: sp.Expr):
    """``poly`` as a Python function of keyword sizes: evaluated without SymPy."""
    names = sorted(s.name for s in poly.free_symbols)
    head = ("lambda *, " + ", ".join(names) + ", **_") if names else "lambda **_"
    return eval(f"{head}: {sp.pycode(poly)}")  # noqa: S307 - printed from a SymPy polynomial


def func_name(pass_name: str) -> str:
    return pass_name.replace("-", "_").replace(".", "_")


def fingerprint(c: Component) -> str:
    """Digest of everything the author wrote; any change gives a new cache key."""
    h = hashlib.sha256(cache.engine_fingerprint().encode())
    for t in c.tensors.values():
        h.update(repr((t.name, tuple(map(sp.srepr, t.shape)), t.role.value,
                       sorted(f.value for f in t.facts))).encode())
    for p in c.passes.values():
        h.update(p.name.encode())
        for a in p.assignments:
            h.update(repr((a.lhs.name, tuple(map(sp.srepr, a.idx)), sp.srepr(a.rhs))).encode())
    h.update(repr((c.differentiate, c.wrt, c.grad_pass, sorted(c.defaults.items()))).encode())
    h.update(repr(sorted((n, sp.srepr(e)) for n, e in c.shared.items())).encode())
    return h.hexdigest()


def derive(c: Component, use_cache: bool = True) -> Derivation:
    if isinstance(c, Component) and not c.passes:
        raise ComponentError(f"component {c.name!r} has no equations: add one with "
                             "c.assign(PASS, lhs, rhs)")
    key = fingerprint(c)
    if use_cache:
        hit = cache.load(c.name, key)
        if isinstance(hit, Derivation):
            return hit
    try:
        d = _derive(c)
    except RecursionError:  # the engine walks expressions recursively: refuse, in one line
        raise ComponentError(
            f"component {c.name!r}: an expression is nested too deeply for the engine "
            f"(about {_longest_chain(c)} terms in one sum or product); split it into "
            "several assignments") from None
    if use_cache:
        cache.store(c.name, key, d)
    return d


def _longest_chain(c: Component) -> int:
    """The most arguments of one sum or product in the component's equations."""
    return max((len(e.args) for p in c.passes.values() for a in p.assignments
                for e in sp.preorder_traversal(a.rhs) if isinstance(e, (sp.Add, sp.Mul))),
               default=0)


def _derive(c: Component) -> Derivation:
    stages = run(c)
    lowered_stage, lowered = lower_component(c, stages)
    stages = stages + (lowered_stage,)
    tallies = {(s.name, name): tuple(tally_program(p))
               for s in stages for name, p in s.programs.items()}
    by_name = {s.name: s for s in stages}

    def backward_of(s):
        # the written equations hold no backward pass: theirs is reverse mode's, unchanged
        # (the count of "written" reads it too): what it reads is saved as written
        if "backward" in s.programs or s.name != "written" or "differentiated" not in by_name:
            return s.programs.get("backward")
        return by_name["differentiated"].programs.get("backward")
    memories = {s.name: memory(c.tensors, s.programs, backward_of(s), c.wrt) for s in stages}
    memories["lowered"] = replace(memories["lowered"], moved=tuple(
        (name, moved_elements(lw.program, lw.loops)) for name, lw in lowered.items()),
        temporaries=tuple((name, sp.Add(*[elements(lw.program.tensors[t])
                                          for t in lw.temporaries]))
                          for name, lw in lowered.items()))
    sources = {}
    for name, lw in lowered.items():
        p = lw.program
        source, sig = generate(lw, func_name(name), stage_label(lowered_stage.name))
        sources[name] = (source, sig, shapes_of(p.tensors, sig.inputs, label_inputs(p)))
    return Derivation(c.name, tuple(sorted(c.dims)), stages, tallies, memories, sources,
                      tuple(c.wrt), _tradeoffs(c, stages, memories), lowered)


def _tradeoffs(c: Component, stages, memories) -> tuple[Tradeoff, ...]:
    """The optimized backward (reading what the forward named) and the one that
    recomputes the forward's large intermediates from its inputs instead."""
    reused = next(s for s in stages if s.name == DEFAULT_STAGE)
    if "backward" not in reused.programs:
        return ()
    points = [("reuse", reused.programs["backward"], memories[DEFAULT_STAGE])]
    other = reused.recompute.get("backward")  # computed once, by the pipeline
    if other is not None:
        points.append(("recompute", other, memory(c.tensors, {"backward": other}, other,
                                                    c.wrt)))
    out = []
    for label, program, mem in points:
        flops = apply_convention(total_tally(tally_program(program)),
                                 get_convention("default")).total
        out.append(Tradeoff(label, flops, mem.elements("saved"),
                            tuple(n for n, _ in mem.saved)))
    return tuple(out)
