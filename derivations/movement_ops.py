"""Aten operations that move values, mask them by position or make them: indexing and
scatters, copies, triangles, ranges and random draws (one of the shapes of
``derivations/generic_ops.py``, whose helpers these rules use).

Data movement (concatenation, indexing, padding) computes nothing forward; what its
backward adds (gradients scattered back into a table, a repeat summed) is counted as the
additions it makes.  Work on integers and booleans is marked ``integer``, as there.
"""

from __future__ import annotations

import sympy as sp

from derivations.generic_ops import SECTION, integer_work, is_tensor, numel, work
from symflop import Component, uniform
from symflop.estimate.calls import FREE, Keep, OpCall, Use


def _rule_gather_like(source: int, index_pos: int | None = None):
    """Reads at indices (index, gather, index_select, _unsafe_index): nothing computed
    forward; the backward adds each gradient value into its source position (torch's
    index_put with accumulation into zeros), one addition per value read."""
    def rule(call: OpCall):
        x = call.args[source]
        y = call.outputs[0]
        if not (is_tensor(x) and x.requires_grad and x.floating):
            return FREE
        idx = [t for t in call.tensor_args() if t is not x and not t.floating]
        return [work("gradient scattered back (index_put, accumulate)", "add", numel(y),
                     backward=True), Keep(tuple(idx), "the indices")]
    return rule


def _rule_broadcast_copy(call: OpCall):
    """expand/repeat: a copy (or a view) forward; the backward sums the gradient over the
    copies, input elements less than output elements additions."""
    x = call.args[0]
    if not (is_tensor(x) and x.requires_grad and x.floating):
        return FREE
    extra = numel(call.outputs[0]) - numel(x)
    if extra == 0:
        return FREE
    return [work("gradient summed over the copies", "add", extra, backward=True)]


def _rule_scatter_add(call: OpCall):
    """self with src added at indices: one addition per value of src."""
    src = call.arg(3, "src")
    integer = integer_work(call)
    return [work("values added at indices", "add", numel(src), integer=integer)]


def _rule_index_put(call: OpCall):
    """Values written at indices: with accumulate, one addition per value."""
    values = call.arg(2, "values")
    if not call.arg(3, "accumulate", False):
        return FREE
    return [work("values added at indices", "add", numel(values),
                 integer=integer_work(call))]


def _rule_triangle(call: OpCall):
    """tril/triu: each value kept or zeroed by its position, one compare per value, and
    the same for the gradient."""
    x = call.args[0]
    integer = integer_work(call)
    uses = [work("triangle mask", "compare", numel(x), integer=integer)]
    if not integer and x.requires_grad:
        uses.append(work("triangle mask of the gradient", "compare", numel(x), backward=True))
    return uses


def _rule_arange(call: OpCall):
    """A range: one integer (or float) operation per value made."""
    y = call.outputs[0]
    return [work("range", "add", numel(y), integer=not y.floating)]


def bernoulli() -> Component:
    """A keep mask drawn in place, mask = 1 with probability 1 - p (dropout's first step)."""
    c = Component("bernoulli", SECTION, "Bernoulli keep mask", reference="torch.bernoulli")
    N = c.dim("N")
    i = c.index(i=N)
    p = c.hyper("p", p=0.5)
    u = c.intermediate("u", (N,))
    mask = c.output("mask", (N,))
    c.assign("forward", u[i], uniform(i))
    c.assign("forward", mask[i], sp.Piecewise((1, u[i] >= p), (0, True)))
    return c


def _rule_random(call: OpCall):
    """Random values: one draw per value."""
    y = call.outputs[0]
    return [Use("random values", bernoulli, {}, {"N": numel(y)}, {"mask": y},
                forward_only=True)]


_MOVES = ("cat", "stack", "constant_pad_nd", "roll", "flip", "slice_scatter",
          "select_scatter", "index_copy", "masked_scatter", "diagonal_scatter", "tile",
          "new_zeros", "new_ones", "new_full", "new_empty", "full", "full_like", "ones",
          "ones_like", "zeros", "scalar_tensor", "empty_strided", "resize", "set",
          "one_hot", "scatter", "_local_scalar_dense", "item", "diagonal", "unfold",
          "narrow", "movedim", "view_as_real", "view_as_complex", "repeat_interleave",
          "masked_select", "nonzero")

RULES = {
    "aten.index": _rule_gather_like(0),
    "aten._unsafe_index": _rule_gather_like(0),
    "aten.index_select": _rule_gather_like(0),
    "aten.gather": _rule_gather_like(0),
    "aten.expand": _rule_broadcast_copy,
    "aten.repeat": _rule_broadcast_copy,
    "aten.scatter_add": _rule_scatter_add,
    "aten.index_put": _rule_index_put,
    "aten._unsafe_index_put": _rule_index_put,
    "aten.tril": _rule_triangle,
    "aten.triu": _rule_triangle,
    "aten.arange": _rule_arange,
    **{f"aten.{op}": _rule_random for op in ("rand", "randn", "rand_like", "randn_like",
                                             "uniform", "normal", "randint")},
    **{f"aten.{op}": (lambda _call: FREE) for op in _MOVES},
}
