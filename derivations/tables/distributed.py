"""The tables of distributed training: per-device memory and communication of data
parallelism and each ZeRO stage, and a data-parallel step's time on each cluster of
``derivations.distributed``; sizes given with ``--dims``."""

from __future__ import annotations

from dataclasses import replace

import sympy as sp

from derivations import distributed
from derivations.tables.options import Opts
from symflop.errors import UsageError
from symflop.report.tables import Num, Table


def distributed_memory(convention="default", dtype="float32", exact=False,
                       stage="optimized", dims: dict | None = None) -> Table:
    """Per-device memory and communication of data parallelism and each ZeRO stage, with
    mixed-precision Adam, for a model of Psi parameters on N devices (``--dims``; default
    the ZeRO paper's example, 7.5B parameters on 64 devices)."""
    o = Opts(convention, dtype, exact, stage)
    sizes = {"Psi": 7_500_000_000, "N": 64, **(dims or {})}  # the ZeRO paper's example
    unknown = set(sizes) - {"Psi", "N"}
    if unknown:
        raise UsageError(f"distributed-memory has no size {', '.join(sorted(unknown))} "
                         "(its sizes: Psi, N)")
    at = {distributed.Psi: sizes["Psi"], distributed.N: sizes["N"]}
    per = distributed.bytes_per_parameter("adam", distributed.MIXED)
    t = Table("distributed-memory", "Per-device memory and communication: DDP and ZeRO",
              ("Stage", "Parameters", "Gradients", "Optimizer state", "Per device",
               "GB per device", "Sent per step", "GB sent"),
              caption=f"Psi = {sizes['Psi']:,} parameters on N = {sizes['N']} devices (the GB "
                      f"columns), mixed-precision Adam: {per['parameters']} + {per['gradients']} + "
                      f"{per['optimizer state']} bytes per parameter (half-precision "
                      "parameters and gradients; a float32 master copy and Adam's two "
                      "float32 moments, from the adam component's state). A sharded part "
                      "costs 1/N of itself per device. Sent: elements of the model's "
                      "(half-precision) type each device sends per optimizer step, ring "
                      "collectives. GB: a billion bytes. No FLOPs here: the figures are the "
                      "same as written and optimized, under any convention; the element "
                      "types are mixed precision's, whatever the dtype.",
              options={"convention": o.conv.name, "dtype": o.dtype, "exact": o.exact,
                       "stage": o.stage})
    for name in distributed.STAGES:
        mem = distributed.per_device_memory(name)
        total = sp.factor(sp.Add(*mem.values()))
        sent = distributed.step_communication(name).sent
        t.add(name, *(sp.factor(mem[k]) for k in ("parameters", "gradients",
                                                   "optimizer state")),
              total, Num(float(total.xreplace(at)) / 1e9, ",.2f"), sent,
              Num(float(sent.xreplace(at)) * per["parameters"] / 1e9, ",.2f"))
    return t


def distributed_step(convention="default", dtype="float32", exact=False,
                     stage="optimized", dims: dict | None = None) -> Table:
    """A data-parallel training step per device, for each ZeRO stage on each device of
    ``distributed.CLUSTERS``: FLOPs, bytes sent, memory and the predicted time."""
    o = Opts(convention, dtype, exact, stage)
    sizes = {"Psi": 7_500_000_000, "N": 64, "b": 4, "L": 2048, "k": 2, "A": 0,
             "alpha_ns": 5000, **(dims or {})}
    unknown = set(sizes) - {"Psi", "N", "b", "L", "F", "k", "A", "alpha_ns", "link_GBps"}
    if unknown:
        raise UsageError(f"distributed-step has no size {', '.join(sorted(unknown))} (its "
                         "sizes: Psi, N, b, F or L, k, A, alpha_ns, link_GBps)")
    forward = sizes.get("F", 2 * sizes["Psi"] * sizes["L"])
    at = {distributed.Psi: sizes["Psi"], distributed.N: sizes["N"], distributed.b: sizes["b"],
          distributed.F: forward, distributed.k: sizes["k"], distributed.A: sizes["A"],
          distributed.alpha: sizes["alpha_ns"] * 1e-9}
    t = Table("distributed-step", "A data-parallel training step per device",
              ("Stage", "Device", "TFLOPs", "GB sent", "GB", "Network s", "Optimizer s",
               "Comm. s", "Step s", "Overlap s"),
              caption=f"Psi = {sizes['Psi']:,} parameters on N = {sizes['N']} devices, "
                      f"b = {sizes['b']} samples per device, forward {forward:.3g} FLOPs per "
                      "sample (F" + ("" if "F" in sizes else "; by default 2*Psi*L for L "
                      "tokens, a transformer's forward, Kaplan et al. 2020") + "), backward "
                      f"k = {sizes['k']:.3g} times the forward, A = {sizes['A']:,.0f} "
                      "activation bytes per sample, mixed-precision Adam with loss scaling "
                      "(the unscale and overflow check of the gradients it updates from), "
                      f"their FLOPs counted on {o.program}, under the {o.conv.name} "
                      "convention. "
                      "Network: FLOPs at the device's half-precision peak; optimizer: "
                      "the bytes its generated step moves, at the memory bandwidth; "
                      f"communication: ring collectives, a latency of {sizes['alpha_ns']:,} ns a "
                      "round (an assumption: fit yours with the project's collectives "
                      "benchmark) and the "
                      "link's bandwidth" + (f", {sizes['link_GBps']} GB/s (`link_GBps`; "
                                                 "symflop estimate's `--link-gbps`)"
                                              if "link_GBps" in sizes else
                      ", as if all N devices shared one NVLink fabric (across nodes a ring "
                      "runs at its slowest link: set `link_GBps`, e.g. 50 for 400 Gb/s "
                      "InfiniBand per device)") + ". Step: their sum; overlap: "
                      "communication hidden behind the network. GB: memory per device; "
                      "(full): more than the device holds. Devices: " + "; ".join(
                          c.source for c in distributed.CLUSTERS.values()) + ".",
              options={"convention": o.conv.name, "dtype": o.dtype, "exact": o.exact,
                       "stage": o.stage})
    for name in distributed.STAGES:
        for device, cluster in distributed.CLUSTERS.items():
            if "link_GBps" in sizes:
                cluster = replace(cluster, link=sizes["link_GBps"] * 1e9)
            r = {key: float(sp.sympify(v).xreplace(at))
                 for key, v in distributed.distributed_step(
                     name, cluster, convention=o.conv, program=o.stage).items()}
            fits = "" if r["memory"] <= cluster.memory else " (full)"
            t.add(name, device + fits, Num(r["flops"] / 1e12, ",.4g"),
                  Num(r["bytes sent"] / 1e9, ",.3g"), Num(r["memory"] / 1e9, ",.3g"),
                  *(Num(r[key], ",.3g") for key in ("network", "optimizer", "communicate",
                                                     "time", "overlapped")))
    return t


TABLES = {
    "distributed-memory": distributed_memory,
    "distributed-step": distributed_step,
}
