"""Pipeline parallelism: a model's layers cut into P stages, a step's batch into M
micro-batches, and the order in which each stage runs their forward and backward
passes (its schedule).

Each schedule is written as the order of one stage's actions, as its paper gives it:

* GPipe (Huang et al. 2019): every forward pass, then every backward pass.
* 1F1B (PipeDream-Flush; Narayanan et al. 2021, sec. 2.2.1): stage r runs P - 1 - r
  forward passes, then one forward and one backward in turn, then the remaining
  backward passes; it holds at most P - r micro-batches' activations, not M.
* Interleaved 1F1B (Narayanan et al. 2021, sec. 2.2.2): each device holds v chunks
  of layers (stages r, r + P, ...); forward passes go in groups of P micro-batches
  through one chunk after another, backward passes the other way round.

The times, the bubble and the activations each stage holds are derived by running the
order against its dependencies (a forward pass after the one before it, a backward
pass after the one after it and after its own forward), with a forward pass of one
stage taking ``forward`` and a backward ``backward``: nothing here is a typed formula.
``tests/test_pipeline_parallel.py`` checks the orders against torch's
``torch.distributed.pipelining`` action tables and the derived bubble against the
papers' (P - 1)/M and (P - 1)/(v M).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from symflop.errors import UsageError

SCHEDULES = ("gpipe", "1f1b", "interleaved-1f1b")


@dataclass(frozen=True)
class Action:
    kind: str          # "F" or "B"
    micro: int         # micro-batch
    chunk: int = 0     # the device's chunk of layers (interleaved schedules)


def _check(schedule: str, stages: int, micro: int, chunks: int) -> None:
    if schedule not in SCHEDULES:
        raise UsageError(f"unknown pipeline schedule {schedule!r} (known: "
                         f"{', '.join(SCHEDULES)})")
    if stages < 1 or micro < 1 or chunks < 1:
        raise UsageError("a pipeline needs at least one stage, micro-batch and chunk")
    if schedule != "interleaved-1f1b" and chunks != 1:
        raise UsageError(f"{schedule} runs one chunk of layers per device")
    if schedule == "interleaved-1f1b" and micro % stages:
        raise UsageError(f"interleaved 1F1B needs the micro-batches ({micro}) in whole "
                         f"groups of the stages ({stages})")


def order(schedule: str, stages: int, micro: int, rank: int, chunks: int = 1
          ) -> list[Action]:
    """The actions device ``rank`` (0 first) runs, in order."""
    _check(schedule, stages, micro, chunks)
    if schedule == "gpipe":
        return [Action("F", m) for m in range(micro)] + [Action("B", m) for m in range(micro)]
    if schedule == "1f1b":
        warmup = min(stages - 1 - rank, micro)
        out = [Action("F", m) for m in range(warmup)]
        for k in range(micro - warmup):
            out += [Action("F", warmup + k), Action("B", k)]
        return out + [Action("B", m) for m in range(micro - warmup, micro)]
    total = micro * chunks

    def forward(k: int) -> Action:
        group, within = divmod(k, stages * chunks)
        return Action("F", group * stages + within % stages, within // stages)

    def backward(k: int) -> Action:
        group, within = divmod(k, stages * chunks)
        return Action("B", group * stages + within % stages, chunks - 1 - within // stages)

    warmup = min((stages - rank - 1) * 2 + (chunks - 1) * stages, total)
    out = [forward(k) for k in range(warmup)]
    for k in range(total - warmup):
        out += [forward(warmup + k), backward(k)]
    return out + [backward(k) for k in range(total - warmup, total)]


@dataclass(frozen=True)
class Run:
    """One step of a schedule, run against its dependencies."""

    schedule: str
    stages: int
    micro: int
    chunks: int
    time: Fraction                 # the step's time, first action to last
    busy: Fraction                 # the busiest device's computing time
    in_flight: tuple[int, ...]     # most micro-batch chunks each device holds at once
    starts: dict                   # (rank, Action) -> start time

    @property
    def bubble(self) -> Fraction:
        """Idle time over computing time (Narayanan et al.'s bubble fraction)."""
        return (self.time - self.busy) / self.busy


def run(schedule: str, stages: int, micro: int, chunks: int = 1,
        forward=Fraction(1), backward=Fraction(2)) -> Run:
    """Each device's actions in ``order``, each as early as its dependencies allow; a
    chunk's passes take 1/chunks of a stage's.  ``forward`` and ``backward``: one
    micro-batch's time through a device's layers, the same on every device or one per
    device (exact with Fractions, in seconds with floats)."""
    each = not isinstance(forward, (list, tuple))
    fw = [forward / chunks] * stages if each else [f / chunks for f in forward]
    bw = [backward / chunks] * stages if each else [b_ / chunks for b_ in backward]
    if len(fw) != stages or len(bw) != stages:
        raise UsageError(f"one forward and one backward time per device ({stages})")
    orders = [order(schedule, stages, micro, r, chunks) for r in range(stages)]
    virtual = stages * chunks            # stages of layers: chunk c of rank r is c P + r
    done: dict = {}
    starts: dict = {}
    clock = [Fraction(0)] * stages
    position = [0] * stages
    while any(position[r] < len(orders[r]) for r in range(stages)):
        moved = False
        for r in range(stages):
            if position[r] == len(orders[r]):
                continue
            act = orders[r][position[r]]
            v = act.chunk * stages + r
            if act.kind == "F":
                needs = [("F", v - 1, act.micro)] if v > 0 else []
            else:
                needs = [("F", v, act.micro)] + ([("B", v + 1, act.micro)]
                                                 if v < virtual - 1 else [])
            if any(n not in done for n in needs):
                continue
            start = max([clock[r]] + [done[n] for n in needs])
            starts[(r, act)] = start
            clock[r] = start + (fw[r] if act.kind == "F" else bw[r])
            done[(act.kind, v, act.micro)] = clock[r]
            position[r] += 1
            moved = True
        if not moved:
            raise UsageError(f"{schedule} deadlocks at P = {stages}, M = {micro}")
    held = []
    for r in range(stages):
        live = peak = 0
        for act in orders[r]:
            live += 1 if act.kind == "F" else -1
            peak = max(peak, live)
        held.append(peak)
    busy = max(micro * chunks * (fw[r] + bw[r]) for r in range(stages))
    return Run(schedule, stages, micro, chunks, max(clock), busy, tuple(held), starts)


def point_to_point(stages: int, micro: int, chunks: int, rank: int) -> dict[str, int]:
    """Sends of one device in a step, in activations of one micro-batch at a stage
    boundary: each forward pass sends its output to the next stage, each backward pass
    its input's gradient to the one before (the model's first and last stages send
    nothing out of the pipeline)."""
    virtual = stages * chunks
    own = [c * stages + rank for c in range(chunks)]
    return {"forward": micro * sum(v < virtual - 1 for v in own),
            "backward": micro * sum(v > 0 for v in own)}
