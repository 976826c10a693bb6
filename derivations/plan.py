"""``symflop plan``: every layout of a run over N devices, those whose most loaded
device fits its memory, ranked by the predicted step time.

The search is exhaustive over a finite set: tensor-parallel degrees t that divide N and
fit in a node, pipeline degrees P that divide N/t and the model's blocks, the rest data
parallel; ZeRO stages; micro-batch sizes b (powers of two) that divide the batch each
data-parallel group gets, M micro-batches of them; 1F1B and interleaved 1F1B (2, 4 or
5 chunks a device); no recomputation or every block recomputed.  Each layout is costed
by ``derivations.parallel3d`` from an estimate of the model's tensor-parallel shard (one
trace per t and recomputation; the closed forms are evaluated at each b).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from derivations import distributed, parallel3d, pipeline

ZERO = ("DDP", "ZeRO-1", "ZeRO-2", "ZeRO-3")
MICRO_BATCH_SIZES = (1, 2, 4, 8, 16)
CHUNKS = (2, 4, 5)     # interleaved 1F1B: chunks of layers a device holds


@dataclass
class Candidate:
    layout: parallel3d.Layout
    recompute: bool
    micro_batch: int
    result: dict

    def describe(self) -> str:
        return (f"{self.layout.describe()}, b = {self.micro_batch}"
                + (", every block recomputed" if self.recompute else ""))


@dataclass
class Plan:
    fits: list[Candidate] = field(default_factory=list)
    rejected: dict[str, list[Candidate]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)   # why a t could not be costed
    seconds: float = 0.0
    evaluated: int = 0


def divisors(n: int) -> list[int]:
    return [k for k in range(1, n + 1) if n % k == 0]


def layouts(devices: int, blocks: int, samples: int, tensor: int, precision: str,
            buckets: bool = False) -> list[tuple[parallel3d.Layout, int]]:
    """Every (layout, micro-batch size) of the search at one tensor-parallel degree."""
    out = []
    for pp in divisors(devices // tensor):
        if blocks % pp:
            continue
        data = devices // (tensor * pp)
        if samples % data:
            continue
        for b in MICRO_BATCH_SIZES:
            if (samples // data) % b:
                continue
            micro = samples // data // b
            schedules = [("1f1b", 1)] + [
                ("interleaved-1f1b", v) for v in CHUNKS
                if pp > 1 and blocks % (pp * v) == 0 and micro % pp == 0]
            for schedule, chunks in schedules:
                for zero in ZERO:
                    out.append((parallel3d.Layout(data, tensor, pp, micro, schedule, chunks,
                                                  zero, precision, buckets), b))
    return out


def search(estimates: dict, whole, devices: int, samples: int,
           cluster: distributed.Cluster, network: parallel3d.Network, precision: str,
           sizes: dict, buckets: bool = False) -> Plan:
    """``estimates``: (t, recompute) -> the by-block estimate of one t-way shard, or the
    reason it cannot be made; ``whole``: the unparallel estimate (the model's FLOPs);
    ``samples``: the global batch in samples; ``sizes``: other sizes (the sequence);
    ``buckets``: data parallelism by torch's DDP (a second copy of the gradients)."""
    start = time.perf_counter()
    plan = Plan()
    for (t, recompute), est in sorted(estimates.items()):
        if isinstance(est, str):
            plan.skipped[f"t = {t}" + (" recomputed" if recompute else "")] = est
            continue
        blocks = sum(ln.what == "block" for ln in est.lines)
        for layout, b in layouts(devices, blocks, samples, t, precision, buckets):
            at = {**sizes, "B": b}
            flops = whole.at(whole.flops("forward") + whole.flops("backward"), **at)
            result = parallel3d.step(est, layout, cluster, network, flops, at)
            plan.evaluated += 1
            c = Candidate(layout, recompute, b, result)
            if result["fits"]:
                plan.fits.append(c)
            else:
                plan.rejected.setdefault(_why(result, cluster), []).append(c)
    plan.fits.sort(key=lambda c: (c.result["step"], c.result["memory total"]))
    plan.seconds = time.perf_counter() - start
    return plan


def _why(result: dict, cluster: distributed.Cluster) -> str:
    """Which part overflows: the largest part of the memory over the device's."""
    part = max(result["memory"], key=result["memory"].get)
    return f"{part} the largest part of more than {cluster.memory / 1e9:.3g} GB"


def render_plan(plan: Plan, top: int, samples: int, traced_seconds: float) -> str:
    """The best ``top`` layouts with their memory and time by part, and why the others
    were refused."""
    lines = [f"{len(plan.fits)} of {plan.evaluated} layouts fit ({samples} samples a "
             f"step); estimates traced in {traced_seconds:.1f} s, layouts costed in "
             f"{plan.seconds:.1f} s", ""]
    for k, c in enumerate(plan.fits[:top], 1):
        r = c.result
        mem = ", ".join(f"{part} {v / 1e9:.1f}" for part, v in r["memory"].items() if v)
        tm = ", ".join(f"{part} {v:.3g}" for part, v in r["time"].items() if v)
        lines += [f"{k}. {c.describe()}",
                  f"   step {r['step']:.3g} s, MFU {r.get('mfu', 0):.3f}, bubble "
                  f"{r['bubble']:.3f}",
                  f"   memory of device {r['memory device']}: {r['memory total'] / 1e9:.1f} "
                  f"GB ({mem})",
                  f"   time: {tm} s"]
    if plan.rejected:
        lines += ["", "refused (the most loaded device's memory over the device's):"]
        for why, cs in sorted(plan.rejected.items(), key=lambda kv: -len(kv[1])):
            best = min(cs, key=lambda c: c.result["memory total"])
            lines.append(f"  {len(cs)} layouts, {why}; the least of them "
                         f"{best.result['memory total'] / 1e9:.1f} GB: {best.describe()}")
    for what, why in plan.skipped.items():
        lines.append(f"  {what}: not costed: {why}")
    return "\n".join(lines) + "\n"


# what the engine's ``symflop estimate`` and ``symflop plan`` read of the catalogue's
# parallel layouts (entry point symflop.parallel): here, beside the search, so that
# parallel3d (the step of one layout) needs nothing of this module
PARALLEL = {"Layout": parallel3d.Layout, "table": parallel3d.table,
            "check": parallel3d.check, "networks": parallel3d.NETWORKS,
            "clusters": distributed.CLUSTERS, "precisions": parallel3d.PRECISIONS,
            "schedules": pipeline.SCHEDULES, "stages": tuple(distributed.STAGES),
            "search": search, "render_plan": render_plan}
