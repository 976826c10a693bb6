"""Derivation speed: cold (no cache), warm (cache hit), and a count at a new size.

Cold and warm are each timed in fresh processes (SymPy keeps caches of its own
inside a process, so a second derivation in the same process is not cold);
a child times only the derivation, not the imports.  Figures are medians.
  cold  - build the components and derive them with the cache bypassed;
  warm  - build the components and load their derivations from a populated cache;
  count - evaluate a compiled count polynomial at a size not seen before.
Two sets: the first slice (mse, cross-entropy, cross-entropy-soft, batchnorm,
adam) and the whole catalogue.  Targets on 2-core machines: slice cold <= 3 s,
warm <= 0.3 s; catalogue cold <= 10 s, warm <= 1 s; a count <= 30 microseconds.
Run:  python bench/derive.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

SLICE = ("mse", "cross-entropy", "cross-entropy-soft", "batchnorm", "adam")
TARGETS = {"slice": (3.0, 0.3), "catalogue": (10.0, 1.0)}


def child(mode: str, which: str) -> None:
    from derivations import CATALOGUE
    from symflop import Component, derive
    from symflop.compose import CompositeDerivation
    names = SLICE if which == "slice" else tuple(CATALOGUE)
    start = time.perf_counter()
    for name in names:
        c = CATALOGUE[name]()
        if isinstance(c, Component):
            derive(c, use_cache=(mode == "warm"))
        else:  # a composite derives its parts (derived above, or cached)
            CompositeDerivation(c)
    print(time.perf_counter() - start)


def timed_children(mode: str, which: str, repeats: int, env: dict) -> list[float]:
    out = []
    for _ in range(repeats):
        r = subprocess.run([sys.executable, __file__, "--child", mode, "--set", which],
                           env=env, capture_output=True, text=True, check=True)
        out.append(float(r.stdout.strip()))
    return out


def count_speed(repeats: int) -> tuple[list[float], float]:
    from derivations import CATALOGUE
    from symflop import derive
    bn = derive(CATALOGUE["batchnorm"]())
    fn = bn.count_function("backward")
    n_calls = 20000
    per_call = []
    for r in range(repeats):
        start = time.perf_counter()
        for k in range(n_calls):
            fn(N=1000 + k + r * n_calls, d=256 + k)
        per_call.append((time.perf_counter() - start) / n_calls)
    bn._count_fns.clear()
    start = time.perf_counter()
    bn.count_function("backward")(N=12345, d=67)
    return per_call, time.perf_counter() - start


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--child", choices=("cold", "warm"))
    ap.add_argument("--set", choices=tuple(TARGETS), default="slice")
    args = ap.parse_args()
    if args.child:
        child(args.child, args.set)
        return 0
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    med = statistics.median
    ok = True
    print(f"{args.repeats} fresh processes per figure; medians (min, max)")
    for which, (cold_target, warm_target) in TARGETS.items():
        env["SYMFLOP_CACHE_DIR"] = tempfile.mkdtemp(prefix="symflop-bench-")
        cold = timed_children("cold", which, args.repeats, env)
        timed_children("warm", which, 1, env)  # populates the cache
        warm = timed_children("warm", which, args.repeats, env)
        print(f"{which}: cold {med(cold):.3f} s ({min(cold):.3f}, {max(cold):.3f}; "
              f"target <= {cold_target:g} s), warm {med(warm) * 1e3:.1f} ms "
              f"({min(warm) * 1e3:.1f}, {max(warm) * 1e3:.1f}; target <= {warm_target:g} s), "
              f"cold/warm {med(cold) / med(warm):.1f}x")
        ok &= med(cold) <= cold_target and med(warm) <= warm_target
    os.environ["SYMFLOP_CACHE_DIR"] = env["SYMFLOP_CACHE_DIR"]
    per_call, first = count_speed(args.repeats)
    print(f"count at a new size (compiled polynomial, batchnorm backward): "
          f"{med(per_call) * 1e6:.2f} us per call (target <= 30 us); first call including "
          f"compiling the polynomial {first * 1e6:.0f} us")
    ok &= med(per_call) <= 30e-6
    print("all targets met" if ok else "a target was missed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
