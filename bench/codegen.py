"""Speed and peak memory of the generated torch code against torch's built-ins, on CPU.

Three workloads, float32, as many torch threads as the process may use:
  cross-entropy  B=4096, C=32000: the generated ``forward`` then ``backward`` (which
                 takes the forward's saved ``lse_sum_lse``), against F.cross_entropy
                 plus torch.autograd.grad, with integer labels and with the same dense
                 one-hot target the generated code takes;
  batchnorm      x of shape (N, d), N = 32*56*56, d = 256: the generated ``forward``
                 (training, running statistics) then ``backward`` (grad_y given), against
                 F.batch_norm(training=True) plus autograd on the same (N, d) tensor; also
                 against the (32, 256, 56, 56) layouts (channels-last, which is the same
                 memory as (N, d), and contiguous NCHW);
  adam           one step on 25,557,032 parameters (ResNet-50's count) in one tensor: the
                 generated ``step`` against torch.optim.Adam(foreach=True); also on
                 ResNet-50's 161 parameter tensors (the generated step called per tensor).
Lines marked "fused" run the engine's closed-form ``gradient`` pass in place of
``backward``; they and the 161-tensor Adam line are for information, the targets are on
forward+backward and the one-tensor step.  One line per comparison: generated vs
built-in median time, their ratio, peak memory of each and their ratio, each target.

Time: each workload runs in a process of its own (an earlier workload's large frees
changed the next one's timings); there, after warm-up calls (whose results are checked
against the built-in), the median of --repeats calls per side, the sides interleaved
(alternating which goes first).  The generated code is called with check=False, so
the input checks are not timed.  Peak memory: the
growth of the process's peak resident set during one call, after warm-up: the peak
(VmHWM) is reset to the current RSS by writing 5 to /proc/self/clear_refs, then read
from /proc/self/status after the call; it includes the call's outputs and every
temporary.  Where /proc/self/clear_refs cannot be written, each side is measured in a
fresh subprocess (first call, growth of ru_maxrss).  Tensors this large (> 32 MiB)
are mmap'ed by glibc and unmapped when freed, so the RSS follows torch's live
allocations; the 161-tensor Adam sides are measured in a fresh process with glibc's
mmap threshold lowered to 64 KiB, since malloc would otherwise recycle their small
temporaries unseen.  Page faults on freshly mmap'ed memory are a large part of the
cost of each new full-size temporary on CPU, so time follows the number of them.
Targets: time ratio (generated / built-in) <= 1.0 for cross-entropy and batchnorm,
<= 1.2 for adam; peak memory ratio <= 1.5.
Run:  python bench/codegen.py [--repeats 5] [--only cross-entropy,batchnorm,adam]
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F  # noqa: N812

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from derivations import CATALOGUE  # noqa: E402
from symflop import derive  # noqa: E402
from symflop.lower.backends import get_backend  # noqa: E402

CE_B, CE_C = 4096, 32000
BN_BATCH, BN_C, BN_HW = 32, 256, 56
BN_N, BN_D = BN_BATCH * BN_HW * BN_HW, BN_C
EPS_BN, MOMENTUM = 1e-5, 0.1
LR, BETA1, BETA2, EPS_ADAM = 1e-3, 0.9, 0.999, 1e-8
TIME_TARGET = {"cross-entropy": 1.0, "batchnorm": 1.0, "adam": 1.2}
MEM_TARGET = 1.5
XP = get_backend("torch")


def resnet50_shapes() -> list[tuple[int, ...]]:
    """Parameter shapes of torchvision's resnet50 (161 tensors, 25,557,032 values)."""
    shapes: list[tuple[int, ...]] = [(64, 3, 7, 7), (64,), (64,)]
    cin = 64
    for width, blocks in ((64, 3), (128, 4), (256, 6), (512, 3)):
        for b in range(blocks):
            shapes += [(width, cin, 1, 1), (width,), (width,),
                       (width, width, 3, 3), (width,), (width,),
                       (4 * width, width, 1, 1), (4 * width,), (4 * width,)]
            if b == 0:
                shapes += [(4 * width, cin, 1, 1), (4 * width,), (4 * width,)]
            cin = 4 * width
    return shapes + [(1000, 2048), (1000,)]


