"""The plan's verdict under a memory cap, run for real on gloo (CPU) under MemTracker.

A stack of eight linear blocks (parameters far above its activations, as in the models
that need sharding) is planned on 2 and 4 devices with a memory cap between the
predicted DDP and ZeRO-3 figures; ``run(world)`` then trains it data-parallel on
``world`` gloo processes three ways (DDP; DDP with ZeroRedundancyOptimizer, ZeRO-1;
FSDP2's ``fully_shard`` of each block, ZeRO-3), each with a for-loop Adam, and reports
each rank's peak over a steady step (the second) from
``torch.distributed._tools.mem_tracker.MemTracker``.
"""

from __future__ import annotations

import torch
from torch import nn

from validation.gloo import spawn

WIDTH, BLOCKS, BATCH = 256, 8, 4
CONFIGS = ("DDP", "ZeRO-1", "ZeRO-3")


class Stack(nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList(nn.Linear(WIDTH, WIDTH) for _ in range(BLOCKS))

    def forward(self, x):
        for block in self.blocks:
            x = torch.relu(block(x))
        return x


def build() -> nn.Module:
    torch.manual_seed(0)
    return Stack()


def _step(model, optimizer, x) -> None:
    model(x).square().mean().backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def _peak(config: str, world: int, rank: int) -> int:
    from torch.distributed._tools.mem_tracker import MemTracker
    model = build()
    if config == "ZeRO-3":
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard
        mesh = init_device_mesh("cpu", (world,))
        for block in model.blocks:
            fully_shard(block, mesh=mesh)
        fully_shard(model, mesh=mesh)
        optimizer = torch.optim.Adam(model.parameters(), foreach=False)
    else:
        from torch.nn.parallel import DistributedDataParallel
        model = DistributedDataParallel(model)
        if config == "ZeRO-1":
            from torch.distributed.optim import ZeroRedundancyOptimizer
            optimizer = ZeroRedundancyOptimizer(model.parameters(), torch.optim.Adam,
                                                foreach=False)
        else:
            optimizer = torch.optim.Adam(model.parameters(), foreach=False)
    x = torch.randn(BATCH, WIDTH, generator=torch.Generator().manual_seed(rank))
    _step(model, optimizer, x)                      # the optimizer's state allocated
    tracker = MemTracker()
    tracker.track_external(model, optimizer, x)
    with tracker:
        _step(model, optimizer, x)
    snap = next(iter(tracker.get_tracker_snapshot("peak").values()))
    return int(snap["Total"])


def _all(rank: int, world: int) -> dict:
    return {c: _peak(c, world, rank) for c in CONFIGS}


def run(world: int) -> list[dict]:
    """Spawn ``world`` gloo processes; each rank's MemTracker peak for each config."""
    return spawn(world, _all)


if __name__ == "__main__":
    for r, res in enumerate(run(2)):
        print(r, res)
