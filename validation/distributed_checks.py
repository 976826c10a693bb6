"""Real distributed runs on CPU (torch.distributed, gloo), measured for the derivations.

``run(world, ...)`` spawns ``world`` processes; each builds the same small model and
measures:

* DDP: the bytes of every gradient bucket handed to the all-reduce, read through a
  communication hook, per step, for each bucket cap asked for;
* ZeroRedundancyOptimizer with Adam: the bytes of optimizer state each rank holds
  after a step, and the parameters it owns;
* FSDP (both of torch's: the flat-parameter one and ``fully_shard``), which runs on CPU
  with gloo: the parameter elements each rank holds.

Results come back as one JSON document per rank.  Tensors are small: the whole run
takes a few seconds, most of it starting the processes.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(),
                         nn.Linear(64, 10))


def _ddp(rank: int, cap_mb: float, steps: int = 2) -> list[list[int]]:
    from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook
    from torch.nn.parallel import DistributedDataParallel
    ddp = DistributedDataParallel(model(), bucket_cap_mb=cap_mb)
    calls: list[int] = []

    def hook(state, bucket):
        calls.append(bucket.buffer().numel() * bucket.buffer().element_size())
        return allreduce_hook(state, bucket)

    ddp.register_comm_hook(None, hook)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.1)
    per_step = []
    g = torch.Generator().manual_seed(rank)
    for _ in range(steps):
        calls.clear()
        x = torch.randn(8, 32, generator=g)
        ddp(x).square().mean().backward()
        opt.step()
        opt.zero_grad()
        per_step.append(list(calls))
    return per_step


def _zero(rank: int) -> dict:
    from torch.distributed.optim import ZeroRedundancyOptimizer
    m = model()
    opt = ZeroRedundancyOptimizer(m.parameters(), optimizer_class=torch.optim.Adam, lr=1e-3)
    g = torch.Generator().manual_seed(rank)
    m(torch.randn(8, 32, generator=g)).square().mean().backward()
    opt.step()
    state = sum(v.numel() * v.element_size() for s in opt.optim.state.values()
                for v in s.values() if isinstance(v, torch.Tensor))
    owned = [p.numel() for group in opt.optim.param_groups for p in group["params"]]
    return {"state_bytes": state, "owned": owned}


def _fsdp(rank: int) -> dict:
    """FSDP's shards: FSDP1 flattens the parameters into one padded tensor, FSDP2
    (``fully_shard``) cuts each parameter along its first axis."""
    from torch.distributed.fsdp import FullyShardedDataParallel, fully_shard
    flat = FullyShardedDataParallel(model(), device_id=torch.device("cpu"))
    flat_numels = [p.numel() for p in flat.parameters()]
    m = model()
    for layer in m:
        if isinstance(layer, nn.Linear):
            fully_shard(layer)
    fully_shard(m)
    local = {n: p.to_local().numel() for n, p in m.named_parameters()}
    g = torch.Generator().manual_seed(rank)
    m(torch.randn(8, 32, generator=g)).square().mean().backward()  # it runs, on CPU
    return {"fsdp1": flat_numels, "fsdp2": local}


def _measure(rank: int, _world: int, caps: list[float]) -> dict:
    return {"ddp": {str(c): _ddp(rank, c) for c in caps}, "zero": _zero(rank),
            "first_bucket_bytes": dist._DEFAULT_FIRST_BUCKET_BYTES, "fsdp": _fsdp(rank)}


def run(world: int, caps: tuple[float, ...] = (25.0,)) -> list[dict]:
    """Spawn ``world`` gloo processes on this machine; one result per rank (each rank
    leaves as ``validation.gloo`` has it leave: gloo's threads once aborted a peer)."""
    from validation.gloo import spawn
    return spawn(world, _measure, list(caps))
