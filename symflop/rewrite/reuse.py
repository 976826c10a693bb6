"""Reuse: read what the forward pass computed instead of computing it again.

* ``forward-sum`` (a rule of each step): a sum of a forward reduction's summand is
  that reduction's tensor (``sum_k exp(z[i, k])`` in the gradient reads ``lse_sum``);
* ``reuse-definition`` (a move of ``symflop.rewrite.structure.optimize``): a
  subexpression that a forward step names is read from it, solved for the part that
  varies with every index: ``x - mu`` is ``xhat * sqrt(var + eps)`` when the forward
  computed ``xhat = (x - mu)/sqrt(var + eps)``.  Whether that is worth it depends on
  what else the pass reads, so the search decides, program by program.
"""

from __future__ import annotations

from dataclasses import replace

import sympy as sp

from symflop.core.program import Program, index_symbols
from symflop.rewrite.facts import Definition, unify
from symflop.rewrite.rules import Context, rule
from symflop.rewrite.sums import rewrite_sums


@rule("forward-sum", "reuse", cost_driven=True)
def forward_sum(expr: sp.Expr, ctx: Context):
    """A sum of a forward reduction's summand reads the forward's result."""
    return rewrite_sums(expr, [k for k in ctx.facts.known if k.name is not None],
                        ctx.tensors, lambda _s, out, _complete, _used: out)


def varying_part(d: Definition) -> tuple[sp.Expr, sp.Expr] | None:
    """(V, C) with ``d.body = V * C``, V the one factor that varies with every index of
    the step and is not a plain reference, C free of any tensor it would divide by; None
    when there is no such split."""
    full = set(d.idx)
    if not full:
        return None
    factors = sp.Mul.make_args(d.body)
    varying = [f for f in factors if index_symbols(f) == full]
    if len(varying) != 1 or isinstance(varying[0], (sp.Indexed, sp.Symbol)) \
            or varying[0].is_number:
        return None
    v = varying[0]
    coef = [f for f in factors if f is not v]
    # V = name/C: dividing by a tensor that may be zero (g[j]) is not an identity; dividing
    # by 1/sqrt(var + eps) is multiplying by sqrt(var + eps)
    if any(f.atoms(sp.Indexed) and not (isinstance(f, sp.Pow) and f.exp.is_negative)
           for f in coef):
        return None
    return v, sp.Mul(*coef)


@rule("reuse-definition", "reuse", on="moves")
def reuse_definition_moves(program: Program, ctx: Context):
    """A subexpression a forward step names is read from it, solved for its varying part:
    x - mu is xhat*sqrt(var + eps)."""
    for d in ctx.facts.definitions:
        if d.name not in ctx.skip_definitions:
            yield d.name, (lambda c, d=d: reuse_definition(program, d, c))


def reuse_definition(program: Program, d: Definition, ctx: Context) -> Program | None:
    """Every occurrence of the definition's varying part read from the defined tensor."""
    split = varying_part(d)
    if split is None or d.name not in program.tensors:
        return None
    v, coef = split
    t = program.tensors[d.name]
    variables = set(d.idx)

    def value(mapping: dict) -> sp.Expr:
        idx = tuple(mapping[k] for k in d.idx)
        return t.symbol[idx] / coef.xreplace(mapping)

    def fix(e: sp.Expr) -> sp.Expr:
        if isinstance(v, sp.Add):
            content, prim = e.primitive()
            for sign in (1, -1):
                m = unify(v, sign * prim, variables)
                if m is not None:
                    return content * sign * value(m)
            return e
        if isinstance(v, sp.Pow) and isinstance(e, sp.Pow):  # 1/sqrt(u) is r**-1, r = sqrt(u)
            m = unify(v.base, e.base, variables)
            k = e.exp / v.exp
            if m is not None and k.is_Integer:
                return value(m) ** k
            return e
        m = unify(v, e, variables)
        return e if m is None else value(m)

    steps, changed = [], False
    for st in program.steps:
        body = st.body.replace(lambda e: type(e) is type(v), fix)
        if body != st.body:
            st, changed = replace(st, body=body), True
        steps.append(st)
    return Program(program.name, steps, program.tensors) if changed else None
