"""A training step in data, tensor and pipeline parallelism: one device's memory by part
and the step's time by part, from an estimate of the model's tensor-parallel shard.

Inputs: ``symflop estimate`` of one tensor-parallel device's share, with one line per
repeated block (``by_block``) at the micro-batch size b (its hint B); a layout (data d,
tensor t, pipeline P degrees, M micro-batches a step, the schedule, v chunks a device,
the ZeRO stage, the precision); a device and a two-level network.

* Stages: the blocks cut into P v equal runs (device r holds runs r, r + P, ...); the
  lines before the first block (the embedding) go to the first, those after the last
  (the final norm, the head, the loss) to the last.  The gradient sums of tensors read
  twice (the residual stream's) are shared equally by the blocks.
* Memory of a device: its parameters, gradients and optimizer state at the precision's
  bytes a parameter (``derivations.distributed``), sharded over d as the ZeRO stage
  says (with ``buckets``, torch's DistributedDataParallel, whose buckets hold a second
  copy of the gradients unless ``gradient_as_bucket_view``; Megatron-LM's gradients
  live in its buckets); activations: what one micro-batch keeps on the device times the most
  micro-batches the schedule holds there at once (``derivations.pipeline``); under
  ZeRO-3 the largest block gathered whole, the next one prefetched, and the largest
  block's gradient before its reduce-scatter.
* Time: each device's forward and backward of a micro-batch at the device's peak, plus
  its tensor-parallel collectives (on the critical path) and the point-to-point send of
  the block's output (or its gradient) to the next stage, run through the schedule
  (bubble included); then the data-parallel collectives (DDP and ZeRO-1 once a step;
  ZeRO-2 a reduce-scatter after each micro-batch; ZeRO-3 also two all-gathers of the
  parameters a micro-batch) and the optimizer's step at memory bandwidth, not
  overlapped.
* Collectives: ring algorithms (``derivations.distributed``); a group's ring runs at
  the inter-node link as soon as it spans two nodes.  Groups are laid out as
  Megatron-LM lays them: tensor parallel innermost, then data, then pipeline.

Left out, and said so in the table: allocator fragmentation, communication buffers, the
CUDA context and library workspaces, the optimizer's temporaries, and any overlap of
communication with computation.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache, lru_cache

import sympy as sp

from derivations import distributed, optimizers, pipeline
from symflop.errors import UsageError
from symflop.report.tables import Num, Table


@dataclass(frozen=True)
class Network:
    """Links of a cluster: inside a node and between nodes (bytes/s per device each way,
    and seconds per round of a collective), and devices per node."""

    name: str
    intra: float
    inter: float
    alpha_intra: float
    alpha_inter: float
    per_node: int
    source: str


NETWORKS = {
    "dgx-h100": Network("dgx-h100", 450e9, 50e9, 5e-6, 5e-6, 8,
                        "DGX H100: NVLink 4 inside a node of 8 (900 GB/s both ways per "
                        "GPU, 450 each); one 400 Gb/s InfiniBand NDR port per GPU between "
                        "nodes (50 GB/s each way); 5 us a round (an assumption: fit yours "
                        "with bench/collectives.py)"),
    "dgx-a100": Network("dgx-a100", 300e9, 25e9, 5e-6, 5e-6, 8,
                        "DGX A100: NVLink 3 inside a node of 8 (600 GB/s both ways per "
                        "GPU); one 200 Gb/s InfiniBand HDR port per GPU (25 GB/s each "
                        "way); 5 us a round (an assumption)"),
}

PRECISIONS = {
    "bf16-mixed": distributed.Precision("bfloat16", "bfloat16", True, "float32", False),
    "fp16-mixed": distributed.MIXED,
    "fp32": distributed.FULL,
    # torch.autocast: float32 parameters, gradients and state; no master copy
    "bf16-autocast": distributed.FULL,
    "fp16-autocast": distributed.Precision("float32", "float32", False, "float32", True),
}


@dataclass(frozen=True)
class Layout:
    data: int
    tensor: int
    pipeline: int
    micro_batches: int
    schedule: str = "1f1b"
    chunks: int = 1
    zero: str = "ZeRO-1"
    precision: str = "bf16-mixed"
    buckets: bool = False    # torch's DDP: its buckets a second copy of the gradients

    @property
    def devices(self) -> int:
        return self.data * self.tensor * self.pipeline

    def describe(self) -> str:
        v = f", v = {self.chunks}" if self.chunks > 1 else ""
        return (f"d = {self.data}, t = {self.tensor}, P = {self.pipeline}, "
                f"M = {self.micro_batches} ({self.schedule}{v}), {self.zero}, "
                f"{self.precision}")


def check(layout: Layout) -> None:
    if layout.zero not in distributed.STAGES:
        raise UsageError(f"unknown ZeRO stage {layout.zero!r} (known: "
                         f"{', '.join(distributed.STAGES)})")
    if layout.precision not in PRECISIONS:
        raise UsageError(f"unknown precision {layout.precision!r} (known: "
                         f"{', '.join(PRECISIONS)})")
    if min(layout.data, layout.tensor, layout.pipeline, layout.micro_batches) < 1:
        raise UsageError("the data, tensor and pipeline degrees and the micro-batches are "
                         "positive")
    pipeline.order(layout.schedule, layout.pipeline, layout.micro_batches, 0, layout.chunks)


def _link(group_span: int, network: Network) -> tuple[float, float]:
    """(bandwidth, alpha) of a ring over devices ``group_span`` apart at most."""
    if group_span <= network.per_node:
        return network.intra, network.alpha_intra
    return network.inter, network.alpha_inter


@cache
def _ring(kind: str, devices: int) -> tuple[float, float]:
    """(rounds, bytes each device sends per byte of the tensor) of a ring collective."""
    c = distributed.COLLECTIVES[kind](sp.Integer(1), sp.Integer(devices))
    return float(c.rounds), float(c.sent)


def _ring_seconds(kind: str, nbytes: float, devices: int, link: tuple[float, float]
                  ) -> float:
    if devices == 1 or nbytes == 0:
        return 0.0
    rounds, sent = _ring(kind, devices)
    bandwidth, alpha = link
    return rounds * alpha + sent * nbytes / bandwidth


_NUMBERS: dict = {}


def _numbers(est, sizes: dict | None) -> dict:
    """The estimate's figures at ``sizes``, as numbers, once per estimate and sizes (a
    search costs many layouts of one estimate)."""
    key = (id(est), tuple(sorted((sizes or {}).items())))
    hit = _NUMBERS.get(key)
    if hit is not None and hit[0] is est:
        return hit[1]
    values = {est.symbols[n]: v for n, v in {**est.hints, **(sizes or {})}.items()
              if n in est.symbols}

    def at(expr) -> float:
        return float(sp.sympify(expr).xreplace(values))

    out = {"lines": [(ln.name, ln.what, at(ln.flops_forward), at(ln.flops_backward),
                      at(ln.saved_bytes)) for ln in est.lines
                     if ln.what not in ("optimizer", "schedule")],
           "comms": [(c.module, c.phase, c.kind, at(c.bytes)) for c in est.communication
                     if c.phase != "optimizer"],
           "boundaries": {k: at(v) for k, v in est.boundaries.items()}}
    _NUMBERS[key] = (est, out)
    return out


@dataclass(frozen=True)
class Stage:
    """One device's share of a pipeline: per micro-batch, and its parameters."""

    forward_flops: float
    backward_flops: float
    kept_bytes: float
    parameters: int
    largest_block: int                 # elements of its largest block's parameters
    tp_forward_s: float
    tp_backward_s: float
    sends_forward: float               # bytes a micro-batch's pass sends on
    sends_backward: float


