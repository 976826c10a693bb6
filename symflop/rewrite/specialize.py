"""One-hot specialization: work against a one-hot tensor done at its labels only.

* ``one-hot-gather``: ``sum_k y[..., k] * f`` with ``y`` one-hot along its last axis
  ``k`` is ``f`` at ``k = label`` (no multiplications by y, no additions along k);
* ``one-hot-scatter``: ``a + y[..., k] * f`` over an index space holding ``k`` is
  ``a`` with ``f`` added at the labels only (one addition per row).

The step records the specialization (``Step.gather`` / ``Step.scatter``); the
counter sizes ``k`` as one and the code generator gathers and scatters, so the
code runs what is counted.
"""

from __future__ import annotations

from dataclasses import replace

import sympy as sp

from symflop.core.model import Fact, Role, Tensor
from symflop.core.program import Program, Step
from symflop.rewrite.rules import Context, rule
from symflop.rewrite.sums import distribute


def _one_hot_factor(expr: sp.Expr, tensors, axis_in) -> tuple[sp.Indexed, sp.Expr] | None:
    """(y[..., k], expr / y[..., k]) when ``expr`` is a product holding one one-hot
    reference whose last index is in ``axis_in`` and holding no other reference to it."""
    for f in sp.Mul.make_args(expr):
        if not isinstance(f, sp.Indexed):
            continue
        t = tensors.get(f.base.label.name)
        if t is None or not t.has(Fact.ONE_HOT) or f.indices[-1] not in axis_in:
            continue
        rest = sp.Mul(*[g for g in sp.Mul.make_args(expr) if g is not f])
        if not rest.has(f.base):
            return f, rest
    return None


@rule("one-hot-gather", "simplify", on="program")
def one_hot_gather(program: Program, ctx: Context) -> Program | None:
    """sum_k onehot[..., k] * f -> f at the label: a gather, no multiplications."""
    steps, changed = [], False
    for st in program.steps:
        hit = None
        if st.reduce and st.reduce_op == "sum" and not st.gather and st.scatter is None:
            hit = _one_hot_factor(st.body, program.tensors, set(st.reduce))
        if hit is None:
            steps.append(st)
            continue
        y, rest = hit
        k = y.indices[-1]
        steps.append(replace(st, body=rest, reduce=tuple(r for r in st.reduce if r != k),
                             gather=((k, y),)))
        ctx.note("one-hot-gather", st.lhs)
        changed = True
    return Program(program.name, steps, program.tensors) if changed else None


@rule("one-hot-scatter", "simplify", on="program")
def one_hot_scatter(program: Program, ctx: Context) -> Program | None:
    """a + onehot[..., k] * f -> a with f added at the labels: one addition per row."""
    tensors = dict(program.tensors)
    steps, changed = [], False
    for st in program.steps:
        found = None
        body = st.body if isinstance(st.body, sp.Add) else distribute(st.body)
        if not st.reduce and not st.gather and st.scatter is None and isinstance(body, sp.Add):
            for term in body.args:
                hit = _one_hot_factor(term, tensors, set(st.idx))
                if hit is not None:
                    found = (term, *hit)
                    break
        if found is None:
            steps.append(st)
            continue
        term, y, rest = found
        base_body = body - term
        if base_body.has(y.base):
            steps.append(st)
            continue
        base = f"{st.lhs}_base"
        tensors[base] = Tensor(base, tensors[st.lhs].shape, Role.INTERMEDIATE,
                               doc=f"{st.lhs} before the values added at the labels")
        steps.append(Step(base, st.idx, base_body))
        steps.append(Step(st.lhs, st.idx, rest, scatter=(y.indices[-1], y, base)))
        ctx.note("one-hot-scatter", st.lhs)
        changed = True
    return Program(program.name, steps, tensors) if changed else None
