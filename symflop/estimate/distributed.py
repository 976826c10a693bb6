"""An estimate's model trained data-parallel: the catalogue's distributed-step table with
the sizes the estimate derived, not typed ones.

From the traced model at the trace's sizes: Psi (its parameters), F (the network's
forward FLOPs per sample), k (backward over forward) and A (bytes kept for backward per
sample); b is the batch B the estimate was evaluated at, per device.  The table is the
one the catalogue offers as ``distributed-step`` (mixed-precision Adam with loss scaling,
on each preset device), found through its entry point: the engine imports no catalogue.
"""

from __future__ import annotations

from dataclasses import replace

from symflop.errors import UsageError
from symflop.estimate.result import Estimate
from symflop.registry import plugin

DISTRIBUTED_OPTIMIZER = "adam"  # the one the distributed-step table derives its state from


def unknown_summary(est: Estimate) -> str:
    """"3 operations without a cost (aten.x, aten.y)", or "" when every one has one."""
    ops = sorted({why.split(":")[0] for _name, why in est.unknown})
    n = len(est.unknown)
    return f"{n} operation{'s' * (n != 1)} without a cost ({', '.join(ops)})" if n else ""


def check_devices(devices: int, optimizer: str) -> None:
    """Refuse, before any tracing, what the distributed table cannot give."""
    if devices < 1:
        raise UsageError(f"--devices {devices}: give a positive number of devices")
    if optimizer != DISTRIBUTED_OPTIMIZER:
        raise UsageError(f"--devices: the distributed step is derived for mixed-precision "
                         f"{DISTRIBUTED_OPTIMIZER}, not {optimizer} (leave --optimizer out)")


def step_sizes(est: Estimate, devices: int) -> dict:
    """The distributed-step sizes this estimate gives, at its hints (B: per device).
    Activations are the bytes the traced model keeps, at its own element types: under
    autocast many are half precision, so A is an upper bound there."""
    batch = est.hints.get("B")
    if not batch:
        raise UsageError("--devices needs the batch B among the sizes (--at B=...)")
    if est.gradient_bytes != est.parameter_bytes:
        raise UsageError("--devices: the model has frozen parameters; the distributed "
                         "step counts gradients and optimizer state for every parameter")
    forward = est.at(est.flops("forward"))
    if forward <= 0:
        raise UsageError("--devices: the traced forward pass has no counted FLOPs")
    backward = est.at(est.flops("backward"))
    return {"Psi": est.parameters, "N": devices, "b": batch,
            "F": forward / batch, "k": backward / forward,
            "A": est.at(est.activation_bytes) / batch}


def distributed_table(est: Estimate, devices: int, convention: str = "default",
                      network: dict | None = None):
    """The distributed-step table for this model on ``devices`` devices; ``network``:
    alpha_ns (seconds per round, in ns) and link_GBps, where given."""
    check_devices(devices, est.optimizer)
    tables = plugin("symflop.tables", "tables")
    if "distributed-step" not in tables:
        raise UsageError("no installed catalogue offers the table distributed-step")
    sizes = {**step_sizes(est, devices), **(network or {})}
    t = tables["distributed-step"](convention=convention, dims=sizes)
    note = (f"Psi, F, k and A: symflop estimate of {est.model} at "
            + ", ".join(f"{k}={v}" for k, v in est.hints.items())
            + " (activations at the traced element types)")
    unknown = unknown_summary(est)
    return replace(t, notes=(*t.notes, note) + ((f"every figure above leaves out {unknown}",)
                                               if unknown else ()))
