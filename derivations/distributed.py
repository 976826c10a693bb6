"""Distributed training: collectives, data parallelism, ZeRO sharding, mixed precision.

Sizes are symbols: Psi parameters, N devices, K gradient buckets, M micro-batches.

* Collectives are written as their rounds (``symflop.cost.collectives``): the ring
  algorithms of Thakur, Rabenseifner & Gropp (2005) that NCCL and gloo use for large
  messages; the engine derives elements sent per device, rounds and additions.
* Data parallelism (DDP, Li et al. 2020, VLDB): one all-reduce of the gradients per
  step, cut into buckets (each its own all-reduce: more rounds, the same bytes); with
  M micro-batches of gradient accumulation under ``no_sync`` still one per step,
  without it one per micro-batch.
* Mixed precision (Micikevicius et al. 2018): half-precision parameters and
  gradients, a float32 master copy, the optimizer's state in float32; the bytes per
  parameter follow from the optimizer component's state tensors (Adam: m and v).  The
  loss scaling that float16 needs is the catalogue's ``loss-scaling``
  (``derivations.precision``): its unscale and overflow check join the step.
* ZeRO (Rajbhandari et al. 2020, SC): stage 1 shards the optimizer state (with the
  master copy), stage 2 the gradients too, stage 3 the parameters too (FSDP's full
  sharding): a sharded part costs 1/N of itself per device.  Communication per step:
  DDP and stages 1 and 2 reduce-scatter the gradients and all-gather the parameters
  (an all-reduce's volume); stage 3 all-gathers the parameters twice (forward and
  backward) and reduce-scatters the gradients.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import sympy as sp

from derivations import optimizers
from derivations import precision as precisions
from symflop.cost.collectives import Collective, Phase, fit_alpha_beta, repeat, sequence
from symflop.cost.memory import dtype_bytes
from symflop.derive import derive
from symflop.errors import UsageError

Psi, N, K, M = sp.symbols("Psi N K M", integer=True, positive=True)
THAKUR = "Thakur, Rabenseifner & Gropp (2005), IJHPCA 19(1)"


# -- collectives ---------------------------------------------------------------------------
def ring_reduce_scatter(elements: sp.Expr = Psi, devices: sp.Expr = N) -> Collective:
    """N - 1 rounds: send a chunk of elements/N, receive one, add it to your own."""
    chunk = elements / devices
    return Collective("reduce-scatter", "ring reduce-scatter: each device ends with the sum "
                      "of one chunk", THAKUR, elements, devices,
                      (Phase("reduce-scatter", devices - 1, chunk, chunk, chunk),))


def ring_all_gather(elements: sp.Expr = Psi, devices: sp.Expr = N) -> Collective:
    """N - 1 rounds: pass on a chunk of elements/N, keep the one received."""
    chunk = elements / devices
    return Collective("all-gather", "ring all-gather: each device ends with every chunk",
                      THAKUR, elements, devices,
                      (Phase("all-gather", devices - 1, chunk, chunk),))


def ring_all_reduce(elements: sp.Expr = Psi, devices: sp.Expr = N) -> Collective:
    """A reduce-scatter, then an all-gather of the reduced chunks."""
    return sequence("all-reduce", "ring all-reduce: reduce-scatter then all-gather",
                    ring_reduce_scatter(elements, devices), ring_all_gather(elements, devices))


def tree_broadcast(elements: sp.Expr = Psi, devices: sp.Expr = N) -> Collective:
    """Binomial tree: in each of ceil(log2 N) rounds every device that has the data sends
    all of it to one that has not (the root sends in every round)."""
    rounds = sp.ceiling(sp.log(devices, 2))
    return Collective("broadcast", "binomial-tree broadcast from one device (the root's "
                      "figures)", THAKUR, elements, devices,
                      (Phase("broadcast", rounds, elements, sp.Integer(0)),))


COLLECTIVES = {"all-reduce": ring_all_reduce, "reduce-scatter": ring_reduce_scatter,
               "all-gather": ring_all_gather, "broadcast": tree_broadcast}


# -- data parallelism ----------------------------------------------------------------------
def ddp_gradient_sync(buckets: sp.Expr = K, micro_batches: sp.Expr = M,
                      no_sync: bool = True) -> Collective:
    """DDP's gradient all-reduce per optimizer step: K buckets of Psi/K gradients each,
    once per step (micro-batches accumulated under ``no_sync``) or once per micro-batch."""
    per_bucket = ring_all_reduce(Psi / buckets, N)
    times = buckets if no_sync else buckets * micro_batches
    return repeat(per_bucket, times, "DDP gradient all-reduce")


def ddp_buckets(numels: list[int], element_bytes: int, cap_bytes: int,
                first_cap_bytes: int) -> list[int]:
    """DDP's buckets from its second step on (torch's ``_compute_bucket_assignment_by_size``
    over the order in which gradients became ready): gradients in that order, filled
    into a bucket until it holds ``first_cap`` bytes or more, then ``cap`` each; returns
    the bytes of each bucket.  (The first step sends all gradients as one bucket;
    ``first_cap`` is 1 MiB only when the cap is left at its default, else the cap.)"""
    sizes, current, limit = [], 0, first_cap_bytes
    for n in numels:
        current += n * element_bytes
        if current >= limit:
            sizes.append(current)
            current, limit = 0, cap_bytes
    if current:
        sizes.append(current)
    return sizes


def zero_partition(numels: list[int], devices: int) -> list[list[int]]:
    """How ZeroRedundancyOptimizer shares whole parameter tensors among devices: largest
    first, each to the device holding the fewest elements so far (torch's rule); the
    ideal Psi/N per device holds only as tensors allow."""
    ranks: list[list[int]] = [[] for _ in range(devices)]
    for n in sorted(numels, reverse=True):
        min(ranks, key=sum).append(n)
    return ranks


def fsdp_flat_shard(numels: list[int], devices: int) -> int:
    """FSDP's flat parameter: every parameter in one tensor, padded to a multiple of N
    and cut in N equal shards: ceil(Psi/N) elements per device."""
    return -(-sum(numels) // devices)


def fsdp_per_parameter_shard(shapes: list[tuple[int, ...]], devices: int, rank: int
                             ) -> int:
    """``fully_shard``: each parameter cut along its first axis in N chunks of
    ceil(rows/N) rows (the last ones shorter or empty), as ``torch.chunk`` cuts."""
    total = 0
    for shape in shapes:
        rows, rest = shape[0], 1
        for s in shape[1:]:
            rest *= s
        size = -(-rows // devices)
        total += max(0, min(size, rows - rank * size)) * rest
    return total


# -- mixed precision and ZeRO ----------------------------------------------------------------
@dataclass(frozen=True)
class Precision:
    """Element types of the parameters and gradients the model computes with, whether
    the optimizer keeps a float32 master copy of the parameters, and whether the loss is
    scaled (float16 gradients underflow without it)."""

    parameters: str = "float16"
    gradients: str = "float16"
    master: bool = True
    state: str = "float32"
    loss_scaling: bool = True


MIXED = Precision()
FULL = Precision("float32", "float32", False, "float32", False)


def bytes_per_parameter(optimizer: str = "adam", precision: Precision = MIXED) -> dict:
    """Bytes each parameter costs, by part, from the optimizer's state tensors (the
    per-tensor scalars, such as Adam's step count, are left out: a few bytes per tensor)."""
    c = optimizers.COMPONENTS[optimizer]()
    P = c.dims["P"]
    state = sp.Poly(derive(c).memory.elements("state"), P).coeff_monomial(P)
    return {
        "parameters": dtype_bytes(precision.parameters),
        "gradients": dtype_bytes(precision.gradients),
        "optimizer state": (dtype_bytes("float32") if precision.master else 0)
        + state * dtype_bytes(precision.state),
    }


STAGES = {
    "DDP": (),
    "ZeRO-1": ("optimizer state",),
    "ZeRO-2": ("optimizer state", "gradients"),
    "ZeRO-3": ("optimizer state", "gradients", "parameters"),
}


def per_device_memory(stage: str, optimizer: str = "adam", precision: Precision = MIXED,
                      parameters: sp.Expr = Psi, devices: sp.Expr = N) -> dict:
    """Bytes of parameters, gradients and optimizer state on each device."""
    sharded = STAGES[stage]
    return {part: b * parameters / (devices if part in sharded else 1)
            for part, b in bytes_per_parameter(optimizer, precision).items()}


def step_communication(stage: str, parameters: sp.Expr = Psi, devices: sp.Expr = N
                       ) -> Collective:
    """The collectives of one optimizer step, per device (elements of the model's type)."""
    rs = ring_reduce_scatter(parameters, devices)
    ag = ring_all_gather(parameters, devices)
    if stage == "DDP":
        return ring_all_reduce(parameters, devices)
    if stage in ("ZeRO-1", "ZeRO-2"):
        return sequence(stage, "reduce-scatter the gradients, all-gather the updated "
                        "parameters", rs, ag)
    return sequence(stage, "all-gather the parameters (forward, backward), reduce-scatter "
                    "the gradients", ag, ag, rs)


# -- a distributed training step ---------------------------------------------------------------
@dataclass(frozen=True)
class Cluster:
    """A device and its interconnect, from published figures (the time model's inputs)."""

    name: str
    peak: float       # dense half-precision (tensor-core) FLOP/s per device
    bandwidth: float  # device memory bytes/s
    link: float       # interconnect bytes/s per device, each direction
    memory: float     # bytes of device memory
    source: str


CLUSTERS = {
    "h100": Cluster("h100", 989.4e12, 3.35e12, 450e9, 80e9,
                    "H100 SXM5: BF16 dense 989.4 TFLOP/s; HBM3 3.35 TB/s; NVLink 4, "
                    "900 GB/s both ways (450 each); 80 GB"),
    "h200": Cluster("h200", 989.4e12, 4.8e12, 450e9, 141e9,
                    "H200 SXM: BF16 dense 989.4 TFLOP/s; HBM3e 4.8 TB/s; NVLink 4, "
                    "900 GB/s both ways; 141 GB"),
    "a100": Cluster("a100", 312e12, 2.039e12, 300e9, 80e9,
                    "A100 SXM 80GB: BF16 dense 312 TFLOP/s; HBM2e 2.04 TB/s; NVLink 3, "
                    "600 GB/s both ways (300 each); 80 GB"),
}

# Sizes of the step: per-device batch b, forward FLOPs per sample F (of the network, given,
# as in the training-step composite), backward over forward k, activation bytes kept per
# sample A, seconds per round of a collective alpha.
b, F, A, k = sp.symbols("b F A k", positive=True)
alpha = sp.Symbol("alpha", positive=True)


@cache
def _derived(build) -> tuple:
    """A catalogue component and its derivation, once per process (a table asks for the
    same one on every row)."""
    c = build()
    return c, derive(c)


def distributed_step(stage: str, cluster: Cluster, optimizer: str = "adam",
                     precision: Precision = MIXED, convention: str = "default",
                     program: str = "reused") -> dict[str, sp.Expr]:
    """One data-parallel step on each device: FLOPs (network forward and backward on its
    b samples, the optimizer on the parameters it updates, with mixed precision the loss
    scaling's unscale and overflow check of their gradients, the collectives' additions),
    bytes sent, memory, and the time, in three parts: the network at the device's peak,
    the optimizer at its memory bandwidth (an elementwise step moves more bytes than it
    has FLOPs to hide them), the communication at alpha per round and the link's
    bandwidth; ``time`` adds them, ``overlapped`` takes the network and the rest in
    parallel (communication hidden behind the backward pass).  ``convention`` and
    ``program`` (a stage: "reused" is the optimized program) say how the optimizer's and
    the unscale's FLOPs are counted.  Under ZeRO the devices also
    agree on the overflow flag (an all-reduce of one value): not counted."""
    c, d = _derived(optimizers.COMPONENTS[optimizer])
    shard = Psi / N if "optimizer state" in STAGES[stage] else Psi
    sub = {c.dims["P"]: shard}
    step = d.counts("step", convention, program).total.xreplace(sub)
    # bytes the generated step moves (the lowered stage: one loop, state in place)
    moved = dict(d.memory_at("lowered").moved)["step"].xreplace(sub) \
        * dtype_bytes(precision.state)
    comm = step_communication(stage)
    if precision.loss_scaling:  # unscale and check the gradients the device updates from
        ls, scaling = _derived(precisions.loss_scaling)
        at = {ls.dims["P"]: shard}
        step += scaling.counts("unscale", convention, program).total.xreplace(at)
        moved += dict(scaling.memory_at("lowered").moved)["unscale"].xreplace(at) \
            * dtype_bytes(precision.gradients)
    sent = comm.sent * dtype_bytes(precision.parameters)
    network = (1 + k) * F * b / cluster.peak
    update = moved / cluster.bandwidth
    communicate = comm.rounds * alpha + sent / cluster.link
    return {
        "flops": sp.expand((1 + k) * F * b + step + comm.additions),
        "bytes sent": sp.factor(sent),
        "memory": sp.factor(sp.Add(*per_device_memory(stage, optimizer, precision).values())
                            + A * b),
        "network": network, "optimizer": update, "communicate": communicate,
        "time": network + update + communicate,
        "overlapped": sp.Max(network, communicate) + update,
    }


# -- the alpha-beta model against measurements ----------------------------------------------
MEASURED = Path(__file__).with_name("measured") / "gloo-all-reduce.json"


def read_measurement() -> dict:
    """The committed all-reduce measurement (``bench/collectives.py --save``)."""
    if not MEASURED.is_file():
        raise UsageError(f"no all-reduce measurement at {MEASURED}: make one with python "
                         f"bench/collectives.py --save {MEASURED}")
    return json.loads(MEASURED.read_text())


def measured_all_reduce_fits(record: dict | None = None) -> dict[str, tuple]:
    """alpha-beta fits of measured all-reduce times (``bench/collectives.py``; by default
    the committed measurement): for each device count alone, and for all together;
    each label maps to (fit, the points it was fitted to)."""
    if record is None:
        record = read_measurement()
    points = record["points"]
    out = {}
    groups = [(f"N = {n} alone", [p for p in points if p["devices"] == n])
              for n in sorted({p["devices"] for p in points})]
    for label, pts in groups + [("all N, one fit", points)]:
        out[label] = (fit_alpha_beta([(ring_all_reduce().at(Psi=p["elements"],
                                                            N=p["devices"]),
                                       dtype_bytes("float32"), p["seconds"])
                                      for p in pts]), pts)
    return out
