"""The tables of the section "Regularization": each regularizer's extra cost per step,
and dropout's operations in training and at inference."""

from __future__ import annotations

from derivations.tables.cells import hypers, kinds_table
from derivations.tables.options import Opts, derived
from symflop.core.model import Role
from symflop.report.tables import Table


def regularizer(name: str):
    def build(convention="default", dtype="float32", exact=False,
        stage="optimized") -> Table:
        o = Opts(convention, dtype, exact, stage)
        c, d = derived(name)
        t = o.table(f"regularization-{name}", f"`{name}`: extra cost per step",
                    ("Metric", "Value"), f"{c.summary}.")
        for p in d.passes:
            t.add(f"{p} FLOPs", o.flops(o.counts(d, p)))
        for label, what in (("Extra state memory", "state"),
                            ("Saved for backward", "saved")):
            t.add(f"{label} (bytes, {o.dtype})", o.bytes(d, what))
        if any(t.role is Role.HYPER for t in c.tensors.values()):
            t.add("Hyperparameters", hypers(c))
        return t
    build.__name__ = f"regularization_{name.replace('-', '_')}"
    build.__doc__ = f"{name}: FLOPs of each pass, state and saved bytes, hyperparameters."
    return build


def regularization_dropout(convention="default", dtype="float32", exact=False,
        stage="optimized") -> Table:
    """Dropout: training and inference operations by kind, backward FLOPs, mask bytes."""
    return kinds_table(Opts(convention, dtype, exact, stage), "regularization-dropout",
                       "Dropout: operations in training and at inference", "dropout",
                       (("forward", "Training"), ("inference", "Inference")),
                       (("backward", "Backward FLOPs (derived)"),))


TABLES = {
    "regularization-l1": regularizer("l1"),
    "regularization-l2": regularizer("l2"),
    "regularization-dropout": regularization_dropout,
    "regularization-data-augmentation": regularizer("data-augmentation"),
}
