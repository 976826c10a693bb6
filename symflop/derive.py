"""Everything derived from one component, computed once and cached.

``derive(component)`` returns a ``Derivation``: the normalized passes, the
derived backward pass and fused gradients, per-step raw operation tallies,
memory, and generated (stabilized) source for every pass.  Counts under a
convention, numeric count functions and callables are cheap views on it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import sympy as sp

from symflop import cache
from symflop.core.model import Component, Role
from symflop.core.program import Program, normalize, split_step
from symflop.cost.conventions import Convention, get_convention
from symflop.cost.counting import Counts, Tally, apply_convention, tally_program, total_tally
from symflop.cost.memory import Memory, memory
from symflop.errors import UsageError
from symflop.lower.codegen import Signature, generate
from symflop.lower.compiled import CompiledPass, shapes_of
from symflop.rewrite.autodiff import backward, grad_name
from symflop.rewrite.fused import FusedGradient, fuse
from symflop.rewrite.stability import rewrite_log_steps, stabilize


@dataclass
class Derivation:
    component: str
    dims: tuple[str, ...]
    programs: dict[str, Program]
    fused: dict[str, FusedGradient]
    tallies: dict[tuple[str, bool], tuple[Tally, ...]]
    memory: Memory
    sources: dict[str, tuple[str, Signature, dict]]
    _compiled: dict = field(default_factory=dict, repr=False)
    _count_fns: dict = field(default_factory=dict, repr=False)

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_compiled"], state["_count_fns"] = {}, {}
        return state

    @property
    def passes(self) -> tuple[str, ...]:
        return tuple(self.programs)

    def counts(self, pass_name: str, convention: str | Convention = "default") -> Counts:
        conv = get_convention(convention)
        self._check_pass(pass_name)
        return apply_convention(total_tally(list(self.tallies[pass_name, conv.share_across_steps])),
                                conv)

    def step_counts(self, pass_name: str, convention: str | Convention = "default"):
        conv = get_convention(convention)
        self._check_pass(pass_name)
        tallies = self.tallies[pass_name, conv.share_across_steps]
        return [(st, apply_convention(t, conv))
                for st, t in zip(self.programs[pass_name].steps, tallies)]

    def count_function(self, pass_name: str, convention: str | Convention = "default"):
        """A plain Python function of the sizes (keyword arguments) giving total FLOPs.

        It needs the sizes its polynomial uses and ignores any other."""
        conv = get_convention(convention)
        key = (pass_name, conv.key)
        fn = self._count_fns.get(key)
        if fn is None:
            fn = compile_polynomial(self.counts(pass_name, conv).total)
            self._count_fns[key] = fn
        return fn

    def compiled(self, pass_name: str) -> CompiledPass:
        self._check_pass(pass_name)
        hit = self._compiled.get(pass_name)
        if hit is None:
            source, sig, shapes = self.sources[pass_name]
            hit = CompiledPass(_func_name(pass_name), source, sig, shapes)
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


def _func_name(pass_name: str) -> str:
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
    return h.hexdigest()


def derive(c: Component, use_cache: bool = True) -> Derivation:
    key = fingerprint(c)
    if use_cache:
        hit = cache.load(c.name, key)
        if isinstance(hit, Derivation):
            return hit
    d = _derive(c)
    if use_cache:
        cache.store(c.name, key, d)
    return d


def _derive(c: Component) -> Derivation:
    programs = {name: normalize(c, name) for name in c.passes}
    fused: dict[str, FusedGradient] = {}
    bwd = None
    if c.differentiate is not None:
        fwd_name = c.grad_pass or _pass_computing(c, programs, c.differentiate)
        if fwd_name not in programs:
            raise UsageError(f"{c.name}: gradient pass {fwd_name!r} does not exist")
        stable_fwd = rewrite_log_steps(programs[fwd_name])
        bwd = backward(c, stable_fwd)
        programs["backward"] = bwd
        fused = fuse(c, stable_fwd, bwd)
        programs["gradient"] = _fused_program(fused, bwd)
    tallies = {(name, share): tuple(tally_program(p, share))
               for name, p in programs.items() for share in (False, True)}
    mem = memory(c.tensors, programs, bwd, c.wrt)
    sources = _sources(c, programs)
    return Derivation(c.name, tuple(sorted(c.dims)), programs, fused, tallies, mem, sources)


def _pass_computing(c: Component, programs: dict[str, Program], name: str) -> str:
    for pname, p in programs.items():
        if any(st.lhs == name for st in p.steps):
            return pname
    raise UsageError(f"{c.name}: no pass computes {name!r}")


def _fused_program(fused: dict[str, FusedGradient], bwd: Program) -> Program:
    tensors = dict(bwd.tensors)
    steps = []
    for f in fused.values():
        steps.extend(split_step(f.name, f.idx, f.expr, tensors, suffix="part"))
    return Program("gradient", steps, tensors)


def _sources(c: Component, programs: dict[str, Program]) -> dict:
    """Stabilized source of every pass; later passes see the forward's rewrites."""
    out = {}
    replaced: dict[str, str] = {}
    tensors: dict = {}
    outputs = {n for n, t in c.tensors.items() if t.role in (Role.OUTPUT, Role.STATE,
                                                             Role.PARAMETER)}
    outputs |= {grad_name(w) for w in c.wrt}
    for name, p in programs.items():
        tensors.update(p.tensors)
        stable, replaced = stabilize(Program(p.name, p.steps, dict(tensors)), outputs, replaced)
        tensors.update(stable.tensors)
        source, sig = generate(stable, _func_name(name))
        out[name] = (source, sig, shapes_of(stable.tensors, sig.inputs))
    return out
