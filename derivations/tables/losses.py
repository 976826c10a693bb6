"""The tables of the section "Loss functions": MSE's operations, the cross-entropy
variants, the other losses and their formulas, and every loss of the catalogue."""

from __future__ import annotations

import sympy as sp

from derivations import losses
from derivations.tables.cells import kinds_table, pass_flops
from derivations.tables.options import Opts, derived
from symflop.report.tables import Table

LOSS_VARIANTS = ("bce", "cross-entropy", "cross-entropy-soft")
# The losses without a table of their own (MSE has loss-mse, the variants above
# loss-cross-entropy), in the catalogue's order: hinge, huber, focal, kl-div.
OTHER_LOSSES = tuple(n for n in losses.COMPONENTS if n not in ("mse", *LOSS_VARIANTS))


def loss_mse(convention="default", dtype="float32", exact=False,
        stage="optimized") -> Table:
    """MSE: forward operations by kind, forward/backward/gradient FLOPs, bytes saved."""
    return kinds_table(Opts(convention, dtype, exact, stage), "loss-mse",
                       "MSE: operations of the forward pass", "mse",
                       (("forward", "Forward"),),
                       (("backward", "Backward FLOPs (derived)"),
                        ("gradient", "Gradient FLOPs (fused closed form)")))


def _loss_rows(o: Opts, t: Table, names) -> Table:
    for n in names:
        c, d = derived(n)
        t.add(n, pass_flops(o, d, "forward"), pass_flops(o, d, "backward"),
              pass_flops(o, d, "gradient"), o.bytes(d, "saved"), c.summary)
    return t


_LOSS_COLUMNS = ("Forward FLOPs", "Backward FLOPs", "Gradient FLOPs (fused)",
                 "Saved for backward (bytes)", "Notes")


def loss_cross_entropy(convention="default", dtype="float32", exact=False,
        stage="optimized") -> Table:
    """BCE and cross-entropy (one-hot, soft): forward, backward, fused-gradient FLOPs, bytes."""
    o = Opts(convention, dtype, exact, stage)
    t = o.table("loss-cross-entropy", "Cross-entropy variants", ("Variant",) + _LOSS_COLUMNS)
    return _loss_rows(o, t, LOSS_VARIANTS)


def loss_others(convention="default", dtype="float32", exact=False,
        stage="optimized") -> Table:
    """Hinge, Huber, focal, KL: forward/backward/gradient FLOPs, bytes saved (their
    formulas are the table ``loss-formulas``, where they have the page's width)."""
    o = Opts(convention, dtype, exact, stage)
    t = o.table("loss-others", "Other losses", ("Loss",) + _LOSS_COLUMNS)
    return _loss_rows(o, t, OTHER_LOSSES)


def loss_formulas(convention="default", dtype="float32", exact=False,
        stage="optimized") -> Table:
    """Hinge, Huber, focal, KL: the loss as the component writes it."""
    o = Opts(convention, dtype, exact, stage)
    t = o.table("loss-formulas", "Other losses: the formulas", ("Loss", "Formula"))
    t.caption = "Other losses: each loss as its component writes it (the forward pass as written)."
    for n in OTHER_LOSSES:
        c, _d = derived(n)
        a = c.passes["forward"].assignments[-1]
        lhs = a.lhs.symbol[a.idx] if a.idx else a.lhs.symbol
        t.add(n, sp.Eq(lhs, a.rhs, evaluate=False))
    return t


def loss_all(convention="default", dtype="float32", exact=False,
        stage="optimized") -> Table:
    """Every loss of the catalogue: forward/backward/gradient FLOPs, bytes saved."""
    o = Opts(convention, dtype, exact, stage)
    t = o.table("loss-all", "Every loss of the catalogue", ("Loss",) + _LOSS_COLUMNS)
    return _loss_rows(o, t, tuple(losses.COMPONENTS))


TABLES = {
    "loss-mse": loss_mse,
    "loss-cross-entropy": loss_cross_entropy,
    "loss-others": loss_others,
    "loss-formulas": loss_formulas,
    "loss-all": loss_all,
}