def passes(name: str, *names: str):
    d = derive(CATALOGUE[name]())
    return [d.compiled(p) for p in names]


def call(fn, **values):
    """Run a generated pass on the values it takes, out of ``values`` (inputs and what
    earlier passes returned): which forward results a backward reads is the engine's
    choice, not the benchmark's."""
    return fn(backend=XP, check=False, **{n: values[n] for n in fn.signature.inputs})


# --- workloads: each returns a title, {side: callable}, the comparisons (label, generated
# --- side, built-in side, whether the targets apply), {side: agreement check on the last
# --- warm-up results}, and the sides whose peak memory is measured apart (peak_apart).

def cross_entropy_sides():
    fw, bw, gr = passes("cross-entropy", "forward", "backward", "gradient")
    z = torch.randn(CE_B, CE_C)
    labels = torch.randint(0, CE_C, (CE_B,))
    y = torch.zeros(CE_B, CE_C).scatter_(1, labels[:, None], 1.0)
    zr = z.detach().requires_grad_()

    def generated():
        o = call(fw, z=z, y=y)
        g = call(bw, **o, y=y, z=z)
        return o["L"], g["grad_z"]

    def fused():
        o = call(fw, z=z, y=y)
        return o["L"], call(gr, **o, z=z, y=y)["grad_z"]

    def builtin_labels():
        loss = F.cross_entropy(zr, labels)
        return loss, torch.autograd.grad(loss, zr)[0]

    def builtin_dense():
        loss = F.cross_entropy(zr, y)
        return loss, torch.autograd.grad(loss, zr)[0]

    sides = {"generated": generated, "fused": fused, "labels": builtin_labels,
             "dense": builtin_dense}
    rows = [("fwd+bwd, F.cross_entropy integer labels", "generated", "labels", True),
            ("fwd+bwd, F.cross_entropy same one-hot dense target", "generated", "dense", True),
            ("fused fwd+gradient, integer labels", "fused", "labels", False)]
    return f"cross-entropy B={CE_B} C={CE_C}", sides, rows, {
        "generated": lambda out: close(out["generated"], out["labels"]),
        "fused": lambda out: close(out["fused"], out["dense"])}, set()


def batchnorm_sides():
    fw, bw, gr = passes("batchnorm", "forward", "backward", "gradient")
    x = torch.randn(BN_N, BN_D)
    grad_y = torch.randn(BN_N, BN_D)
    gamma = torch.rand(BN_D) + 0.5
    beta = torch.randn(BN_D)
    stats = {"gen": [torch.zeros(BN_D), torch.ones(BN_D)]}
    hp = {"epsilon": EPS_BN, "momentum": MOMENTUM}

    def forward():
        rm, rv = stats["gen"]
        o = call(fw, x=x, beta=beta, gamma=gamma, running_mean=rm, running_var=rv, **hp)
        stats["gen"] = [o["running_mean"], o["running_var"]]
        return o

    def generated():
        o = forward()
        g = call(bw, **o, gamma=gamma, grad_y=grad_y, x=x, epsilon=EPS_BN)
        return o["y"], g["grad_x"], g["grad_gamma"], g["grad_beta"]

    def fused():
        o = forward()
        g = call(gr, **o, gamma=gamma, grad_y=grad_y, x=x, epsilon=EPS_BN)
        return o["y"], g["grad_x"], g["grad_gamma"], g["grad_beta"]

    def nchw(t):  # the (N, d) memory read as (32, 256, 56, 56): a channels-last view
        return t.view(BN_BATCH, BN_HW, BN_HW, BN_C).permute(0, 3, 1, 2)

    x_cl, gy_cl = nchw(x), nchw(grad_y)
    assert x_cl.is_contiguous(memory_format=torch.channels_last)
    x_nchw = torch.empty(BN_BATCH, BN_C, BN_HW, BN_HW).copy_(x_cl)
    gy_nchw = torch.empty(BN_BATCH, BN_C, BN_HW, BN_HW).copy_(gy_cl)

    def builtin(xin, gy):
        xr = xin.detach().requires_grad_()
        w, b = gamma.clone().requires_grad_(), beta.clone().requires_grad_()
        rm, rv = torch.zeros(BN_D), torch.ones(BN_D)

        def run():
            out = F.batch_norm(xr, rm, rv, w, b, training=True, momentum=MOMENTUM,
                               eps=EPS_BN)
            return (out, *torch.autograd.grad(out, (xr, w, b), gy))
        return run

    sides = {"generated": generated, "fused": fused, "nd": builtin(x, grad_y),
             "channels_last": builtin(x_cl, gy_cl), "nchw": builtin(x_nchw, gy_nchw)}
    rows = [("fwd+bwd, F.batch_norm same (N, d) tensor [the fair one]", "generated", "nd",
             True),
            ("fwd+bwd, F.batch_norm NCHW channels-last (same memory)", "generated",
             "channels_last", True),
            ("fwd+bwd, F.batch_norm NCHW contiguous", "generated", "nchw", True),
            ("fused fwd+gradient, same (N, d) tensor", "fused", "nd", False)]
    return f"batchnorm N={BN_N} d={BN_D}", sides, rows, {
        "generated": lambda out: close(out["generated"], out["nd"]),
        "fused": lambda out: close(out["fused"], out["nd"])}, set()


