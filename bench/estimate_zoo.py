"""Speed of ``symflop estimate`` over the zoo (``validation.zoo``), as a user runs it.

Per model, medians over ``--repeats`` runs (seconds):
  cli cold   - ``symflop estimate validation.zoo:NAME ...`` in a new process, empty cache;
  cli warm   - the same command again, the cache the cold run filled;
  in cold    - ``estimate(model, ...)`` in a new process that has imported everything,
               ``use_cache=False``: the trace, and every network component derived;
  in warm    - the same call again in that process, after one with the cache on (the
               trace runs again: it is the key; the components are in memory).
The command runs with ``--no-flop-counter`` so that the figures are symflop's own work
(FlopCounterMode's column adds one more forward and backward on meta tensors).
Run:  python bench/estimate_zoo.py [--repeats 3] [NAME ...]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time


def _cli(name: str, cache: str) -> float:
    from validation.zoo import ZOO
    entry = ZOO[name]
    env = {**os.environ, "SYMFLOP_CACHE_DIR": cache, "PYTHONDONTWRITEBYTECODE": "1"}
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "symflop", "estimate", f"validation.zoo:{name}",
                    "--input", entry.input, "--input-dtype", entry.dtype, "--strict",
                    "--no-flop-counter", "--depth", "1"],
                   env=env, check=True, capture_output=True)
    return time.perf_counter() - t


def _in_process(name: str, cache: str) -> tuple[float, float]:
    env = {**os.environ, "SYMFLOP_CACHE_DIR": cache, "PYTHONDONTWRITEBYTECODE": "1"}
    out = subprocess.run([sys.executable, __file__, "--child", name], env=env, check=True,
                         capture_output=True, text=True).stdout.split()
    return float(out[-2]), float(out[-1])


def _child(name: str) -> None:
    from symflop.estimate import estimate
    from symflop.estimate.command import parse_input
    from validation.zoo import ZOO
    entry = ZOO[name]
    model = entry.factory()
    shape = parse_input(entry.input)
    times = []
    for use_cache in (False, True, True):  # cold; fill the cache; warm
        t = time.perf_counter()
        estimate(model, shape, input_dtype=entry.dtype, flop_counter=False,
                 use_cache=use_cache)
        times.append(time.perf_counter() - t)
    print(times[0], times[2])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("names", nargs="*")
    args = ap.parse_args()
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if args.child:
        _child(args.names[0])
        return
    from validation.zoo import ZOO
    names = args.names or list(ZOO)
    print(f"symflop estimate over the zoo, medians of {args.repeats} (seconds)")
    print(f"{'model':12} {'cli cold':>9} {'cli warm':>9} {'in cold':>8} {'in warm':>8}")
    for name in names:
        rows: dict[str, list[float]] = {"cc": [], "cw": [], "ic": [], "iw": []}
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory(prefix="symflop-bench-") as cache:
                rows["cc"].append(_cli(name, cache))
                rows["cw"].append(_cli(name, cache))
            with tempfile.TemporaryDirectory(prefix="symflop-bench-") as cache:
                cold, warm = _in_process(name, cache)
                rows["ic"].append(cold)
                rows["iw"].append(warm)
        m = {k: statistics.median(v) for k, v in rows.items()}
        print(f"{name:12} {m['cc']:9.2f} {m['cw']:9.2f} {m['ic']:8.2f} {m['iw']:8.2f}",
              flush=True)


if __name__ == "__main__":
    main()
