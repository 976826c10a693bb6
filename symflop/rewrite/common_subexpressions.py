"""Common subexpressions: a subexpression several steps compute, found and computed once.

BatchNorm's backward computes ``x - mu`` in the variance's gradient and in ``xhat``'s;
SymPy's ``cse`` proposes such candidates (``common_subexpressions``), and ``try_share``
puts one in a step of its own before its first reader, also where it is a part of a
longer sum or product (``contains``, ``replace_sub``).  The reuse phase's
``common-subexpression`` move (``symflop.rewrite.reuse``) is built on these.
"""

from __future__ import annotations

import re
from dataclasses import replace

import sympy as sp

from symflop.core.model import Role, Tensor
from symflop.core.program import Program, Step, index_symbols, ref_name, tensor_refs, walk
from symflop.rewrite.edits import declared_name, index_order, untouched
from symflop.rewrite.rules import Context


def common_subexpressions(program: Program) -> list[sp.Expr]:
    """Subexpressions SymPy's cse finds in more than one step, that read tensors."""
    bodies = [st.body for st in program.steps if st.scatter is None]
    if len(bodies) < 2:
        return []
    try:
        pairs, _ = sp.cse(bodies, optimizations=None, order="none")
    except Exception:  # noqa: BLE001 - cse is a source of candidates only
        return []
    found: list[sp.Expr] = []
    defs: dict = {}
    for sym, e in pairs:
        full = e.xreplace(defs)
        defs[sym] = full
        if not isinstance(full, sp.Expr) or not index_symbols(full) \
                or not tensor_refs(full, program.tensors) \
                or isinstance(full, (sp.Indexed, sp.Symbol)):
            continue
        holders = [st for st in program.steps if contains(st.body, full)]
        if len(holders) >= 2:
            found.append(full)
    return found


def _parts(e: sp.Expr) -> list:
    return list(sp.Add.make_args(e) if isinstance(e, sp.Add) else sp.Mul.make_args(e))


def _subset(small: list, big: list) -> list | None:
    """``big`` without the elements of ``small`` (as multisets), or None."""
    rest = list(big)
    for x in small:
        if x not in rest:
            return None
        rest.remove(x)
    return rest


def contains(body: sp.Expr, expr: sp.Expr) -> bool:
    """Does ``body`` hold ``expr`` or ``-expr``, whole or as part of a sum or product?"""
    targets = [expr, -expr]
    for e in walk(body):
        if e in targets:
            return True
        for target in targets:
            if type(e) is type(target) and isinstance(e, (sp.Add, sp.Mul)) \
                    and _subset(_parts(target), _parts(e)) is not None:
                return True
    return False


def replace_sub(body: sp.Expr, expr: sp.Expr, ref: sp.Expr) -> sp.Expr:
    """``body`` with ``expr`` (and ``-expr``) replaced by ``ref``, also where ``expr`` is a
    part of a longer sum or product (SymPy flattens ``gamma*dy*xhat``)."""
    kind = type(expr)

    def fix(e: sp.Expr) -> sp.Expr:
        if e == expr:
            return ref
        if e == -expr:
            return -ref
        if isinstance(e, kind) and isinstance(e, (sp.Add, sp.Mul)):
            for sign in (1, -1):
                target = expr if sign == 1 else -expr
                if not isinstance(target, kind):
                    continue
                rest = _subset(_parts(target), _parts(e))
                if rest is not None:
                    return kind(sign * ref, *rest) if kind is sp.Add else \
                        kind(ref, *rest) * (1 if sign == 1 else -1)
        return e

    return body.replace(lambda e: isinstance(e, (kind, type(-expr))) or e == expr, fix)


def _cse_name(reader: str, tensors: dict) -> str:
    """A name after the first step that reads the term: ``var_sum_cse``, ``_cse2``, ..."""
    stem = re.sub(r"(_(cse|red)\d*)+$", "", reader)
    n = 1
    while f"{stem}_cse" + (str(n) if n > 1 else "") in tensors:
        n += 1
    return f"{stem}_cse" + (str(n) if n > 1 else "")


def try_share(program: Program, expr: sp.Expr, ctx: Context) -> Program | None:
    """``expr`` computed once, in a step of its own before its first reader."""
    steps = list(program.steps)
    holders = [n for n, st in enumerate(steps) if st.scatter is None and not st.gather
               and contains(st.body, expr)]
    if len(holders) < 2:
        return None
    first = holders[0]
    inputs = {ref_name(r) for r in tensor_refs(expr, program.tensors)}
    if not all(untouched(steps, first, m, inputs) for m in holders):
        return None
    tensors = dict(program.tensors)
    used = {st.lhs for st in steps} | {ref_name(r) for st in steps
                                       for r in tensor_refs(st.body, tensors)}
    name = (declared_name(expr, ctx.shared, used)
            or _cse_name(steps[first].lhs, tensors))
    idx = index_order(expr)
    tensors[name] = Tensor(name, tuple(k.upper + 1 for k in idx), Role.INTERMEDIATE,
                           doc=f"{expr}, shared by {len(holders)} steps")
    ref = tensors[name].symbol[idx] if idx else tensors[name].symbol
    for m in holders:
        st = steps[m]
        steps[m] = replace(st, body=replace_sub(st.body, expr, ref))
    steps.insert(first, Step(name, idx, expr))
    return Program(program.name, steps, tensors)
