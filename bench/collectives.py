"""The alpha-beta model of a ring all-reduce, fitted to gloo on this machine.

Spawns N gloo processes (N = 2 and 4), times ``all_reduce`` of float32 tensors from
2^8 to 2^22 elements (median of ``--repeats`` calls, after a barrier and one warm-up; the sizes take
turns, so that a slow spell of the machine does not fall on one size),
then fits t = alpha * rounds + beta * bytes sent, with rounds and bytes per device
derived from the ring all-reduce (``derivations.distributed``), by least squares on the
relative error, for each N alone and over every (N, size).  (On a 2-core machine, 4
processes share the cores: their rounds wait for the scheduler, not the network.)
Prints alpha, 1/beta (a bandwidth), and each point's relative error; ``--save FILE``
keeps the measurements (the report's figure ``alpha-beta`` draws the committed ones).
Run:  python bench/collectives.py [--repeats 15] [--save derivations/measured/gloo-all-reduce.json]
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
    tensors = {n: torch.ones(n) for n in SIZES}
    for x in tensors.values():
        dist.all_reduce(x)  # warm-up: buffers, connections
    samples: dict[int, list[float]] = {n: [] for n in SIZES}
    for _ in range(repeats):  # sizes interleaved: a slow spell of the machine hits all
        for n, x in tensors.items():
            dist.barrier()
            t = time.perf_counter()
            dist.all_reduce(x)
            samples[n].append(time.perf_counter() - t)
    times = {n: statistics.median(v) for n, v in samples.items()}
    dist.destroy_process_group()
    if rank == 0:
        Path(out, "times.json").write_text(json.dumps(times))


def measure(world: int, repeats: int) -> dict[int, float]:
    import torch.multiprocessing as mp
    with tempfile.TemporaryDirectory(prefix="symflop-ab-") as d:
        mp.spawn(_worker, args=(world, "file://" + os.path.join(d, "rv"), d, repeats),
                 nprocs=world, join=True)
        return {int(k): v for k, v in json.loads(Path(d, "times.json").read_text()).items()}


QUIET_ERROR = 0.10   # a fit whose median error is past this was measured on a busy machine


def worst_median_error(record: dict) -> float:
    from derivations.distributed import measured_all_reduce_fits
    return max(fit.median_error for fit, _ in measured_all_reduce_fits(record).values())


def refusal(record: dict, path: str) -> str | None:
    """Why ``record`` must not replace the measurement in ``path`` (None: it may): a fit
    past QUIET_ERROR that is also worse than the saved one's (a committed measurement once
    gave way to a fit with a median error of 42.6 %)."""
    new = worst_median_error(record)
    old = None
    if Path(path).exists():
        try:
            old = worst_median_error(json.loads(Path(path).read_text()))
        except (ValueError, KeyError, TypeError):
            old = None   # not a measurement: nothing to keep
    if new <= QUIET_ERROR or (old is not None and new <= old):
        return None
    against = f", the saved one's {old:.1%}" if old is not None else ""
    return (f"not saved to {path}: the fit's median error is {new:.1%}{against} (more than "
            f"{QUIET_ERROR:.0%}: a busy machine?); run it again when the machine is quiet, "
            "or give --force")


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from derivations.distributed import measured_all_reduce_fits
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--save", help="write the measurements to this JSON file (the report's "
                    "alpha-beta figure reads derivations/measured/gloo-all-reduce.json)")
    ap.add_argument("--force", action="store_true",
                    help="save even a fit worse than the file's (see QUIET_ERROR)")
    args = ap.parse_args()
    points = [{"devices": world, "elements": n, "seconds": t}
              for world in (2, 4) for n, t in measure(world, args.repeats).items()]
    record = {"what": "gloo all_reduce of float32, median seconds of rank 0",
              "repeats": args.repeats, "cpus": os.cpu_count(),
              "torch": __import__("torch").__version__,
              "date": time.strftime("%Y-%m-%d"), "points": points}
    fits = measured_all_reduce_fits(record)
    for label, (fit, pts) in fits.items():
        print(f"{label}: alpha = {fit.alpha * 1e6:.1f} us, 1/beta = "
              f"{fit.bandwidth / 1e9:.2f} GB/s, relative error median "
              f"{fit.median_error:.1%}, max {fit.max_error:.1%}")
        for p, e in zip(pts, fit.errors, strict=True):
            print(f"   N={p['devices']} {p['elements']:>9,} elements "
                  f"{p['seconds'] * 1e6:>9.1f} us  fit error {e:+.1%}")
    if args.save:
        why = None if args.force else refusal(record, args.save)
        if why:
            print(why)
            sys.exit(1)
        tmp = Path(args.save + ".tmp")
        tmp.write_text(json.dumps(record, indent=1) + "\n")
        tmp.replace(args.save)  # never a half-written file


if __name__ == "__main__":
    main()
