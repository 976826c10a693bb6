"""Pipeline schedules run for real: torch.distributed.pipelining on gloo (CPU).

``run(world, schedule)`` spawns ``world`` processes, one stage each (a small MLP),
runs two steps of ``ScheduleGPipe`` or ``Schedule1F1B`` with 2 x world micro-batches,
and reports the order in which each rank ran forward and backward passes in the
second step (module hooks; the first step also runs the stage's shape inference).
"""

from __future__ import annotations

import torch
from torch import nn

from validation.gloo import spawn


def _orders(rank: int, world: int, schedule: str) -> dict:
    from torch.distributed.pipelining import PipelineStage, Schedule1F1B, ScheduleGPipe
    torch.manual_seed(0)
    stage_module = nn.Sequential(nn.Linear(16, 16), nn.ReLU())
    log: list[str] = []
    stage_module.register_forward_hook(lambda m, i, o: log.append("F"))
    stage_module.register_full_backward_hook(lambda m, gi, go: log.append("B"))
    stage = PipelineStage(stage_module, rank, world, torch.device("cpu"))
    cls = {"1f1b": Schedule1F1B, "gpipe": ScheduleGPipe}[schedule]
    micro = 2 * world
    sched = cls(stage, n_microbatches=micro, loss_fn=lambda y, t: (y - t).square().mean())
    x = torch.randn(2 * micro, 16, generator=torch.Generator().manual_seed(1))
    for _ in range(2):
        log.clear()
        if rank == 0:
            sched.step(x)
        elif rank == world - 1:
            sched.step(target=torch.zeros(2 * micro, 16))
        else:
            sched.step()
    return {"order": log, "micro": micro}


def run(world: int, schedule: str) -> list[dict]:
    """Spawn ``world`` gloo processes; each rank's order of passes in a step."""
    return spawn(world, _orders, schedule)
