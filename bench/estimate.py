"""Speed of ``symflop estimate`` on ResNet-50 (B symbolic, 3x224x224, Adam, cross-entropy).

Each figure is timed in a fresh process, around the ``estimate`` call only (imports,
and building the torch model, are reported apart); medians over ``--repeats`` runs.
  cold     - an empty derivation cache: every network component derived anew;
  warm     - a populated cache (a new process, as a second run of the command is);
  again    - a second estimate in the same process (a notebook re-running a cell);
  command  - the whole ``symflop estimate ... --depth 1`` command, wall clock, warm cache.
Targets: cold <= 10 s, warm <= 2 s.
Run:  python bench/estimate.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

TARGETS = {"cold": 10.0, "warm": 2.0}


def child() -> None:
    t0 = time.perf_counter()
    import torch  # noqa: F401

    from symflop.estimate import estimate
    from validation.resnet50 import resnet50
    t1 = time.perf_counter()
    model = resnet50()
    t2 = time.perf_counter()
    estimate(model, ("B", 3, 224, 224), loss="cross-entropy", optimizer="adam")
    t3 = time.perf_counter()
    estimate(model, ("B", 3, 224, 224), loss="cross-entropy", optimizer="adam")
    t4 = time.perf_counter()
    print(json.dumps({"imports": t1 - t0, "model": t2 - t1, "estimate": t3 - t2,
                      "again": t4 - t3}))


def run(cache: str) -> dict:
    env = {**os.environ, "SYMFLOP_CACHE_DIR": cache, "PYTHONDONTWRITEBYTECODE": "1"}
    out = subprocess.run([sys.executable, __file__, "--child"], env=env, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child()
        return
    cold, warm, again, imports, command = [], [], [], [], []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory(prefix="symflop-bench-") as cache:
            first = run(cache)
            second = run(cache)
            cold.append(first["estimate"])
            warm.append(second["estimate"])
            again.append(second["again"])
            imports.append(second["imports"])
            env = {**os.environ, "SYMFLOP_CACHE_DIR": cache, "PYTHONDONTWRITEBYTECODE": "1"}
            t = time.perf_counter()
            subprocess.run([sys.executable, "-m", "symflop", "estimate",
                            "validation.resnet50:resnet50", "--input", "3x224x224",
                            "--depth", "1"], env=env, check=True, capture_output=True)
            command.append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in
           (("cold", cold), ("warm", warm), ("again", again), ("imports", imports),
            ("command", command))}
    print(f"ResNet-50 estimate, medians of {args.repeats} (seconds):")
    for k, v in med.items():
        target = TARGETS.get(k)
        verdict = "" if target is None else f"  target <= {target:g} s: " + \
            ("met" if v <= target else "MISSED")
        print(f"  {k:8s} {v:6.2f}{verdict}")


if __name__ == "__main__":
    main()
