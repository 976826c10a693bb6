"""Run a measurement on several gloo processes of this machine, one result per rank.

Why ``os._exit`` once a rank's result is written: gloo's worker threads can still be
joinable when the interpreter tears a process down, and C++ then aborts it
("terminate called without an active exception", seen in CI after a DTensor run): the
result is complete by then, so the rank leaves without running those destructors.  A
measurement that raises still exits through the normal path, with its traceback.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch.distributed as dist


def _worker(rank: int, world: int, init: str, out: str, measure: Callable, args: tuple
            ) -> None:
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        result = measure(rank, world, *args)
        dist.barrier()      # every rank done before any tears gloo down
        Path(out, f"{rank}.json").write_text(json.dumps(result))
    except BaseException:
        dist.destroy_process_group()
        raise
    dist.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def spawn(world: int, measure: Callable, *args) -> list[dict]:
    """``measure(rank, world, *args)`` (a module-level function returning JSON data) on
    ``world`` gloo processes; the results in rank order."""
    import torch.multiprocessing as mp
    with tempfile.TemporaryDirectory(prefix="symflop-gloo-") as d:
        init = "file://" + os.path.join(d, "rendezvous")
        mp.spawn(_worker, args=(world, init, d, measure, args), nprocs=world, join=True)
        return [json.loads(Path(d, f"{r}.json").read_text()) for r in range(world)]
