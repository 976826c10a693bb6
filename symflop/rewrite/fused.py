"""Fused closed-form gradients: a gradient program substituted into one expression.

``fuse`` builds the closed forms from the derived backward pass (the
``gradient`` pass of the differentiated stage): adjoints and the intermediates the
engine introduced are inlined; tensors the author named in the forward pass
(``mu``, ``xhat``) stay as names.  ``closed_forms`` reads the closed forms back
from the gradient pass of any later stage, so that what ``symflop grad`` prints
is what that stage counts.  Both are tidied by presentation-only rewrites:
factors that do not depend on a sum's index are taken out of the sum, a sum of
terms is split, and bound indices get the plainest names.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from symflop.core.indices import all_index_names, instantiate
from symflop.core.model import Component
from symflop.core.program import Program, Step, ref_indices, ref_name, split_step, tensor_refs
from symflop.errors import ComponentError
from symflop.rewrite.autodiff import grad_name


@dataclass(frozen=True)
class FusedGradient:
    wrt: str
    idx: tuple[sp.Idx, ...]
    expr: sp.Expr
    assumptions: tuple[str, ...]

    @property
    def name(self) -> str:
        return grad_name(self.wrt)


def fuse(c: Component, fwd: Program, bwd: Program) -> dict[str, FusedGradient]:
    inlinable: dict[str, Step] = {st.lhs: st for st in bwd.steps}
    inlinable.update({st.lhs: st for st in fwd.steps if st.lhs not in c.tensors})
    out = {}
    for w in c.wrt:
        st = bwd.defining_step(grad_name(w))
        if st is None:
            raise ComponentError(f"{c.name}: the backward pass computes no {grad_name(w)}")
        expr = inline(st.rhs(), inlinable, bwd.tensors, exclude=grad_name(w))
        out[w] = FusedGradient(w, st.idx, tidy(expr), ())
    return out


def fused_program(fused: dict[str, FusedGradient], bwd: Program) -> Program:
    """The closed forms as a program of their own (the ``gradient`` pass)."""
    tensors = dict(bwd.tensors)
    steps = []
    for f in fused.values():
        steps.extend(split_step(f.name, f.idx, f.expr, tensors, suffix="part"))
    return Program("gradient", steps, tensors)


def closed_forms(program: Program, wrt: tuple[str, ...], assumptions: tuple[str, ...],
                 forward: Program | None = None, named=frozenset()) -> dict[str, FusedGradient]:
    """The closed form of each gradient of ``program``: every step it reads inlined, and
    every forward tensor the engine introduced (only those the author ``named`` stay)."""
    engine_made = {s.lhs: s for s in (forward.steps if forward else ()) if s.lhs not in named}
    out = {}
    for w in wrt:
        st = program.defining_step(grad_name(w))
        if st is None:
            continue
        defs = {**engine_made, **{s.lhs: s for s in program.steps if s.lhs != st.lhs}}
        expr = inline(st.rhs(), defs, program.tensors, exclude=st.lhs)
        out[w] = FusedGradient(w, st.idx, tidy(expr), assumptions)
    return out


def inline(expr: sp.Expr, defs: dict[str, Step], tensors, exclude: str) -> sp.Expr:
    """``expr`` with every reference to a tensor defined in ``defs`` (other than
    ``exclude``) replaced by its definition, repeatedly, bound indices renamed apart."""
    while True:
        refs = [r for r in tensor_refs(expr, tensors) if ref_name(r) in defs
                and ref_name(r) != exclude]
        if not refs:
            return expr
        taken = all_index_names(expr)
        mapping = {}
        for r in refs:
            d = defs[ref_name(r)]
            rhs = d.rhs()
            bound = tuple(lim[0] for lim in rhs.limits) if isinstance(rhs, sp.Sum) else ()
            body = rhs.function if isinstance(rhs, sp.Sum) else rhs
            mapping[r] = instantiate(body, d.idx, ref_indices(r), bound, taken)
        expr = expr.xreplace(mapping)


def tidy(expr: sp.Expr) -> sp.Expr:
    expr = expr.replace(lambda e: isinstance(e, sp.Sum), _split_sum)
    return _plain_bound_names(sp.factor_terms(expr))


def _plain_bound_names(expr: sp.Expr) -> sp.Expr:
    """Give each summation index the plainest name that captures nothing (k'' -> k')."""
    outer = {x.name for x in expr.free_symbols if isinstance(x, sp.Idx)}

    def rename(s: sp.Sum) -> sp.Expr:
        body, limits = s.function, list(s.limits)
        for n, (b, _lo, _hi) in enumerate(limits):
            avoid = outer | {x.name for x in s.free_symbols if isinstance(x, sp.Idx)}
            avoid |= all_index_names(body) - {b.name}
            avoid |= {lim[0].name for lim in limits if lim[0] != b}
            name = b.name.rstrip("'")
            while name in avoid:
                name += "'"
            if name != b.name:
                nb = sp.Idx(name, b.upper + 1)
                body = body.xreplace({b: nb})
                limits[n] = (nb, nb.lower, nb.upper)
        return sp.Sum(body, *limits)
    return expr.replace(lambda e: isinstance(e, sp.Sum), rename)


def _split_sum(s: sp.Sum) -> sp.Expr:
    """Pull out what does not depend on the bound indices; split a sum of terms."""
    bound = {lim[0] for lim in s.limits}
    body = s.function
    if isinstance(body, sp.Add):
        return sp.Add(*[_split_sum(sp.Sum(t, *s.limits)) for t in body.args])
    factors = sp.Mul.make_args(body)
    outside = [f for f in factors if not (f.free_symbols & bound)]
    inside = [f for f in factors if f.free_symbols & bound]
    if not inside:
        return sp.Mul(*outside) * sp.Mul(*[k.upper + 1 for k in bound])
    return sp.Mul(*outside) * sp.Sum(sp.Mul(*inside), *s.limits)
