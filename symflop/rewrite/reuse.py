"""Reuse: share work between steps, and read what the forward pass computed instead of
computing it again.  One phase, one file: every rule of the reuse phase but the
algebraic ``affine-form`` (``symflop.rewrite.algebra``) and the search's own bound.

Normalizations, applied after every change because they never add work (rules of
kind ``program``, applied by ``symflop.rewrite.search.normalize``):

* ``dead-step``: a step that is zero, a constant or a copy of another tensor is
  substituted into its readers; a step nothing reads is dropped
  (``symflop.rewrite.edits.propagate``);
* ``factor-reduction``: in ``sum_{c,s} gamma[g, c]*f[b, g, c, s]`` the factor that
  does not depend on ``s`` multiplies a partial sum: ``sum_c gamma*(sum_s f)``;
* ``shared-reduction``: two reductions of the same summand (up to index names and
  a factor outside the sum) are computed once; a reduction over more indices
  than another of the same summand sums the other's result
  (``dgamma[c] = sum_b P[b, c]`` with ``P[b, c] = sum_s dy*xhat``).

Moves, kept only where the program gets cheaper (rules of kind ``moves``, tried by
``symflop.rewrite.search.optimize``):

* ``inline``: an elementwise intermediate is substituted into its readers
  (``grad_xhat = gamma*grad_y`` disappears into the sums that read it);
* ``common-subexpression``: a subexpression several steps compute becomes a step
  of its own (BatchNorm's ``x - mu``, read by the variance and by ``xhat``;
  ``symflop.rewrite.common_subexpressions``);
* ``reuse-definition``: a subexpression that a forward step names is read from it,
  solved for the part that varies with every index: ``x - mu`` is
  ``xhat * sqrt(var + eps)`` when the forward computed ``xhat = (x - mu)/sqrt(var +
  eps)``.  Whether that is worth it depends on what else the pass reads, so the search
  decides, program by program.

And a rule of each step: ``forward-sum``, a sum of a forward reduction's summand is
that reduction's tensor (``sum_k exp(z[i, k])`` in the gradient reads ``lse_sum``).

Summing a sum of terms term by term (``sum_i dy*(x - mu)`` as ``sum_i dy*x - mu*sum_i
dy``) would let the parts be shared, but it cancels badly in floating point when the
mean is large against the spread, so it is not a move.

The rules are registered in this file's order, which is the order they are tried in;
the pipeline imports this module after ``symflop.rewrite.algebra`` and
``symflop.rewrite.search`` and before ``symflop.rewrite.specialize``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from functools import lru_cache

import sympy as sp

from symflop.core.model import Role, Tensor
from symflop.core.program import Program, Step, index_symbols
from symflop.cost.counting import step_cost, tensor_names
from symflop.rewrite.common_subexpressions import common_subexpressions, try_share
from symflop.rewrite.edits import (
    RULE_TAGS,
    assigned_once,
    elementwise,
    propagate,
    reads,
    try_inline,
    untouched,
)
from symflop.rewrite.facts import Definition, split_factors, unify
from symflop.rewrite.rules import Context, rule
from symflop.rewrite.sums import rewrite_sums

# -- sharing reductions --------------------------------------------------------------------

def _red_name(tensors: dict, stem: str) -> str:
    stem = RULE_TAGS.sub("", stem)
    n = 1
    while True:
        name = f"{stem}_red" + (str(n) if n > 1 else "")
        if name not in tensors:
            return name
        n += 1


def _ordered(indices: set, space: tuple) -> tuple:
    return tuple(k for k in space if k in indices)


def factor_reductions(program: Program, ctx: Context) -> Program:
    """Sum first over the indices only the widest factors use (see module docstring)."""
    tensors = dict(program.tensors)
    steps: list[Step] = []
    changed = False
    names = tensor_names(tensors)
    for st in program.steps:
        trial = dict(tensors)
        split = _factor(st, trial) if st.reduce and st.reduce_op == "sum" \
            and not st.gather and st.scatter is None else None
        if split is not None and sum(step_cost(s, tensor_names(trial), ctx.sizes)
                                     for s in split) < step_cost(st, names, ctx.sizes):
            tensors = trial
            steps.extend(split)
            changed = True
            ctx.note("factor-reduction", st.lhs)
        else:
            steps.append(st)
    return Program(program.name, steps, tensors) if changed else program


def _factor(st: Step, tensors: dict) -> list[Step] | None:
    bound = set(st.reduce)
    coef, core = split_factors(st.body, bound)
    factors = sp.Mul.make_args(core)
    deps = {f: index_symbols(f) & bound for f in factors}
    full = [f for f in factors if deps[f] == bound]
    inner_k = {k for k in bound if all(deps[f] == bound for f in factors if k in deps[f])}
    if not full or not inner_k or inner_k == bound:
        return None
    inner = sp.Mul(*full)
    p_idx = _ordered(index_symbols(inner) - inner_k, st.space)
    name = _red_name(tensors, st.lhs)
    tensors[name] = Tensor(name, tuple(k.upper + 1 for k in p_idx), Role.INTERMEDIATE,
                           doc=f"partial sum of {st.lhs}")
    t = tensors[name]
    ref = t.symbol[p_idx] if p_idx else t.symbol
    outer = sp.Mul(coef, *[f for f in factors if f not in full], ref)
    return [Step(name, p_idx, inner, _ordered(inner_k, st.reduce)),
            Step(st.lhs, st.idx, outer, _ordered(bound - inner_k, st.reduce))]


def share_reductions(program: Program, ctx: Context) -> Program:
    """Compute each reduction of a summand once (see module docstring)."""
    changed = True
    while changed:
        changed = False
        reds = [n for n, st in enumerate(program.steps)
                if st.reduce and st.reduce_op == "sum" and not st.gather and st.scatter is None]
        keys = {n: _summand_key(program.steps[n]) for n in reds}
        for a in reds:
            for b in reds:
                if a == b or keys[a] != keys[b]:
                    continue
                out = _share(program, a, b, ctx)
                if out is not None:
                    program, changed = out, True
                    break
            if changed:
                break
    return program


def _share(program: Program, a: int, b: int, ctx: Context) -> Program | None:
    """Let reduction ``b`` read the sum of reduction ``a``'s summand (over as many or fewer
    indices): ``a`` itself when nothing multiplies its sum, else a new step holding the
    sum alone; ``a`` moves up before ``b`` if it comes later and can move."""
    steps = list(program.steps)
    sa, sb = steps[a], steps[b]
    coef_a, core_a = split_factors(sa.body, set(sa.reduce))
    coef_b, core_b = split_factors(sb.body, set(sb.reduce))
    if sa.lhs == sb.lhs or not assigned_once(steps, sa.lhs):
        return None
    if _bases(core_a) != _bases(core_b):
        return None
    mapping = unify(core_a, core_b, set(sa.idx) | set(sa.reduce))
    if mapping is None or any(k not in mapping for k in sa.reduce):
        return None
    if a < b and not untouched(steps, a + 1, b, reads(sa, program.tensors) | {sa.lhs}):
        return None  # what a read changes before b: b would read a stale sum
    summed = {mapping[k] for k in sa.reduce}
    if not summed <= set(sb.reduce) or not {mapping.get(k, k) for k in sa.idx} <= set(sb.space):
        return None
    tensors = dict(program.tensors)
    if coef_a != 1:  # the bare sum becomes a step of its own, read by both
        r_idx = _ordered(index_symbols(core_a) - set(sa.reduce), sa.space)
        if not set(sa.idx) <= set(r_idx) | index_symbols(coef_a) or not set(r_idx) <= set(
                sa.idx):
            return None
        name = _red_name(tensors, sa.lhs)
        tensors[name] = Tensor(name, tuple(k.upper + 1 for k in r_idx), Role.INTERMEDIATE,
                               doc=f"the sum {sa.lhs} scales")
        ref = tensors[name].symbol[r_idx] if r_idx else tensors[name].symbol
        steps[a:a + 1] = [Step(name, r_idx, core_a, sa.reduce),
                          Step(sa.lhs, sa.idx, coef_a * ref)]
        if b > a:
            b += 1
        sa, a, idx_a = steps[a], a, r_idx
    else:
        idx_a = sa.idx
    if a > b:  # a must be computed first: move it up, if what it reads is ready there
        if not _movable(steps, a, b, tensors):
            return None
        steps.insert(b, steps.pop(a))
        a, b = b, b + 1
    t = tensors[sa.lhs]
    ref = t.symbol[tuple(mapping.get(k, k) for k in idx_a)] if idx_a else t.symbol
    left = tuple(k for k in sb.reduce if k not in summed)
    steps[b] = replace(sb, body=coef_b * ref, reduce=left)
    ctx.note("shared-reduction", sb.lhs)
    return Program(program.name, steps, tensors)


@lru_cache(maxsize=1 << 14)
def _summand_key(st: Step) -> tuple[str, ...]:
    """The tensors a reduction's summand reads, with repeats: two reductions can share
    only if these agree (a cheap filter before ``unify``)."""
    return tuple(_bases(split_factors(st.body, set(st.reduce))[1]))


def _bases(expr: sp.Expr) -> list[str]:
    """The tensors an expression reads, with repeats: a cheap filter before ``unify``."""
    return sorted(r.base.label.name for r in expr.atoms(sp.Indexed))


def _movable(steps: list[Step], n: int, to: int, tensors) -> bool:
    """Can step ``n`` run at position ``to`` (< n): nothing between writes what it reads
    or touches what it writes."""
    st = steps[n]
    between = steps[to:n]
    if any(s.lhs in reads(st, tensors) or s.lhs == st.lhs for s in between):
        return False
    return not any(st.lhs in reads(s, tensors) for s in between)


# -- the rules, in the order they are tried -------------------------------------------------

@rule("dead-step", ("simplify", "reuse"), on="program")
def dead_step(program: Program, ctx: Context) -> Program | None:
    """A step that is zero, a constant or a copy is substituted into its readers, and a
    step nothing reads is dropped."""
    out = propagate(program, ctx)
    return None if out.steps == program.steps else out


@rule("factor-reduction", "reuse", on="program")
def factor_reduction(program: Program, ctx: Context) -> Program | None:
    """A factor that does not depend on some summed indices multiplies a partial sum
    over them: sum_{c,s} gamma[g, c]*f = sum_c gamma*(sum_s f)."""
    out = factor_reductions(program, ctx)
    return None if out is program else out


@rule("shared-reduction", "reuse", on="program")
def shared_reduction(program: Program, ctx: Context) -> Program | None:
    """Two reductions of the same summand are computed once; one over more indices sums
    the other's result."""
    out = share_reductions(program, ctx)
    return None if out is program else out


@rule("inline", "reuse", on="moves")
def inline_moves(program: Program, ctx: Context) -> Iterator:
    """An elementwise intermediate is substituted into the steps that read it."""
    for n, st in enumerate(program.steps):
        if elementwise(st) and st.lhs not in ctx.keep:
            yield st.lhs, (lambda c, n=n: try_inline(program, n, c.keep))


@rule("common-subexpression", "reuse", on="moves")
def common_subexpression_moves(program: Program, ctx: Context) -> Iterator:
    """A subexpression several steps compute becomes a step of its own, computed once."""
    for expr in common_subexpressions(program):
        yield str(expr), (lambda c, e=expr: try_share(program, e, c))


@rule("forward-sum", "reuse", cost_driven=True)
def forward_sum(expr: sp.Expr, ctx: Context) -> sp.Expr | None:
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
def reuse_definition_moves(program: Program, ctx: Context) -> Iterator:
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
