"""The tables of the section "Normalization": BatchNorm step by step and in training
against inference, each normalization layer's cost and properties, and the layers
compared (what a statistic is over, batch dependence, folding at inference)."""

from __future__ import annotations

import sympy as sp

import derivations
from derivations import normalization
from derivations.tables.cells import pass_flops, steps_table
from derivations.tables.options import Opts, derived
from symflop.core.model import Component, Role
from symflop.derive import Derivation
from symflop.report.tables import Seq, Table


def _reduces_over(d: Derivation, pass_name: str, dim: sp.Expr) -> bool:
    return any(k.upper + 1 == dim for st in d.programs[pass_name].steps for k in st.reduce)


def _first_input(c: Component):
    return next(t for t in c.tensors.values() if t.role is Role.INPUT)


def batchnorm_steps(convention="default", dtype="float32", exact=False,
        stage="optimized") -> Table:
    """BatchNorm: each training-forward step with FLOPs; forward, backward, gradient totals."""
    return steps_table(Opts(convention, dtype, exact, stage), "batchnorm-steps",
                       "BatchNorm: FLOPs of each step of the training forward pass",
                       "batchnorm", "forward",
                       (("backward", "Total backward (derived)"),
                        ("gradient", "Total gradient (fused closed form)")))


def _norm_facts(c: Component, d: Derivation, pass_name: str) -> dict:
    """What a normalization pass reduces over and whether that includes the batch axis."""
    batch = _first_input(c).shape[0]
    stat = next((st for st in d.programs[pass_name].steps if st.reduce), None)
    over = sp.Mul(*[k.upper + 1 for k in stat.reduce]) if stat else sp.Integer(0)
    count = sp.Mul(*[k.upper + 1 for k in stat.idx]) if stat else sp.Integer(0)
    return {"over": over, "statistics": count, "batch": _reduces_over(d, pass_name, batch)}


def _fold(name: str):
    """The catalogue's fold of ``name`` into the preceding layer, if there is one."""
    fold = f"{name}-fold"
    return derived(fold) if any(fold in m.COMPONENTS for m in derivations.SECTIONS) else None


def _inference_pass(d: Derivation) -> str:
    return "inference" if "inference" in d.passes else "forward"


def _fixed(d: Derivation, pass_name: str) -> bool:
    """True when the pass computes no statistic from its input: an affine map of it."""
    return not any(st.reduce for st in d.programs[pass_name].steps)


def _fold_cell(o: Opts, name: str, fixed: bool):
    """Whether (and at what one-time cost) the layer folds into the preceding one."""
    found = _fold(name)
    if not fixed or found is None:
        return "no"
    fc, fd = found
    return Seq(("yes", f"({fc.name}, once per weight update:", o.flops(o.counts(fd,
        fd.passes[0])), "FLOPs)"), " ")


def batchnorm_train_vs_inference(convention="default", dtype="float32", exact=False,
        stage="optimized") -> Table:
    """BatchNorm training vs inference: statistics, FLOPs, batch dependence, folding."""
    o = Opts(convention, dtype, exact, stage)
    c, d = derived("batchnorm")
    x = _first_input(c)
    t = o.table("batchnorm-train-vs-inference", "BatchNorm: training against inference",
                ("", "Training (forward)", "Inference"))
    passes = ("forward", "inference")
    uses = []
    for p in passes:
        written = c.passes[p].assignments
        computed = [a.lhs.name for a in written if a.rhs.has(sp.Sum)]
        read = [n for n, tn in c.tensors.items() if tn.role is Role.STATE
                and any(a.rhs.has(tn.symbol) for a in written)]
        uses.append(Seq(("computed:", Seq(tuple(computed))), " ") if computed else
                    Seq(("read from state:", Seq(tuple(read))), " "))
    t.add("Statistics", *uses)
    cnts = [o.counts(d, p) for p in passes]
    t.add("FLOPs", *(o.flops(n) for n in cnts))
    size = sp.Mul(*x.shape)
    t.add(f"FLOPs per element of {x.name}", *(sp.expand(o.flops(n) / size) for n in cnts))
    facts = [_norm_facts(c, d, p) for p in passes]
    t.add("Batch dependence", *("yes" if f["batch"] else "no" for f in facts))
    t.add("Fold into the preceding layer", *(_fold_cell(o, c.name, _fixed(d, p))
                                              for p in passes))
    t.add(f"Saved for backward (bytes, {o.dtype})", o.bytes(d, "saved"), "none (no backward)")
    t.add(f"Running statistics (state bytes, {o.dtype})", o.bytes(d, "state"),
          o.bytes(d, "state"))
    return t


def norm_layers() -> list[str]:
    return [n for n, b in normalization.COMPONENTS.items() if "forward" in b().passes]


def norm_metrics(name: str):
    def build(convention="default", dtype="float32", exact=False,
        stage="optimized") -> Table:
        o = Opts(convention, dtype, exact, stage)
        c, d = derived(name)
        f = _norm_facts(c, d, "forward")
        t = o.table(f"normalization-{name}", f"{name}: cost and properties",
                    ("Metric", "Value"), f"{c.summary}.")
        t.add("Values per statistic", f["over"])
        t.add("Statistics (mean and variance each)", f["statistics"])
        t.add("Parameters (elements)", o.memory(d).elements("parameters"))
        for p in d.passes:
            t.add(f"{p} FLOPs", o.flops(o.counts(d, p)))
        t.add("Batch dependence", "yes" if f["batch"] else "no")
        t.add("Fold into the preceding layer at inference",
              _fold_cell(o, name, _fixed(d, _inference_pass(d))))
        t.add(f"Saved for backward (bytes, {o.dtype})", o.bytes(d, "saved"))
        return t
    build.__name__ = f"normalization_{name.replace('-', '_')}"
    build.__doc__ = (f"{name}: values per statistic, parameters, FLOPs of each pass, batch "
                     "dependence, folding, saved bytes.")
    return build


def normalization_comparison(convention="default", dtype="float32", exact=False,
        stage="optimized") -> Table:
    """Normalization layers: statistic sizes, parameters, FLOPs, batch dependence, folding."""
    o = Opts(convention, dtype, exact, stage)
    t = o.table("normalization-comparison", "Normalization layers compared",
                ("Method", "Values per statistic", "Parameters", "Forward FLOPs",
                 "Backward FLOPs", "Batch dep.", "Fold at inference"))
    for name in norm_layers():
        c, d = derived(name)
        f = _norm_facts(c, d, "forward")
        fold = _fold_cell(o, name, _fixed(d, _inference_pass(d)))
        t.add(name, f["over"], o.memory(d).elements("parameters"), pass_flops(o, d, "forward"),
              pass_flops(o, d, "backward"), "yes" if f["batch"] else "no",
              "yes" if fold != "no" else "no")
    return t


TABLES = {
    "batchnorm-steps": batchnorm_steps,
    "batchnorm-train-vs-inference": batchnorm_train_vs_inference,
    **{f"normalization-{n}": norm_metrics(n) for n in norm_layers()},
    "normalization-comparison": normalization_comparison,
}
