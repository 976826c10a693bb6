"""The tables of the whole training step: the step part by part (the training-step
composite's FLOPs and memory), and ResNet-50's training memory term by term, as
``symflop estimate`` gives it."""

from __future__ import annotations

import sympy as sp

from derivations import resnet50, training
from derivations.tables.cells import MIB
from derivations.tables.options import Opts, derived
from symflop.compose import CompositeDerivation, Part
from symflop.cost.memory import dtype_bytes
from symflop.derive import Derivation
from symflop.report.tables import Num, Table


def _part_flops(o: Opts, part: Part, pass_name: str, d: Derivation) -> sp.Expr:
    """FLOPs of ``d``'s pass at the sizes and multiplicity of the composite's ``part``."""
    subs = {part.component.dims[k]: v for k, v in part.dims.items()}
    return o.poly(part.times * o.flops(o.counts(d, pass_name)).xreplace(subs))


def _part_bytes(o: Opts, part: Part, what: str, d: Derivation) -> sp.Expr:
    subs = {part.component.dims[k]: v for k, v in part.dims.items()}
    return o.poly(part.times * o.memory(d).bytes(what, o.dtype).xreplace(subs))


def _part_pass(part: str, pass_name: str) -> str:
    """A row's words for one pass of a part ("loss backward"; "schedule", not
    "schedule.schedule")."""
    return part if pass_name == part else f"{part} {pass_name}"


def training_step_summary(convention="default", dtype="float32", exact=False,
        stage="optimized") -> Table:
    """The whole training step part by part (training-step composite): FLOPs and memory."""
    o = Opts(convention, dtype, exact, stage)
    d = CompositeDerivation(training.training_step("adam"))
    comp = d.composite
    t = o.table("training-step-summary", "One training step, part by part",
                ("Component", "FLOPs per step", "Memory (bytes)", "Memory kind"),
                "Network forward F and backward k*F are given; every other part is derived; "
                "BatchNorm counts are for its L_bn layers.")
    size = dtype_bytes(o.dtype)
    mem = {label: e for label, _, e in comp.memory_terms}
    parts_saved: list[sp.Expr] = []
    for (label, flops), mlabel in zip(comp.network, ("activations", "gradients")):
        t.add(label, flops, o.poly(size * mem[mlabel]), mlabel)
    for part in comp.parts:
        pd = d.derived[part.label]
        if part.label == "optimizer":
            # The same part with each optimizer the document lists: adam (this composite's)
            # and sgd, at the part's sizes.
            for name in ("adam", "sgd"):
                od = pd if name == "adam" else derived(name)[1]
                t.add(f"optimizer step ({name})", _part_flops(o, part, "step", od),
                      _part_bytes(o, part, "state", od), "state")
            continue
        # A differentiated part keeps tensors for its backward pass; any other, its state.
        what, kind = (("saved", "saved for backward") if part.component.differentiate
                      else ("state", "state"))
        if what == "saved":  # the composite's own memory holds the network's alone
            parts_saved.append(_part_bytes(o, part, what, pd))
        for k, q in enumerate(part.passes):
            t.add(_part_pass(part.label, q), o.flops(o.counts(d, f"{part.label}.{q}")),
                  _part_bytes(o, part, what, pd) if k == 0 else "", kind if k == 0 else "")
    _, dd = derived("dropout")
    t.add("dropout forward (one layer, not in the composite)",
          o.flops(o.counts(dd, "forward")), o.bytes(dd, "saved"), "saved for backward")
    t.add("parameters", "", o.poly(size * mem["parameters"]), "parameters")
    total_mem = sum((o.memory(d).bytes(w, o.dtype) for w in ("parameters", "gradients", "state",
                                                          "saved")), sp.Integer(0))
    t.add("Total step (adam)", o.flops(o.counts(d, "step")),
          o.poly(total_mem + sp.Add(*parts_saved)),
          "parameters + gradients + state + every tensor saved for backward")
    return t


def memory_total(convention="default", dtype="float32", exact=False,
        stage="optimized") -> Table:
    """ResNet-50's training memory with Adam, term by term, as ``symflop estimate`` gives it
    (``derivations/resnet50.py``, traced in float32)."""
    dtype_bytes(dtype)
    traced = resnet50.RUN["dtype"]
    # the options say what the table holds: float32, and exact bytes (a model's memory has
    # no lower-order term to drop: its parameters are a constant, not a smaller size)
    o = Opts(convention, traced, True, stage)
    title = "Training memory of ResNet-50 with Adam"
    t = Table("memory-total", title, ("Term", "Bytes", "MiB"),
              options={"convention": o.conv.name, "dtype": o.dtype, "exact": o.exact,
                       "stage": o.stage}, caption=f"{title}. "
                f"From {resnet50.COMMAND}: ResNet-50 ({resnet50.parameters():,} "
                f"parameters) traced in {traced}"
                + (f" (not {dtype}: the dtype option does not apply)" if dtype != traced
                   else "") + ", bytes as polynomials in the batch B, MiB at "
                f"B = {resnet50.RUN['B']}. Saved for backward: each tensor autograd keeps, "
                "once, at its own size (the max-pool's int64 indices at 8 bytes), by the "
                "layer type that first keeps it. Adam's state: two moments per parameter "
                "and a step count per parameter tensor, as torch keeps it. Bytes exact; "
                f"the stage ({o.program}) does not apply: an estimate counts the program "
                "torch runs.")
    saved = sorted(resnet50.record()["by_type"].items(),
                   key=lambda kv: -resnet50.at(kv[1]["saved"]))
    terms = [(name, nbytes) for name, nbytes in resnet50.memory()
             if name != "saved for backward"]
    terms += [(f"saved: {resnet50.label(what)}", parts["saved"]) for what, parts in saved
              if parts["saved"] != 0]
    for label, nbytes in terms + [("Total", sp.Add(*(n for _, n in terms)))]:
        t.add(label, o.poly(nbytes), Num(resnet50.at(nbytes) / MIB, ",.1f"))
    return t


TABLES = {
    "training-step-summary": training_step_summary,
    "memory-total": memory_total,
}
