"""Derivation speed of the catalogue: cold (no cache), warm (cache hit), count at a new size.

Cold and warm are each timed in fresh processes (SymPy keeps caches of its own
inside a process, so a second derivation in the same process is not cold);
a child times only the derivation, not the imports.  Figures are medians.
  cold  - build every component and derive it with the cache bypassed;
  warm  - build every component and load its derivation from a populated cache;
  count - evaluate a compiled count polynomial at a size not seen before.
Targets (2-core machines): cold <= 3 s, warm <= 0.3 s, count <= 30 microseconds.
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


def child(mode: str) -> None:
    from derivations import CATALOGUE
    from symflop import derive
    start = time.perf_counter()
    for build in CATALOGUE.values():
        derive(build(), use_cache=(mode == "warm"))
    print(time.perf_counter() - start)


def timed_children(mode: str, repeats: int, env: dict) -> list[float]:
    out = []
    for _ in range(repeats):
        r = subprocess.run([sys.executable, __file__, "--child", mode], env=env,
                           capture_output=True, text=True, check=True)
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
    args = ap.parse_args()
    if args.child:
        child(args.child)
        return 0
    env = {**os.environ, "SYMFLOP_CACHE_DIR": tempfile.mkdtemp(prefix="symflop-bench-")}
    env["PYTHONPATH"] = os.pathsep.join(
        [os.path.dirname(os.path.dirname(os.path.abspath(__file__))), env.get("PYTHONPATH", "")])
    cold = timed_children("cold", args.repeats, env)
    timed_children("warm", 1, env)  # populates the cache
    warm = timed_children("warm", args.repeats, env)
    os.environ["SYMFLOP_CACHE_DIR"] = env["SYMFLOP_CACHE_DIR"]
    per_call, first = count_speed(args.repeats)

    from derivations import CATALOGUE
    med = statistics.median
    print(f"components: {len(CATALOGUE)} ({', '.join(CATALOGUE)}); "
          f"{args.repeats} fresh processes each")
    print(f"cold derivation, all components: median {med(cold):.3f} s "
          f"(min {min(cold):.3f}, max {max(cold):.3f}; target <= 3 s)")
    print(f"warm derivation, all components: median {med(warm) * 1e3:.1f} ms "
          f"(min {min(warm) * 1e3:.1f}, max {max(warm) * 1e3:.1f}; target <= 300 ms)")
    print(f"cold / warm: {med(cold) / med(warm):.1f}x")
    print(f"count at a new size (compiled polynomial, batchnorm backward): "
          f"median {med(per_call) * 1e6:.2f} us per call (target <= 30 us)")
    print(f"first count including compiling the polynomial: {first * 1e6:.0f} us")
    ok = med(cold) <= 3 and med(warm) <= 0.3 and med(per_call) <= 30e-6
    print("all targets met" if ok else "a target was missed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