def _blocks(est) -> list:
    blocks = [ln for ln in est.lines if ln.what == "block"]
    if len(blocks) < 2:
        raise UsageError("the model has no repeated blocks to cut into pipeline stages "
                         "(estimate it with by_block=True)")
    return blocks


def stages(est, layout: Layout, network: Network, sizes: dict | None = None
           ) -> list[Stage]:
    """Each pipeline device's share of the step, from the by-block estimate, at ``sizes``
    (the micro-batch B and any other size; the trace's where not given)."""
    blocks = _blocks(est)
    runs = layout.pipeline * layout.chunks
    if len(blocks) % runs:
        raise UsageError(f"{len(blocks)} blocks do not cut into P v = {runs} equal stages")
    figures = _numbers(est, sizes)
    names = [line[0] for line in figures["lines"]]
    first = names.index(blocks[0].name)
    block_lines = sum(line[1] == "block" for line in figures["lines"])
    sums = next((line for line in figures["lines"] if line[0] == "(gradient sums)"), None)
    share = sums[3] / block_lines if sums else 0.0
    per_run = len(blocks) // runs
    tp_link = _link(layout.tensor, network)
    index = {b.name: k // per_run for k, b in enumerate(blocks)}
    before = set(names[:first])

    def owner(path: str) -> int:
        """The run a module path's work belongs to."""
        head = path
        while head:
            if head in index:
                return index[head]
            head = head.rpartition(".")[0]
        return 0 if path in before else runs - 1

    runs_fw, runs_bw, runs_kept = [0.0] * runs, [0.0] * runs, [0.0] * runs
    for k, (name, what, fw, bw, kept) in enumerate(figures["lines"]):
        if sums is not None and name == sums[0]:
            continue
        run = owner(name) if what == "block" else (0 if k < first else runs - 1)
        runs_fw[run] += fw
        runs_bw[run] += bw + (share if what == "block" else 0.0)
        runs_kept[run] += kept
    runs_params, runs_largest = _parameters(est, runs, owner, index)
    tp_fw, tp_bw = [0.0] * runs, [0.0] * runs
    for module, phase, kind, nbytes in figures["comms"]:
        seconds = _ring_seconds(kind, nbytes, layout.tensor, tp_link)
        run = owner(module)
        if phase == "forward":
            tp_fw[run] += seconds
        else:
            tp_bw[run] += seconds
    boundary = [figures["boundaries"].get(blocks[(r + 1) * per_run - 1].name, 0.0)
                for r in range(runs)]
    out = []
    for r in range(layout.pipeline):
        own = [c * layout.pipeline + r for c in range(layout.chunks)]
        sends_f = sum(boundary[v] for v in own if v < runs - 1)
        sends_b = sum(boundary[v - 1] for v in own if v > 0)
        out.append(Stage(sum(runs_fw[v] for v in own), sum(runs_bw[v] for v in own),
                         sum(runs_kept[v] for v in own), sum(runs_params[v] for v in own),
                         max(runs_largest[v] for v in own),
                         sum(tp_fw[v] for v in own), sum(tp_bw[v] for v in own),
                         sends_f, sends_b))
    return out


def _parameters(est, runs: int, owner, index: dict) -> tuple[list[int], list[int]]:
    """Parameters of each run of blocks, and of its largest block."""
    params, largest = [0] * runs, [0] * runs
    per_block: dict = {}
    for name, numel, *_ in est.parameter_sizes:
        module = name.rpartition(".")[0]
        params[owner(module)] += numel
        head = module
        while head and head not in index:
            head = head.rpartition(".")[0]
        if head:
            per_block[head] = per_block.get(head, 0) + numel
    for block, n in per_block.items():
        largest[index[block]] = max(largest[index[block]], n)
    return params, largest


def step(est, layout: Layout, cluster: distributed.Cluster, network: Network,
         model_flops: float | None = None, sizes: dict | None = None) -> dict:
    """One device's memory by part (the most loaded device) and the step's time by part.
    ``model_flops``: the unparallel model's FLOPs of one micro-batch (for the model FLOPs
    utilization)."""
    check(layout)
    if est.tensor_parallel is not None and est.tensor_parallel.t != layout.tensor:
        raise UsageError(f"the estimate is of t = {est.tensor_parallel.t}, the layout of "
                         f"t = {layout.tensor}")
    if est.tensor_parallel is None and layout.tensor != 1:
        raise UsageError("the layout is tensor parallel; the estimate is not")
    parts = stages(est, layout, network, sizes)
    precision = PRECISIONS[layout.precision]
    per = distributed.bytes_per_parameter(est.optimizer, precision)
    sharded = distributed.STAGES[layout.zero]
    pp_link = _link(layout.tensor * layout.data * layout.pipeline, network)
    dp_link = _link(layout.tensor * layout.data, network)
    run = _unit_run(layout.schedule, layout.pipeline, layout.micro_batches, layout.chunks)
    memory = []
    for r, s in enumerate(parts):
        held = run.in_flight[r] / layout.chunks      # micro-batches' worth of the device
        m = {part: float(per[part]) * s.parameters / (layout.data if part in sharded else 1)
             for part in ("parameters", "gradients", "optimizer state")}
        m["activations"] = s.kept_bytes * held
        m["gradient buckets"] = (float(per["gradients"]) * s.parameters
                                 if layout.buckets and layout.zero in ("DDP", "ZeRO-1")
                                 else 0.0)
        m["gathered (ZeRO-3)"] = (2 * s.largest_block * float(per["parameters"])
                                  + s.largest_block * float(per["gradients"])
                                  ) if layout.zero == "ZeRO-3" else 0.0
        memory.append(m)
    forward, backward = [], []
    for s in parts:
        p2p_f = s.sends_forward / pp_link[0] + pp_link[1] * (s.sends_forward > 0)
        p2p_b = s.sends_backward / pp_link[0] + pp_link[1] * (s.sends_backward > 0)
        forward.append(s.forward_flops / cluster.peak + s.tp_forward_s + p2p_f)
        backward.append(s.backward_flops / cluster.peak + s.tp_backward_s + p2p_b)
    timed = pipeline.run(layout.schedule, layout.pipeline, layout.micro_batches,
                         layout.chunks, forward, backward)
    compute = max(layout.micro_batches * (s.forward_flops + s.backward_flops) / cluster.peak
                  for s in parts)
    tp = max(layout.micro_batches * (s.tp_forward_s + s.tp_backward_s) for s in parts)
    dp = max(_dp_seconds(layout, s.parameters, per, dp_link) for s in parts)
    opt = max(_optimizer_seconds(est.optimizer, s.parameters, layout, precision, cluster)
              for s in parts)
    total = float(timed.time) + dp + opt
    worst = max(range(len(memory)), key=lambda r: sum(memory[r].values()))
    out = {"memory": memory[worst], "memory device": worst,
           "memory total": sum(memory[worst].values()),
           "fits": sum(memory[worst].values()) <= cluster.memory,
           "time": {"compute": compute, "tensor-parallel comm.": tp,
                    "pipeline bubble and sends": float(timed.time) - compute - tp,
                    "data-parallel comm.": dp, "optimizer": opt},
           "step": total, "bubble": float(run.bubble),
           "in flight": run.in_flight}
    if model_flops is not None:
        global_flops = model_flops * layout.micro_batches * layout.data
        out["mfu"] = global_flops / (total * layout.devices * cluster.peak)
    return out


_unit_run = lru_cache(maxsize=None)(pipeline.run)   # the schedule at unit times


def _dp_seconds(layout: Layout, parameters: int, per: dict, link) -> float:
    """The data-parallel collectives of the gradients a device holds, at their bytes.
    DDP and ZeRO-1 reduce the gradients accumulated over the M micro-batches once a
    step; ZeRO-2 keeps only its shard of them, so it reduce-scatters after each
    micro-batch's backward pass; ZeRO-3 also gathers the parameters twice a
    micro-batch (forward, backward)."""
    if layout.data == 1:
        return 0.0
    n, d = sp.Integer(parameters), sp.Integer(layout.data)
    m = layout.micro_batches
    if layout.zero in ("DDP", "ZeRO-1"):
        parts = [(distributed.step_communication(layout.zero, n, d), 1)]
    elif layout.zero == "ZeRO-2":
        parts = [(distributed.ring_reduce_scatter(n, d), m),
                 (distributed.ring_all_gather(n, d), 1)]
    else:
        parts = [(distributed.ring_all_gather(n, d), 2 * m),
                 (distributed.ring_reduce_scatter(n, d), m)]
    bandwidth, alpha = link
    return sum(times * (float(c.rounds) * alpha
                        + float(c.sent) * float(per["gradients"]) / bandwidth)
               for c, times in parts)


def _optimizer_seconds(optimizer: str, parameters: int, layout: Layout, precision,
                       cluster) -> float:
    """The step over the parameters the device updates, at its memory bandwidth (the
    bytes its generated loop moves: an elementwise step is bound by them)."""
    c, d = distributed._derived(optimizers.COMPONENTS[optimizer])
    shard = parameters / (layout.data if "optimizer state" in distributed.STAGES[layout.zero]
                          else 1)
    moved = dict(d.memory_at("lowered").moved)["step"].xreplace({c.dims["P"]: shard})
    return float(moved) * distributed.dtype_bytes(precision.state) / cluster.bandwidth


def fsdp_gathers(est, world: int) -> dict[str, list[int]]:
    """What each rank all-gathers under FSDP2 with every repeated block its own unit and
    the rest at the root (``reshard_after_forward``): elements of each gather, by pass.
    A unit's parameters are gathered whole, each padded to whole rows on every rank
    (``fully_shard`` cuts the first axis as torch.chunk does); the blocks are gathered
    again for the backward pass, the root (not resharded after its forward) is not."""
    blocks = [ln.name for ln in _blocks(est)]
    units: dict[str, int] = {}
    for name, _numel, _size, _trainable, shape in est.parameter_sizes:
        module = name.rpartition(".")[0]
        unit = next((b for b in blocks if module.startswith(b + ".")), "(root)")
        units[unit] = units.get(unit, 0) + distributed.fsdp_per_parameter_shard(
            [shape], world, 0) * world
    forward = [units["(root)"]] + [units[b] for b in blocks] if "(root)" in units \
        else [units[b] for b in blocks]
    return {"forward": forward, "backward": [units[b] for b in blocks]}


LEFT_OUT = ("left out: allocator fragmentation, communication buffers, the CUDA context "
            "and library workspaces, the optimizer's temporaries, and any overlap of "
            "communication with computation")


def table(est, layouts: list[Layout], cluster: distributed.Cluster, network: Network,
          model_flops: float | None = None, sizes: dict | None = None) -> Table:
    """One row per layout: the most loaded device's memory by part, the step's time by
    part, the bubble and (given the model's FLOPs) the utilization."""
    at = {**est.hints, **(sizes or {})}
    t = Table("parallel-3d", f"A 3D-parallel step of {est.model}",
              ("Layout", "Params GB", "Grads GB", "Optim. GB", "Activ. GB", "Gathered GB",
               "Total GB", "Compute s", "TP comm. s", "Bubble+p2p s", "DP comm. s",
               "Optim. s", "Step s", "Bubble", "MFU"),
              caption=(f"{cluster.source}; {network.source}. Per micro-batch: the "
                       f"estimate at {', '.join(f'{k}={v}' for k, v in at.items())}. "
                       f"{LEFT_OUT}."))
    for layout in layouts:
        r = step(est, layout, cluster, network, model_flops, sizes)
        m, tm = r["memory"], r["time"]
        fits = "" if r["fits"] else " (full)"
        t.add(layout.describe() + fits,
              *(Num(m[k] / 1e9, ",.2f") for k in ("parameters", "gradients",
                                                  "optimizer state", "activations",
                                                  "gathered (ZeRO-3)")),
              Num(r["memory total"] / 1e9, ",.2f"),
              *(Num(tm[k], ",.3g") for k in ("compute", "tensor-parallel comm.",
                                             "pipeline bubble and sends",
                                             "data-parallel comm.", "optimizer")),
              Num(r["step"], ",.3g"), Num(r["bubble"], ".3f"),
              Num(r.get("mfu", 0.0), ".3f") if "mfu" in r else "")
    return t
