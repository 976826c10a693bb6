"""Sums with a known value: a sum over K of a fact's summand is the fact's tensor.

``resolve`` distributes a ``Sum`` over the terms of its body, takes factors that
do not depend on the summed indices out of each term, and replaces every sum
that matches a ``Known`` fact (``symflop.rewrite.facts``) by its value, after
renaming the fact's indices to the sum's.  A fact over fewer indices than the
sum resolves the inner part (``sum_{i,k} y[i, k]*f[i]`` with rows of ``y`` summing
to one is ``sum_i f[i]``).  Whatever matches no fact stays a sum.
"""

from __future__ import annotations

from collections.abc import Callable

import sympy as sp

from symflop.core.program import ref_name
from symflop.rewrite.facts import Known, split_factors, unify


def distribute(expr: sp.Expr) -> sp.Expr:
    """Products distributed over sums at the top level only (no powers, no logs)."""
    return sp.expand(expr, deep=False, power_base=False, power_exp=False, log=False,
                     multinomial=False, basic=False)


def resolve(s: sp.Sum, facts: list[Known], tensors,
            used: Callable[[Known], None] | None = None) -> tuple[sp.Expr, bool]:
    """``s`` with every sum of a known summand replaced: (result, all replaced)."""
    bound = tuple(lim[0] for lim in s.limits)
    out, complete = [], True
    for term in sp.Add.make_args(distribute(s.function)):
        value, done = _term(term, bound, facts, tensors, used)
        out.append(value)
        complete &= done
    return sp.Add(*out), complete


def _term(term: sp.Expr, bound: tuple, facts, tensors, used) -> tuple[sp.Expr, bool]:
    coef, core = split_factors(term, set(bound))
    if core == 1:
        return coef * sp.Mul(*[k.upper + 1 for k in bound]), True
    for fact in facts:
        hit = _match(fact, core, bound, tensors)
        if hit is None:
            continue
        value, rest, left = hit
        if used is not None:
            used(fact)
        if not left:
            return coef * rest * value, True
        inner, done = resolve(sp.Sum(rest * value, *[(k, k.lower, k.upper) for k in left]),
                              facts, tensors, used)
        return coef * inner, done
    return coef * sp.Sum(core, *[(k, k.lower, k.upper) for k in bound]), False


def _match(fact: Known, core: sp.Expr, bound: tuple, tensors):
    """(the fact's value, the factors of ``core`` it leaves, the indices still summed)."""
    bases = {r.base.label.name for r in fact.core.atoms(sp.Indexed)}
    if not bases:
        return None
    picked: list[sp.Expr] = []
    rest: list[sp.Expr] = []
    for f in sp.Mul.make_args(core):
        refs = f.atoms(sp.Indexed)
        (picked if refs and {r.base.label.name for r in refs} <= bases else rest).append(f)
    if not picked:
        return None
    mapping = unify(fact.core, sp.Mul(*picked), fact.idx + fact.reduce)
    if mapping is None or any(k not in mapping for k in fact.reduce + fact.idx):
        return None  # a fact over an index its summand does not use: not matched here
    summed = {mapping[k] for k in fact.reduce}
    rest_expr = sp.Mul(*rest)
    if not summed <= set(bound) or rest_expr.free_symbols & summed:
        return None
    if fact.name is not None and any(ref_name(r) == fact.name for r in core.atoms(sp.Indexed)):
        return None
    left = tuple(k for k in bound if k not in summed)
    return fact.value(mapping, tensors), rest_expr, left


def rewrite_sums(expr: sp.Expr, facts: list[Known], tensors, choose) -> sp.Expr | None:
    """``expr`` with each ``Sum`` replaced by what ``choose(sum, resolved, complete, used)``
    returns, given the sum resolved against ``facts``; None if nothing changed."""
    if not facts or not expr.has(sp.Sum):
        return None

    def fix(s: sp.Sum) -> sp.Expr:
        used: list[Known] = []
        out, complete = resolve(s, facts, tensors, used.append)
        return choose(s, out, complete, used)

    new = expr.replace(lambda e: isinstance(e, sp.Sum), fix)
    return new if new != expr else None
