"""Cells and table shapes that tables of several sections share.

A component's hyperparameters, a count by kind of operation, a step's equation, a pass's
FLOPs (or "-" where the component has no such pass), and two table shapes: operations by
kind for some passes (a loss, dropout) and the FLOPs of each step of one pass (Adam's
update, BatchNorm's forward).
"""

from __future__ import annotations

import sympy as sp

from derivations.tables.options import Opts, derived
from symflop.core.model import Component, Role
from symflop.cost.counting import Counts
from symflop.report.tables import Seq, Table

MIB = 2 ** 20

KIND_LABELS = {"add": "add/subtract", "mul": "multiply", "div": "divide",
               "transcendental": "transcendental", "compare": "compare/select",
               "random": "random draw", "fma": "fused multiply-add"}


def hypers(c: Component) -> Seq:
    return Seq(tuple(t.symbol for t in c.tensors.values() if t.role is Role.HYPER))


def kinds_cell(o: Opts, cnt: Counts) -> Seq | str:
    items = tuple(Seq((o.poly(v), KIND_LABELS.get(k, k)), " ")
                  for k, v in cnt.by_kind.items() if sp.expand(v) != 0)
    return Seq(items) if items else "none"


def equation(st) -> sp.Equality:
    lhs = sp.IndexedBase(st.lhs)[st.idx] if st.idx else sp.Symbol(st.lhs)
    return sp.Eq(lhs, st.rhs(), evaluate=False)


def pass_flops(o: Opts, d, pass_name: str):
    return o.flops(o.counts(d, pass_name)) if pass_name in d.passes else "-"


def kinds_table(o: Opts, name: str, title: str, comp: str,
                 passes: tuple[tuple[str, str], ...], extra: tuple[tuple[str, str], ...]):
    """Operations per kind of ``passes`` (one column each), their FLOPs under the
    convention, then the FLOPs of ``extra`` passes and the bytes saved for backward."""
    c, d = derived(comp)
    counts = [o.counts(d, p) for p, _ in passes]
    t = o.table(name, title, ("Operation",) + tuple(h for _, h in passes),
                f"{comp}: {c.summary}.")
    kinds = [k for k in counts[0].by_kind if any(sp.expand(n.by_kind.get(k, 0)) != 0
                                                 for n in counts)]
    blank = ("",) * (len(passes) - 1)
    for k in kinds:
        t.add(KIND_LABELS.get(k, k), *(o.poly(n.by_kind.get(k, 0)) for n in counts))
    t.add("Total FLOPs", *(o.flops(n) for n in counts))
    for p, label in extra:
        t.add(label, pass_flops(o, d, p), *blank)
    t.add(f"Saved for backward (bytes, {o.dtype})", o.bytes(d, "saved"), *blank)
    return t



def steps_table(o: Opts, name: str, title: str, comp: str, pass_name: str,
                 extra: tuple[tuple[str, str], ...]) -> Table:
    c, d = derived(comp)
    t = o.table(name, title, ("Step", "Computation", "FLOPs", "By kind"), f"{c.summary}.")
    for st, cnt in o.step_counts(d, pass_name):
        t.add(st.lhs, equation(st), o.flops(cnt), kinds_cell(o, cnt))
    total = o.counts(d, pass_name)
    t.add(f"Total {pass_name}", "", o.flops(total), kinds_cell(o, total))
    for p, label in extra:
        cnt = o.counts(d, p)
        t.add(label, "", o.flops(cnt), kinds_cell(o, cnt))
    return t
