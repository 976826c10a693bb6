"""FSDP2 (``fully_shard``) run for real on gloo: what each rank gathers, measured.

``run(world)`` spawns ``world`` processes; each shards the GPT of
``validation.megatron`` layer by layer (and the rest at the root), runs one forward
and backward pass, and records every all-gather (module, pass, elements gathered)
through ``CommDebugMode``'s dispatch.  The derivation says a unit gathers its
parameters whole, each padded to whole rows on every rank (torch.chunk's cut), once in
the forward pass and, resharded after it, once more in the backward pass.
"""

from __future__ import annotations

import torch

from validation.gloo import spawn

VOCAB, HIDDEN, HEADS, LAYERS, SEQ, BATCH = 64, 32, 2, 3, 8, 2


def build():
    from validation.megatron import GPT
    torch.manual_seed(0)
    return GPT(VOCAB, HIDDEN, HEADS, LAYERS)


def _measure(_rank: int, world: int) -> dict:
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.tensor import DTensor
    from torch.distributed.tensor.debug import CommDebugMode

    class Gathers(CommDebugMode):
        def __init__(self):
            super().__init__()
            self.records: list = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            name = getattr(getattr(func, "_overloadpacket", None), "__name__", "")
            if name == "_allgather_base_" and not any(t is DTensor for t in types):
                self.records.append([self.advanced_module_tracker.name,
                                     "backward" if self.advanced_module_tracker.is_bw
                                     else "forward", args[0].numel()])
            return super().__torch_dispatch__(func, types, args, kwargs)

    mesh = init_device_mesh("cpu", (world,))
    model = build()
    for layer in model.layers:
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    ids = torch.randint(0, VOCAB, (BATCH, SEQ), generator=torch.Generator().manual_seed(1))
    mode = Gathers()
    with mode:
        model(ids).float().square().mean().backward()
    return {"gathers": mode.records}


def run(world: int) -> list[dict]:
    return spawn(world, _measure)


if __name__ == "__main__":
    for r, res in enumerate(run(2)):
        print(r, res)