def _adam_pair(shapes):
    (step,) = passes("adam", "step")
    gen = []
    params = []
    for s in shapes:
        theta, g = torch.randn(s), torch.randn(s)
        gen.append({"theta": theta.clone().reshape(-1), "g": g.reshape(-1),
                    "m": torch.zeros(theta.numel()), "v": torch.zeros(theta.numel()), "t": 0})
        p = theta.requires_grad_()
        p.grad = g
        params.append(p)
    opt = torch.optim.Adam(params, lr=LR, betas=(BETA1, BETA2), eps=EPS_ADAM, foreach=True)

    def generated():
        for st in gen:
            o = call(step, t=st["t"], g=st["g"], m=st["m"], v=st["v"], theta=st["theta"],
                     beta1=BETA1, beta2=BETA2, epsilon=EPS_ADAM, lr=LR)
            st.update(t=o["t"], m=o["m"], v=o["v"], theta=o["theta"])

    def builtin():
        opt.step()

    def agree():
        return all(torch.allclose(st["theta"], p.detach().reshape(-1), rtol=1e-5, atol=1e-7)
                   for st, p in zip(gen, params))
    return generated, builtin, agree


def adam_sides():
    shapes = resnet50_shapes()
    total = sum(torch.Size(s).numel() for s in shapes)
    one_gen, one_bi, one_agree = _adam_pair([(total,)])
    list_gen, list_bi, list_agree = _adam_pair(shapes)
    sides = {"generated": one_gen, "foreach": one_bi, "list_generated": list_gen,
             "list_foreach": list_bi}
    rows = [("step, one tensor, torch.optim.Adam(foreach=True)", "generated", "foreach", True),
            (f"step, {len(shapes)} ResNet-50 tensors (generated per tensor), foreach",
             "list_generated", "list_foreach", False)]
    checks = {"generated": lambda out: one_agree(), "list_generated": lambda out: list_agree()}
    # the list's tensors are small enough for malloc to recycle: measured apart (see peak_apart)
    return f"adam P={total}", sides, rows, checks, {"list_generated", "list_foreach"}


def close(a, b) -> bool:
    """Float32 agreement of two tuples of results, relative to each result's largest value."""
    return all(float((x - y).abs().max()) <= 1e-4 * float(y.abs().max()) + 1e-30
               for x, y in zip((t.detach() for t in a), (t.detach() for t in b)))


def workload(name: str):
    return {"cross-entropy": cross_entropy_sides, "batchnorm": batchnorm_sides,
            "adam": adam_sides}[name]()


# --- measurement -------------------------------------------------------------------------

def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(field)


def can_reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        _status_kb("VmHWM")
        return True
    except OSError:
        return False


def peak_in_process(fn) -> float:
    """Bytes by which one call raises the peak RSS above the RSS before it."""
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # VmHWM := VmRSS
    before = _status_kb("VmRSS")
    out = fn()
    peak = _status_kb("VmHWM")
    del out
    return (peak - before) * 1024.0


