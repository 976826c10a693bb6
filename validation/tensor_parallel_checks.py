"""Tensor parallelism run for real: DTensor on gloo (CPU), measured for the derivation.

``run(world)`` spawns ``world`` processes; each parallelizes the Megatron GPT layer of
``validation.megatron`` with ``torch.distributed.tensor.parallel.parallelize_module``
(without and with sequence parallelism), runs one forward and backward pass under
``CommDebugMode``, then one for-loop Adam step under it, and reports the elements of its
parameter shards and every collective (module, forward, backward or optimizer, kind,
elements of the whole tensor, bytes of an element).  CommDebugMode
counts collectives by module and pass; the bytes are read from the same dispatch (its
``__torch_dispatch__`` sees each functional collective with its tensor).  Then two
training steps of a longer sequence (``PEAK_SEQ``: the activations outweigh the
parameters) under ``MemTracker``, each rank's peak of the first and a later step.
"""

from __future__ import annotations

import json

import torch

from validation.gloo import spawn

HIDDEN, HEADS, SEQ, BATCH = 32, 4, 8, 2
PEAK_SEQ, PEAK_BATCH = 64, 4

_KINDS = {"all_reduce": "all-reduce", "all_gather_into_tensor": "all-gather",
          "reduce_scatter_tensor": "reduce-scatter"}


def plans(sequence: bool) -> dict:
    """torch's plan for the layer: Megatron's column/row split, and with ``sequence`` the
    norms cut along the sequence (axis 0 of Megatron's (s, b, h) layout)."""
    from torch.distributed.tensor import Shard
    from torch.distributed.tensor.parallel import (
        ColwiseParallel,
        RowwiseParallel,
        SequenceParallel,
    )
    if not sequence:
        return {"layer.attn.qkv": ColwiseParallel(), "layer.attn.proj": RowwiseParallel(),
                "layer.fc1": ColwiseParallel(), "layer.fc2": RowwiseParallel()}
    cut = Shard(0)
    return {"layer.ln1": SequenceParallel(sequence_dim=0),
            "layer.ln2": SequenceParallel(sequence_dim=0),
            "layer.attn.qkv": ColwiseParallel(input_layouts=cut),
            "layer.attn.proj": RowwiseParallel(output_layouts=cut),
            "layer.fc1": ColwiseParallel(input_layouts=cut),
            "layer.fc2": RowwiseParallel(output_layouts=cut)}


def _measure(world: int, sequence: bool) -> dict:
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import DTensor
    from torch.distributed.tensor.debug import CommDebugMode
    from torch.distributed.tensor.parallel import parallelize_module

    from validation.megatron import OneLayer

    class Recording(CommDebugMode):
        """CommDebugMode, also keeping each collective's tensor size."""

        def __init__(self, phase: str | None = None):
            super().__init__()
            self.records: list = []
            self.phase = phase

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            name = getattr(getattr(func, "_overloadpacket", None), "__name__", "")
            if any(t is DTensor for t in types) or name not in _KINDS:
                return super().__torch_dispatch__(func, types, args, kwargs)
            x = args[0]
            whole = x.numel() * (world if name == "all_gather_into_tensor" else 1)
            phase = self.phase or ("backward" if self.advanced_module_tracker.is_bw
                                   else "forward")
            self.records.append([self.advanced_module_tracker.name, phase, _KINDS[name],
                                 whole, x.element_size()])
            return super().__torch_dispatch__(func, types, args, kwargs)

    torch.manual_seed(0)
    mesh = init_device_mesh("cpu", (world,))
    model = parallelize_module(OneLayer(HIDDEN, HEADS), mesh, plans(sequence))
    params = sum((p.to_local() if isinstance(p, DTensor) else p).numel()
                 for p in model.parameters())
    seq = SEQ // world if sequence else SEQ
    x = torch.randn(seq, BATCH, HIDDEN, generator=torch.Generator().manual_seed(1))
    mode = Recording()
    with mode:
        model(x).square().mean().backward()
    counts = {str(k): v for k, v in mode.get_comm_counts().items()}
    step = Recording("optimizer")
    with step:
        torch.optim.Adam(model.parameters(), foreach=False).step()
    return {"parameters": params, "collectives": mode.records, "counts": counts,
            "step": step.records}


def _peaks(world: int, sequence: bool) -> list[int]:
    """MemTracker's peak of a first and a later step: cross-entropy over the last axis
    against labels the loop holds, for-loop Adam, ``zero_grad(set_to_none=True)``."""
    import torch.nn.functional as F  # noqa: N812 - torch's own spelling
    from torch.distributed._tools.mem_tracker import MemTracker
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor.parallel import parallelize_module

    from validation.megatron import OneLayer

    torch.manual_seed(0)
    model = parallelize_module(OneLayer(HIDDEN, HEADS), init_device_mesh("cpu", (world,)),
                               plans(sequence))
    optimizer = torch.optim.Adam(model.parameters(), foreach=False)
    seq = PEAK_SEQ // world if sequence else PEAK_SEQ
    x = torch.randn(seq, PEAK_BATCH, HIDDEN, generator=torch.Generator().manual_seed(1))
    out = []
    for _ in range(2):
        labels = torch.zeros(seq * PEAK_BATCH, dtype=torch.long)
        tracker = MemTracker()
        tracker.track_external(model, optimizer, x, labels)
        with tracker:
            loss = F.cross_entropy(model(x).reshape(-1, HIDDEN), labels)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            del loss
        out.append(next(iter(tracker.get_tracker_snapshot("peak").values()))["Total"])
    return out


def _both(_rank: int, world: int) -> dict:
    return {"tp": _measure(world, False), "sp": _measure(world, True),
            "peak tp": _peaks(world, False), "peak sp": _peaks(world, True)}


def run(world: int) -> list[dict]:
    """Spawn ``world`` gloo processes on this machine; one result per rank."""
    return spawn(world, _both)


if __name__ == "__main__":
    for r, res in enumerate(run(2)):
        print(r, json.dumps(res, indent=1))
