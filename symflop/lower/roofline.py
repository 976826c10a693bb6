"""Roofline: the time a pass should take on a machine, from the lowered stage's kernels.

Each kernel of the lowered stage (one step) reads each tensor it names once and
writes its result once, its intermediates staying in cache; it takes at least
``max(bytes / bandwidth, FLOPs / peak)``.  A pass's predicted time is the sum over
its kernels.  A machine is a preset (published figures of the device, in the
table below), two numbers ``BANDWIDTH,PEAK`` (bytes/s, FLOP/s, e.g. ``40e9,1e12``),
or ``measure``: this machine's streaming bandwidth (the better of a copy and an
in-place add) and matrix-multiply rate, measured now with torch on the CPU.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import sympy as sp

from symflop.core.program import Program
from symflop.cost.memory import dtype_bytes, group_elements
from symflop.errors import UsageError, needs_torch


@dataclass(frozen=True)
class Machine:
    name: str
    bandwidth: float  # bytes per second
    peak: float       # FLOP per second
    source: str = ""


# Published figures: memory bandwidth and dense FP32 (non-tensor-core) rate.
PRESETS = {
    "h100": Machine("h100", 3.35e12, 67e12, "H100 SXM5: HBM3 3.35 TB/s, FP32 67 TFLOP/s"),
    "h200": Machine("h200", 4.8e12, 67e12, "H200 SXM: HBM3e 4.8 TB/s, FP32 67 TFLOP/s"),
    "a100": Machine("a100", 2.039e12, 19.5e12, "A100 SXM 80GB: HBM2e 2.04 TB/s, "
                    "FP32 19.5 TFLOP/s"),
}


def parse_machine(text: str) -> Machine:
    """A preset name, ``BANDWIDTH,PEAK`` or ``measure``; a one-line error otherwise."""
    key = text.strip().lower()
    if key in PRESETS:
        return PRESETS[key]
    if key == "measure":
        return measure_machine()
    parts = key.split(",")
    try:
        bandwidth, peak = (float(p) for p in parts)
    except ValueError:
        raise UsageError(f"--roofline {text!r}: give a preset ({', '.join(PRESETS)}), "
                         "'measure', or BANDWIDTH,PEAK in bytes/s and FLOP/s "
                         "(e.g. 40e9,1e12)") from None
    if not (bandwidth > 0 and peak > 0) or bandwidth == float("inf") or peak == float("inf"):
        raise UsageError(f"--roofline {text!r}: bandwidth and peak must be positive numbers")
    return Machine(f"{bandwidth:.3g} B/s, {peak:.3g} FLOP/s", bandwidth, peak)


def measure_bandwidth(elements_: int = 1 << 26, repeats: int = 7, device: str = "cpu"
                      ) -> float:
    """Bytes per second this device streams at best: the larger of two STREAM-like
    float32 kernels on tensors already touched (a fresh tensor would add page faults),
    each the median of ``repeats`` runs, every byte read or written counted once:
    ``dst.copy_(src)`` (8 bytes an element) and ``dst.add_(src)`` (12).  The best is
    taken because the roofline is the attainable rate: on a CPU a write to memory not
    read first also reads it (write-allocate), so ``copy_`` alone reaches only about
    two thirds of what an in-place update reaches, and a kernel that updates in place
    (Adam's step) would seem to beat the roofline."""
    import torch

    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    src = torch.ones(elements_, dtype=torch.float32, device=device)
    dst = torch.ones_like(src)
    best = 0.0
    for run, moved in ((lambda: dst.copy_(src), 8), (lambda: dst.add_(src), 12)):
        run()
        times = []
        for _ in range(repeats):
            sync()
            start = time.perf_counter()
            run()
            sync()
            times.append(time.perf_counter() - start)
        best = max(best, moved * elements_ / sorted(times)[len(times) // 2])
    return best


def measure_peak(n: int = 1024, repeats: int = 5) -> float:
    """FLOP per second of a float32 n x n matrix product (2 n^3 FLOPs): the median."""
    import torch
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * n ** 3 / sorted(times)[len(times) // 2]


def measure_machine() -> Machine:
    try:
        bandwidth, peak = measure_bandwidth(), measure_peak()
    except ImportError:
        raise needs_torch("--roofline measure") from None
    return Machine("this machine (measured)", bandwidth, peak,
                   "float32 streaming bandwidth (best of copy_ and in-place add_) "
                   "and 1024x1024 matmul rate, measured now")


@dataclass(frozen=True)
class KernelTime:
    step: str
    bytes: float
    flops: float
    seconds: float
    bound: str  # "memory" or "compute"


def predict(program: Program, step_flops: list[sp.Expr], machine: Machine, sizes: dict,
            dtype: str = "float32", loops: tuple[tuple[int, ...], ...] | None = None
            ) -> list[KernelTime]:
    """Per loop of a lowered pass (``loops``: groups of steps run in one loop; each step on
    its own without them): bytes (``symflop.cost.memory.group_elements``: each tensor
    read once, each result written once), FLOPs and the roofline time at ``sizes``."""
    width = dtype_bytes(dtype)
    out = []
    groups = loops if loops is not None else tuple((n,) for n in range(len(program.steps)))
    for g in groups:
        steps = [program.steps[n] for n in g]
        b = _at(width * group_elements(steps, program), sizes)
        f = _at(sum((step_flops[n] for n in g), sp.Integer(0)), sizes)
        st = steps[-1] if len(steps) == 1 else None
        t_mem, t_flop = b / machine.bandwidth, f / machine.peak
        name = st.lhs if st is not None else " + ".join(x.lhs for x in steps)
        out.append(KernelTime(name, b, f, max(t_mem, t_flop),
                              "memory" if t_mem >= t_flop else "compute"))
    return out


def _at(expr, sizes: dict) -> float:
    expr = sp.sympify(expr)
    missing = sorted(s.name for s in expr.free_symbols if s.name not in sizes)
    if missing:
        raise UsageError(f"--roofline needs the size(s) {', '.join(missing)} (--dims)")
    return float(expr.xreplace({s: sizes[s.name] for s in expr.free_symbols}))