def peak_apart(name: str, side: str, small: bool) -> float:
    """Peak of one call in a fresh process.  Sides made of small tensors run with glibc's
    mmap threshold at 64 KiB, so that freed tensors leave the RSS rather than being
    recycled by malloc (which would hide them); their times are measured without it."""
    env = dict(os.environ)
    if small:
        env["MALLOC_MMAP_THRESHOLD_"] = "65536"
    r = subprocess.run([sys.executable, os.path.abspath(__file__), "--mem-child", name, side],
                       capture_output=True, text=True, check=True, env=env)
    return float(r.stdout.split()[-1])


def mem_child(name: str, side: str) -> None:
    fn = workload(name)[1][side]
    if can_reset_peak():
        fn()  # warm-up, as in the parent
        print(peak_in_process(fn))
        return
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, else KiB
    gc.collect()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = fn()
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    del out
    print((after - before) * scale)


def timed(fn) -> float:
    start = time.perf_counter()
    out = fn()
    elapsed = time.perf_counter() - start
    del out
    return elapsed


def fmt_bytes(b: float) -> str:
    return f"{b / 2**20:.0f} MiB"


def run_workload(name: str, repeats: int, warmup: int) -> bool:
    title, sides, rows, checks, small = workload(name)
    used = [s for s in sides if any(s in (g, b) for _, g, b, _ in rows)]
    last: dict = {}
    for _ in range(max(warmup, 1)):
        last = {s: sides[s]() for s in used}
    for s, check in checks.items():  # Adam: the same number of steps on each side so far
        if not check(last):
            raise SystemExit(f"{name}: {s} disagrees with the built-in")
    del last
    times: dict[str, list[float]] = {s: [] for s in used}
    for r in range(repeats):
        for s in used if r % 2 == 0 else reversed(used):
            times[s].append(timed(sides[s]))
    in_process = can_reset_peak()
    peaks = {s: peak_in_process(sides[s]) if in_process and s not in small
             else peak_apart(name, s, s in small) for s in used}
    print(f"{title} (generated vs built-in)", flush=True)
    ok = True
    med = statistics.median
    for label, g, b, targeted in rows:
        tg, tb = med(times[g]), med(times[b])
        ratio, mratio = tg / tb, peaks[g] / max(peaks[b], 1.0)
        line = f"  {label}: time {tg * 1e3:.1f} vs {tb * 1e3:.1f} ms, ratio {ratio:.2f}"
        mem = (f"; peak memory {fmt_bytes(peaks[g])} vs {fmt_bytes(peaks[b])}, "
               f"ratio {mratio:.2f}")
        if targeted:
            t_ok, m_ok = ratio <= TIME_TARGET[name], mratio <= MEM_TARGET
            ok &= t_ok and m_ok
            line += f" (<= {TIME_TARGET[name]:g}: {'met' if t_ok else 'MISSED'})"
            mem += f" (<= {MEM_TARGET:g}: {'met' if m_ok else 'MISSED'})"
        print(line + mem, flush=True)
    return ok


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--only", default="cross-entropy,batchnorm,adam")
    ap.add_argument("--workload", help=argparse.SUPPRESS)
    ap.add_argument("--mem-child", nargs=2, metavar=("WORKLOAD", "SIDE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                          else os.cpu_count() or 1)
    torch.manual_seed(0)
    if args.mem_child:
        mem_child(*args.mem_child)
        return 0
    if args.workload:
        return 0 if run_workload(args.workload, args.repeats, args.warmup) else 3
    print(f"torch {torch.__version__}, float32, CPU, {torch.get_num_threads()} threads; each "
          f"workload in its own process: median of {args.repeats} interleaved calls after "
          f"{args.warmup} warm-up; peak memory = "
          + ("growth of VmHWM over VmRSS in one call after warm-up (/proc/self/clear_refs)"
             if can_reset_peak() else "growth of ru_maxrss in a fresh process's first call"),
          flush=True)
    start = time.perf_counter()
    ok = True
    for name in args.only.split(","):
        r = subprocess.run([sys.executable, os.path.abspath(__file__), "--workload", name,
                            "--repeats", str(args.repeats), "--warmup", str(args.warmup)],
                           check=False)
        if r.returncode not in (0, 3):
            raise SystemExit(f"{name}: the benchmark failed (exit status {r.returncode})")
        ok &= r.returncode == 0
    print(f"{'all targets met' if ok else 'a target was missed'} "
          f"({time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
