"""The tables of the section "Optimizers": each optimizer's cost and memory (against the
one the document compares it with), Adam's update step by step, every optimizer
compared, and every optimizer at the document's 25.6M parameters."""

from __future__ import annotations

from functools import cache

import sympy as sp

from derivations import examples, optimizers, resnet50, training
from derivations.tables.cells import MIB, hypers, kinds_cell, steps_table
from derivations.tables.options import Opts, derived
from symflop.cost.memory import dtype_bytes
from symflop.report.tables import Num, Seq, Table

# Which optimizer the document compares another with ("same as momentum", "vs. Adam").
BASES = {"nesterov": "momentum", "nesterov-lookahead": "momentum", "adamw": "adam"}


@cache
def _example_inputs(name: str) -> dict:
    """The stated inputs of a worked example (sizes given by the document, not figures)."""
    return dict(examples.EXAMPLES[name]().inputs)


def _step_memory_total(o: Opts, name: str) -> sp.Expr:
    """Parameters + gradients + optimizer state, from the training-step memory model."""
    terms = training.training_step(name).memory_terms
    return o.poly(dtype_bytes(o.dtype) * sum((e for _, what, e in terms
                                              if what in ("parameters", "gradients", "state")),
                                             sp.Integer(0)))


def optimizer_metrics(name: str):
    def build(convention="default", dtype="float32", exact=False,
        stage="optimized") -> Table:
        o = Opts(convention, dtype, exact, stage)
        c, d = derived(name)
        t = o.table(f"optimizer-{name}", f"`{name}`: per-step cost and memory",
                    ("Metric", "Value"), f"{c.summary}.")
        state = [n for n, _ in o.memory(d).state]
        t.add(f"Extra state memory (bytes, {o.dtype})", o.bytes(d, "state"))
        t.add("State tensors", Seq(tuple(state)) if state else "none")
        t.add(f"Parameters + gradients + state (bytes, {o.dtype})", _step_memory_total(o, name))
        cnt = o.counts(d, "step")
        t.add("Per-step FLOPs", o.flops(cnt))
        t.add("Per-step FLOPs by kind", kinds_cell(o, cnt))
        t.add("Hyperparameters", hypers(c))
        base = BASES.get(name)
        if base is not None:
            bc, bd = derived(base)
            t.add(f"Extra FLOPs vs. `{base}`",
                  o.poly(cnt.total - o.counts(bd, "step").total))
            t.add(f"Extra state memory vs. `{base}` (bytes)",
                  o.poly(o.memory(d).bytes("state", o.dtype)
                         - o.memory(bd).bytes("state", o.dtype)))
            extra = tuple(s for s in hypers(c).items if s not in hypers(bc).items)
            t.add(f"Extra hyperparameters vs. `{base}`", Seq(extra) if extra else "none")
        return t
    build.__name__ = f"optimizer_{name.replace('-', '_')}"
    build.__doc__ = (f"{name}: state bytes and tensors, per-step FLOPs (by kind), "
                     "hyperparameters" + (f", extra over {BASES[name]}." if name in BASES
                                          else "."))
    return build



def optimizer_adam_operations(convention="default", dtype="float32", exact=False,
        stage="optimized") -> Table:
    """Adam: each step of the update with its equation, FLOPs and kinds, and the total."""
    return steps_table(Opts(convention, dtype, exact, stage), "optimizer-adam-operations",
                       "Adam: FLOPs of each step of the update", "adam", "step", ())


def optimizer_comparison(convention="default", dtype="float32", exact=False,
        stage="optimized") -> Table:
    """Every optimizer: extra state bytes, per-step FLOPs, hyperparameters."""
    o = Opts(convention, dtype, exact, stage)
    t = o.table("optimizer-comparison", "Optimizer comparison",
                ("Optimizer", f"Extra memory (bytes, {o.dtype})", "Per-step FLOPs",
                 "Hyperparameters", "Summary"))
    for name in optimizers.COMPONENTS:
        c, d = derived(name)
        t.add(name, o.bytes(d, "state"), o.flops(o.counts(d, "step")), hypers(c),
              c.summary)
    return t


def optimizer_25m(convention="default", dtype="float32", exact=False,
        stage="optimized") -> Table:
    """Every optimizer at P = 25.6M: state MiB, step FLOPs, share of ResNet-50's backward
    pass of one image."""
    o = Opts(convention, dtype, exact, stage)
    inputs = _example_inputs("optimizers-25.6m")
    P, backward = inputs["P"], inputs[examples.BACKWARD]
    t = o.table("optimizer-25.6m", f"Optimizers for a model of {P:,} parameters",
                ("Optimizer", f"State memory (MiB, {o.dtype})", "Per-step FLOPs",
                 "% of backward FLOPs"),
                f"P = {P:,}; backward pass {backward:,.0f} FLOPs: ResNet-50's for one image, "
                f"the estimate's polynomial in B at B = 1 ({resnet50.COMMAND}; the document "
                "gives 7.6G, a count of multiply-adds, and its percentages divide by it).")
    for name in optimizers.COMPONENTS:
        c, d = derived(name)
        subs = {c.dims["P"]: P}
        state = int(o.bytes(d, "state").xreplace(subs))
        flops = int(o.flops(o.counts(d, "step")).xreplace(subs))
        t.add(name, Num(state / MIB, ",.1f"), Num(flops, ","),
              Num(100 * flops / backward, ".2f"))
    return t


TABLES = {
    **{f"optimizer-{n}": optimizer_metrics(n) for n in optimizers.COMPONENTS},
    "optimizer-adam-operations": optimizer_adam_operations,
    "optimizer-comparison": optimizer_comparison,
    "optimizer-25.6m": optimizer_25m,
}
