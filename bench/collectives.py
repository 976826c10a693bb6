"""The alpha-beta model of a ring all-reduce, fitted to gloo on this machine.

Spawns N gloo processes (N = 2 and 4), times ``all_reduce`` of float32 tensors from
2^8 to 2^22 elements (median of ``--repeats`` calls, after a barrier and one warm-up),
then fits t = alpha * rounds + beta * bytes sent, with rounds and bytes per device
derived from the ring all-reduce (``derivations.distributed``), by least squares on the
relative error over every (N, size), and for each N alone.  (On a 2-core machine, 4
processes share the cores: their rounds wait for the scheduler, not the network.)
Prints alpha, 1/beta (a bandwidth), and each point's relative error; ``--plot
FILE.png`` draws measured against fitted.
Run:  python bench/collectives.py [--repeats 15] [--plot alpha-beta.png]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

SIZES = [2 ** k for k in range(8, 23, 2)]


def _worker(rank: int, world: int, init: str, out: str, repeats: int) -> None:
    import torch
    import torch.distributed as dist
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    times = {}
    for n in SIZES:
        x = torch.ones(n)
        dist.all_reduce(x)  # warm-up: buffers, connections
        samples = []
        for _ in range(repeats):
            dist.barrier()
            t = time.perf_counter()
            dist.all_reduce(x)
            samples.append(time.perf_counter() - t)
        times[n] = statistics.median(samples)
    dist.destroy_process_group()
    if rank == 0:
        Path(out, "times.json").write_text(json.dumps(times))


def measure(world: int, repeats: int) -> dict[int, float]:
    import torch.multiprocessing as mp
    with tempfile.TemporaryDirectory(prefix="symflop-ab-") as d:
        mp.spawn(_worker, args=(world, "file://" + os.path.join(d, "rv"), d, repeats),
                 nprocs=world, join=True)
        return {int(k): v for k, v in json.loads(Path(d, "times.json").read_text()).items()}


def main() -> None:
    import numpy as np
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from derivations.distributed import ring_all_reduce
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--plot", help="write measured against fitted to this PNG")
    args = ap.parse_args()
    rows = []
    for world in (2, 4):
        for n, t in measure(world, args.repeats).items():
            c = ring_all_reduce().at(Psi=n, N=world)
            rows.append((world, n, float(c.rounds), float(c.sent) * 4, t))
    design = np.array([[r[2], r[3]] for r in rows])
    y = np.array([r[4] for r in rows])
    # least squares on relative errors: a 1 ms error weighs the same share at every size
    (alpha, beta), *_ = np.linalg.lstsq(design / y[:, None], np.ones_like(y), rcond=None)
    fit = design @ np.array([alpha, beta])
    rel = (fit - y) / y
    for world in (2, 4):
        k = np.array([r[0] == world for r in rows])
        (a1, b1), *_ = np.linalg.lstsq(design[k] / y[k, None], np.ones(k.sum()), rcond=None)
        e1 = (design[k] @ np.array([a1, b1]) - y[k]) / y[k]
        print(f"N = {world} alone: alpha = {a1 * 1e6:.1f} us, 1/beta = "
              f"{1 / b1 / 1e9:.2f} GB/s, relative error median "
              f"{np.median(np.abs(e1)):.1%}, max {np.max(np.abs(e1)):.1%}")
    print(f"alpha (per round) = {alpha * 1e6:.1f} us, 1/beta = {1 / beta / 1e9:.2f} GB/s "
          f"(bytes sent per device)")
    print(f"{'N':>2} {'elements':>9} {'rounds':>6} {'bytes sent':>11} {'measured':>10} "
          f"{'fitted':>10} {'error':>7}")
    for (world, n, rounds, sent, t), f, e in zip(rows, fit, rel, strict=True):
        print(f"{world:>2} {n:>9,} {rounds:>6.0f} {sent:>11,.0f} {t * 1e6:>8.1f}us "
              f"{f * 1e6:>8.1f}us {e:>+7.1%}")
    print(f"relative error: median {np.median(np.abs(rel)):.1%}, max {np.max(np.abs(rel)):.1%}")
    if args.plot:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(6.4, 3.6))
        for world in (2, 4):
            pts = [(r[1], r[4], f) for r, f in zip(rows, fit, strict=True) if r[0] == world]
            ax.plot([p[0] for p in pts], [p[1] * 1e3 for p in pts], "o", label=f"N={world}")
            ax.plot([p[0] for p in pts], [p[2] * 1e3 for p in pts], "-", linewidth=1)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("float32 elements all-reduced")
        ax.set_ylabel("ms")
        ax.set_title(f"gloo all-reduce: alpha = {alpha * 1e6:.0f} us, "
                     f"1/beta = {1 / beta / 1e9:.2f} GB/s")
        ax.legend()
        fig.savefig(args.plot, bbox_inches="tight")


if __name__ == "__main__":
    main()
