"""Fused closed-form gradients: the backward program substituted into one expression.

Adjoints and the intermediates the engine introduced are inlined; tensors the
author named in the forward pass (``mu``, ``xhat``) stay as names.  The result is
tidied by targeted rewrites only: factors that do not depend on a sum's index
are taken out of the sum, a sum of terms is split, and a sum over the last axis
of a tensor whose rows sum to one is replaced by 1, which is recorded as an
assumption of the printed result.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from symflop.core.indices import all_index_names, instantiate
from symflop.core.model import Component, Fact, Tensor
from symflop.core.program import Program, Step, ref_indices, ref_name, tensor_refs
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
        used: set[str] = set()
        expr = inline(st.rhs(), inlinable, bwd.tensors, exclude=grad_name(w))
        expr = _tidy(expr, bwd.tensors, used)
        out[w] = FusedGradient(w, st.idx, expr, tuple(sorted(used)))
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
            mapping[r] = instantiate(d.body, d.idx, ref_indices(r), d.reduce, taken)
        expr = expr.xreplace(mapping)


def _tidy(expr: sp.Expr, tensors: dict[str, Tensor], used: set[str]) -> sp.Expr:
    expr = expr.replace(lambda e: isinstance(e, sp.Sum), lambda s: _split_sum(s, tensors, used))
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


def _split_sum(s: sp.Sum, tensors, used: set[str]) -> sp.Expr:
    """Pull out what does not depend on the bound indices; apply row-sum facts."""
    bound = {lim[0] for lim in s.limits}
    body = s.function
    if isinstance(body, sp.Add):
        return sp.Add(*[_split_sum(sp.Sum(t, *s.limits), tensors, used) for t in body.args])
    factors = sp.Mul.make_args(body)
    outside = [f for f in factors if not (f.free_symbols & bound)]
    inside = [f for f in factors if f.free_symbols & bound]
    if not inside:
        return sp.Mul(*outside) * sp.Mul(*[k.upper + 1 for k in bound])
    rest = sp.Mul(*inside)
    if len(s.limits) == 1 and isinstance(rest, sp.Indexed):
        t = tensors.get(ref_name(rest))
        k = s.limits[0][0]
        if t is not None and t.has(Fact.ROWS_SUM_TO_ONE) and rest.indices[-1] == k:
            used.add(f"{t.name}: {Fact.ROWS_SUM_TO_ONE.value}")
            return sp.Mul(*outside)
    return sp.Mul(*outside) * sp.Sum(rest, *s.limits)
