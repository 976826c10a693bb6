"""Speed, peak memory and roofline of the generated torch code against torch's built-ins.

Three workloads, float32, as many torch threads as the process may use (CPU), or on
CUDA with --device cuda:
  cross-entropy  B=4096, C=32000: the generated ``forward`` then ``backward`` (which
                 takes the forward's saved ``lse_sum_lse``) on integer labels, against
                 F.cross_entropy plus torch.autograd.grad on the same labels;
  batchnorm      x of shape (N, d), N = 32*56*56, d = 256: the generated ``forward``
                 (training, running statistics) then ``backward`` (grad_y given), against
                 F.batch_norm(training=True) plus autograd on the same (N, d) tensor; also
                 against the (32, 256, 56, 56) layouts (channels-last, which is the same
                 memory as (N, d), and contiguous NCHW);
  adam           one step on 25,557,032 parameters (ResNet-50's count) in one tensor: the
                 generated ``step`` in its in-place call form (state and parameters
                 updated in their buffers, as torch.optim does) against
                 torch.optim.Adam(foreach=True), and through the compiled backend
                 against Adam(fused=True);
  adam-resnet50  one step over ResNet-50's 161 parameter tensors (each with a gradient):
  adam-transformer  and over GPT-2 small's 148 (124,439,808 values):
                 symflop.optim.Optimizer("adam") eager, with flat buffers (the default)
                 and on the lists (flat=False: symflop.lower.multi), against
                 Adam(foreach=True); compiled (flat) against Adam(fused=True).
Each workload runs eager (backend "torch": blocked kernels) and compiled (backend
"torch-compiled": torch.compile, Inductor); the compile time (first call) is printed.
Lines marked "fused" run the engine's closed-form ``gradient`` pass in place of
``backward``; they and the 161-tensor Adam line are for information.  BatchNorm is
also run writing y and grad_x into buffers reused from call to call (``into=``): a
fresh 100 MB output costs page faults on a CPU (printed, measured), which are no
property of a kernel; the roofline target applies to that line.  For BatchNorm the
bench also prints what torch's own kernels of its access patterns reach here (a column
sum, a whole sum, copy_, in-place add_), in GB/s: a bound on its roofline fraction.

Roofline: each workload process first measures the memory bandwidth (the better of a
float32 ``copy_`` and an in-place ``add_`` between two touched 256 MiB tensors, median of
7 each: ``symflop.lower.roofline.measure_bandwidth``) and the float32 matmul rate;
the engine gives the bytes each pass moves and its FLOPs at the lowered stage, kernel by
kernel (``symflop.lower.roofline``); the predicted time is the sum over kernels of
max(bytes/bandwidth, FLOPs/peak).  Each line prints the measured time, the bandwidth
achieved (engine bytes / time) and the fraction of the roofline (predicted / measured).

Time: each workload runs in a process of its own; there, after warm-up calls (whose
results are checked against the built-in), the median of --repeats calls per side, the
sides interleaved.  The generated code is called with check=False, so the input checks
are not timed.  Peak memory (CPU only): the growth of the process's peak resident set
during one call, after warm-up: the peak (VmHWM) is reset to the current RSS by writing
5 to /proc/self/clear_refs, then read from /proc/self/status after the call; it
includes the call's outputs and every temporary.  Where /proc/self/clear_refs cannot be
written, each side is measured in a fresh subprocess (first call, growth of ru_maxrss).
Tensors this large (> 32 MiB) are mmap'ed by glibc and unmapped when freed, so the RSS
follows torch's live allocations; the 161-tensor Adam sides are measured in a fresh
process with glibc's mmap threshold lowered to 64 KiB, since malloc would otherwise
recycle their small temporaries unseen.  On CUDA, peak memory is
torch.cuda.max_memory_allocated's growth during one call.
Targets (eager): time ratio (generated / built-in) <= 1.0 for each workload, peak
memory ratio <= 1.5; (compiled): Adam <= 1.0 x Adam(fused=True), BatchNorm and Adam at
>= 70 % of the roofline.
Under load (--load N, CPU): each workload runs a second time beside N busy processes
(each one thread adding and scaling 8 MB vectors in a loop), started before and ended
after that run by the bench; for each row the loaded time ratio (generated /
built-in) must be at most 1.5x the quiet one, measured in the same invocation.
Run:  python bench/codegen.py [--repeats 5] [--only cross-entropy,batchnorm,adam,
      adam-resnet50,adam-transformer] [--device cuda] [--load N]
"""

from __future__ import annotations

import argparse
import gc
import json
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
from symflop.lower.roofline import Machine, measure_bandwidth, measure_peak, predict  # noqa: E402

CE_B, CE_C = 4096, 32000
BN_BATCH, BN_C, BN_HW = 32, 256, 56
BN_N, BN_D = BN_BATCH * BN_HW * BN_HW, BN_C
EPS_BN, MOMENTUM = 1e-5, 0.1
LR, BETA1, BETA2, EPS_ADAM = 1e-3, 0.9, 0.999, 1e-8
MEM_TARGET = 1.5
ROOFLINE_TARGET = 0.70
EAGER = get_backend("torch")
COMPILED = get_backend("torch-compiled")
DEVICE = "cpu"


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
    return d, [d.compiled(p) for p in names]


def call(fn, xp=EAGER, inplace=False, into=None, **values):
    """Run a generated pass on the values it takes, out of ``values`` (inputs and what
    earlier passes returned): which forward results a backward reads is the engine's
    choice, not the benchmark's."""
    return fn(backend=xp, check=False, inplace=inplace, into=into,
              **{n: values[n] for n in fn.signature.inputs})


def engine_roofline(d, pass_names, sizes: dict, machine: Machine) -> tuple[float, float]:
    """(bytes moved, predicted seconds) of the lowered passes at ``sizes``: the engine's."""
    total_bytes = total_seconds = 0.0
    for p in pass_names:
        flops = [cnt.total for _st, cnt in d.step_counts(p, "default", "lowered")]
        lw = d.lowered[p]
        for k in predict(lw.program, flops, machine, sizes, "float32", lw.loops):
            total_bytes += k.bytes
            total_seconds += k.seconds
    return total_bytes, total_seconds


class Workload:
    """Sides (callables), the comparisons, agreement checks, and the engine's roofline of
    the generated side."""

    def __init__(self, title, sides, rows, checks, small=(), roofline=None, compiled=()):
        self.title, self.sides, self.rows, self.checks = title, sides, rows, checks
        self.small = set(small)      # sides whose peak memory is measured apart
        self.roofline = roofline     # (bytes, predicted seconds) of one generated call
        self.compiled = compiled     # generated passes run through torch.compile


# --- workloads -------------------------------------------------------------------------
# A row: (label, generated side, built-in side, time target or None, memory target or None,
# roofline target or None).

def cross_entropy_sides(machine: Machine) -> Workload:
    d, (fw, bw, gr) = passes("cross-entropy", "forward", "backward", "gradient")
    z = torch.randn(CE_B, CE_C, device=DEVICE)
    labels = torch.randint(0, CE_C, (CE_B,), device=DEVICE)
    zr = z.detach().requires_grad_()

    def generated(xp=EAGER, grad=bw):
        def run():
            o = call(fw, xp, z=z, y=labels)
            return o["L"], call(grad, xp, **o, y=labels, z=z)["grad_z"]
        return run

    def builtin():
        loss = F.cross_entropy(zr, labels)
        return loss, torch.autograd.grad(loss, zr)[0]

    sides = {"generated": generated(), "compiled": generated(COMPILED),
             "fused": generated(grad=gr), "builtin": builtin}
    rows = [("eager fwd+bwd vs F.cross_entropy, integer labels", "generated", "builtin",
             1.0, MEM_TARGET, None),
            ("compiled fwd+bwd vs F.cross_entropy", "compiled", "builtin", None, None, None),
            ("eager fused fwd+gradient, integer labels", "fused", "builtin", None, None,
             None)]
    check = {s: (lambda out, s=s: close(out[s], out["builtin"]))
             for s in ("generated", "compiled", "fused")}
    sizes = {"B": CE_B, "C": CE_C}
    return Workload(f"cross-entropy B={CE_B} C={CE_C}", sides, rows, check,
                    roofline=engine_roofline(d, ("forward", "backward"), sizes, machine),
                    compiled=(fw, bw))


def batchnorm_sides(machine: Machine) -> Workload:
    d, (fw, bw, gr) = passes("batchnorm", "forward", "backward", "gradient")
    x = torch.randn(BN_N, BN_D, device=DEVICE)
    grad_y = torch.randn(BN_N, BN_D, device=DEVICE)
    gamma = torch.rand(BN_D, device=DEVICE) + 0.5
    beta = torch.randn(BN_D, device=DEVICE)
    hp = {"epsilon": EPS_BN, "momentum": MOMENTUM}

    def generated(xp=EAGER, grad=bw, reuse_outputs=False):
        rm, rv = torch.zeros(BN_D, device=DEVICE), torch.ones(BN_D, device=DEVICE)
        y_buf, gx_buf = torch.zeros_like(x), torch.zeros_like(x)  # touched once, here

        def run():
            o = call(fw, xp, inplace=True, into={"y": y_buf} if reuse_outputs else None,
                     x=x, beta=beta, gamma=gamma, running_mean=rm, running_var=rv, **hp)
            g = call(grad, xp, into={"grad_x": gx_buf} if reuse_outputs else None, **o,
                     gamma=gamma, grad_y=grad_y, x=x, epsilon=EPS_BN)
            return o["y"], g["grad_x"], g["grad_gamma"], g["grad_beta"]
        return run

    def nchw(t):  # the (N, d) memory read as (32, 256, 56, 56): a channels-last view
        return t.view(BN_BATCH, BN_HW, BN_HW, BN_C).permute(0, 3, 1, 2)

    x_cl, gy_cl = nchw(x), nchw(grad_y)
    x_nchw = torch.empty(BN_BATCH, BN_C, BN_HW, BN_HW, device=DEVICE).copy_(x_cl)
    gy_nchw = torch.empty(BN_BATCH, BN_C, BN_HW, BN_HW, device=DEVICE).copy_(gy_cl)

    def builtin(xin, gy):
        xr = xin.detach().requires_grad_()
        w, b = gamma.clone().requires_grad_(), beta.clone().requires_grad_()
        rm, rv = torch.zeros(BN_D, device=DEVICE), torch.ones(BN_D, device=DEVICE)

        def run():
            out = F.batch_norm(xr, rm, rv, w, b, training=True, momentum=MOMENTUM,
                               eps=EPS_BN)
            return (out, *torch.autograd.grad(out, (xr, w, b), gy))
        return run

    sides = {"generated": generated(), "compiled": generated(COMPILED),
             "fused": generated(grad=gr), "nd": builtin(x, grad_y),
             "eager_out": generated(reuse_outputs=True),
             "compiled_out": generated(COMPILED, reuse_outputs=True),
             "channels_last": builtin(x_cl, gy_cl), "nchw": builtin(x_nchw, gy_nchw)}
    rows = [("eager fwd+bwd vs F.batch_norm, same (N, d) tensor", "generated", "nd", 1.0,
             MEM_TARGET, None),
            ("eager fwd+bwd vs F.batch_norm NCHW channels-last (same memory)", "generated",
             "channels_last", None, None, None),
            ("eager fwd+bwd vs F.batch_norm NCHW contiguous", "generated", "nchw", None,
             None, None),
            ("compiled fwd+bwd vs F.batch_norm (N, d)", "compiled", "nd", None, None,
             None),
            ("eager fwd+bwd writing y and grad_x into reused buffers (into=)", "eager_out",
             "nd", None, None, None),
            ("compiled fwd+bwd writing y and grad_x into reused buffers (into=)",
             "compiled_out", "nd", None, None, ROOFLINE_TARGET),
            ("eager fused fwd+gradient, same (N, d) tensor", "fused", "nd", None, None,
             None)]
    check = {s: (lambda out, s=s: close(out[s], out["nd"]))
             for s in ("generated", "compiled", "fused", "eager_out", "compiled_out")}
    sizes = {"N": BN_N, "d": BN_D}
    return Workload(f"batchnorm N={BN_N} d={BN_D}", sides, rows, check,
                    roofline=engine_roofline(d, ("forward", "backward"), sizes, machine),
                    compiled=(fw, bw))


def _adam_pair(shapes, xp, fused: bool):
    _d, (step,) = passes("adam", "step")
    gen, params = [], []
    for s in shapes:
        theta, g = torch.randn(s, device=DEVICE), torch.randn(s, device=DEVICE)
        gen.append({"theta": theta.clone().reshape(-1), "g": g.reshape(-1),
                    "m": torch.zeros(theta.numel(), device=DEVICE),
                    "v": torch.zeros(theta.numel(), device=DEVICE), "t": 0})
        p = theta.requires_grad_()
        p.grad = g
        params.append(p)
    kind = {"fused": True} if fused else {"foreach": True}
    opt = torch.optim.Adam(params, lr=LR, betas=(BETA1, BETA2), eps=EPS_ADAM, **kind)

    def generated():
        for st in gen:  # in place: m, v and theta are updated in their own buffers
            o = call(step, xp, inplace=True, t=st["t"], g=st["g"], m=st["m"], v=st["v"],
                     theta=st["theta"], beta1=BETA1, beta2=BETA2, epsilon=EPS_ADAM, lr=LR)
            st["t"] = o["t"]

    def builtin():
        opt.step()

    def agree():
        return all(torch.allclose(st["theta"], p.detach().reshape(-1), rtol=1e-5, atol=1e-7)
                   for st, p in zip(gen, params))
    return generated, builtin, agree, step


def adam_sides(machine: Machine) -> Workload:
    d = derive(CATALOGUE["adam"]())
    total = sum(torch.Size(s).numel() for s in resnet50_shapes())
    one_gen, one_bi, one_agree, _ = _adam_pair([(total,)], EAGER, fused=False)
    comp_gen, comp_bi, comp_agree, comp_step = _adam_pair([(total,)], COMPILED, fused=True)
    sides = {"generated": one_gen, "foreach": one_bi, "compiled": comp_gen, "fused": comp_bi}
    rows = [("eager in-place step, one tensor, vs Adam(foreach=True)", "generated",
             "foreach", 1.0, MEM_TARGET, None),
            ("compiled in-place step, one tensor, vs Adam(fused=True)", "compiled", "fused",
             1.0, None, ROOFLINE_TARGET)]
    checks = {"generated": lambda out: one_agree(), "compiled": lambda out: comp_agree()}
    return Workload(f"adam P={total}", sides, rows, checks,
                    roofline=engine_roofline(d, ("step",), {"P": total}, machine),
                    compiled=(comp_step,))


def transformer_shapes(layers: int = 12, width: int = 768, vocab: int = 50257,
                       context: int = 1024) -> list[tuple[int, ...]]:
    """Parameter shapes of GPT-2 small (148 tensors, 124,439,808 values): embeddings,
    then per layer two LayerNorms, the fused query-key-value projection, the attention's
    output projection and the MLP (4x wide), each with its bias; a final LayerNorm."""
    shapes: list[tuple[int, ...]] = [(vocab, width), (context, width)]
    for _ in range(layers):
        shapes += [(width,), (width,), (width, 3 * width), (3 * width,), (width, width),
                   (width,), (width,), (width,), (width, 4 * width), (4 * width,),
                   (4 * width, width), (width,)]
    return shapes + [(width,), (width,)]


def _optimizer_sides(shapes, pairs):
    """Sides stepping one model's parameter list: ours (``symflop.optim.Optimizer``
    over the generated step, by backend and layout) and torch's, on the same initial
    parameters and gradients; ``agree`` compares each of ours with torch's after the same
    number of steps."""
    from symflop.optim import Optimizer
    torch.manual_seed(0)
    start = [torch.randn(s, device=DEVICE) for s in shapes]
    grads = [torch.randn(s, device=DEVICE) for s in shapes]

    def params():
        ps = [t.clone().requires_grad_() for t in start]
        for p, g in zip(ps, grads):
            p.grad = g.clone()
        return ps

    sides, opts = {}, {}
    hyper = {"lr": LR, "beta1": BETA1, "beta2": BETA2, "epsilon": EPS_ADAM}
    for name, spec in pairs.items():
        ps = params()
        if spec[0] == "torch.optim":
            opt = torch.optim.Adam(ps, lr=LR, betas=(BETA1, BETA2), eps=EPS_ADAM,
                                   **{spec[1]: True})
        else:
            opt = Optimizer(ps, "adam", backend=spec[0], flat=spec[1] == "flat", **hyper)
        opts[name] = (opt, ps)
        sides[name] = opt.step

    def agree(ours: str, theirs: str) -> bool:
        return all(torch.allclose(p.detach(), q.detach(), rtol=1e-5, atol=1e-7)
                   for p, q in zip(opts[ours][1], opts[theirs][1]))
    steps = tuple(opt._step.compiled for opt, _ps in opts.values() if hasattr(opt, "_step"))
    return sides, agree, steps


def parameter_list_sides(title: str, shapes, machine: Machine) -> Workload:
    total = sum(torch.Size(s).numel() for s in shapes)
    sides, agree, steps = _optimizer_sides(shapes, {
        "generated": ("torch", "flat"), "lists": ("torch", "lists"),
        "compiled": ("torch-compiled", "flat"), "foreach": ("torch.optim", "foreach"),
        "fused": ("torch.optim", "fused")})
    rows = [("eager symflop.optim.Optimizer (flat buffers) vs Adam(foreach=True)",
             "generated", "foreach", 1.0, None, None),
            ("eager multi-tensor run on the lists (flat=False) vs Adam(foreach=True)",
             "lists", "foreach", 1.0, None, None),
            ("compiled symflop.optim.Optimizer (flat buffers) vs Adam(fused=True)",
             "compiled", "fused", 1.0, None, None)]
    checks = {"generated": lambda out: agree("generated", "foreach"),
              "lists": lambda out: agree("lists", "foreach"),
              "compiled": lambda out: agree("compiled", "fused")}
    d = derive(CATALOGUE["adam"]())
    return Workload(f"{title}: Adam over {len(shapes)} tensors, {total} values", sides,
                    rows, checks, roofline=engine_roofline(d, ("step",), {"P": total},
                                                           machine),
                    compiled=steps)


def resnet50_list_sides(machine: Machine) -> Workload:
    return parameter_list_sides("ResNet-50's parameter list", resnet50_shapes(), machine)


def transformer_list_sides(machine: Machine) -> Workload:
    return parameter_list_sides("GPT-2 small's parameter list", transformer_shapes(),
                                machine)


def close(a, b) -> bool:
    """Float32 agreement of two tuples of results, relative to each result's largest value."""
    return all(float((x - y).abs().max()) <= 1e-4 * float(y.abs().max()) + 1e-30
               for x, y in zip((t.detach() for t in a), (t.detach() for t in b)))


WORKLOADS = {"cross-entropy": cross_entropy_sides, "batchnorm": batchnorm_sides,
             "adam": adam_sides, "adam-resnet50": resnet50_list_sides,
             "adam-transformer": transformer_list_sides}


# --- measurement -------------------------------------------------------------------------

def sync() -> None:
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def measure_fresh_output(elements: int = BN_N * BN_D, repeats: int = 7) -> float:
    """Seconds a fresh float32 output of ``elements`` costs beyond writing touched memory
    (page faults on a CPU; about nothing on a GPU's caching allocator): the median of
    copy_ into a new tensor less that of copy_ into one written before."""
    src = torch.ones(elements, device=DEVICE)
    dst = torch.empty_like(src)
    dst.copy_(src)
    fresh, touched = [], []
    for _ in range(repeats):
        touched.append(timed(lambda: dst.copy_(src)))
        fresh.append(timed(lambda: torch.empty_like(src).copy_(src)))
    return statistics.median(fresh) - statistics.median(touched)


def measure_patterns(repeats: int = 9) -> str:
    """What this machine's memory gives the access patterns BatchNorm is made of, on a
    touched (N, d) float32 tensor: torch's column sum (its statistics), its whole-tensor
    sum (one read), copy_ (a write elsewhere) and in-place add_ (the bandwidth's best).
    A pass can go no faster than the torch kernel of its pattern, so these bound the
    roofline fraction BatchNorm can reach here."""
    x = torch.randn(BN_N, BN_D, device=DEVICE)
    y, z = torch.randn_like(x), torch.zeros_like(x)
    size = x.numel() * 4
    patterns = (("column sum x.sum(0)", lambda: x.sum(0), size),
                ("whole sum x.sum()", lambda: x.sum(), size),
                ("copy_", lambda: z.copy_(x), 2 * size),
                ("in-place add_", lambda: x.add_(y), 3 * size))
    out = []
    for label, fn, moved in patterns:
        fn()
        t = statistics.median(timed(fn) for _ in range(repeats))
        out.append(f"{label} {moved / t / 1e9:.1f} GB/s")
    return "; ".join(out)


def measure_machine() -> Machine:
    if DEVICE == "cuda":
        a = torch.randn(4096, 4096, device=DEVICE)
        a @ a
        sync()
        start = time.perf_counter()
        for _ in range(5):
            a @ a
        sync()
        peak = 5 * 2 * 4096 ** 3 / (time.perf_counter() - start)
    else:
        peak = measure_peak()
    return Machine("measured", measure_bandwidth(device=DEVICE), peak)


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
    """Bytes by which one call raises the peak memory above what was in use before it."""
    gc.collect()
    if DEVICE == "cuda":
        sync()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        out = fn()
        sync()
        peak = torch.cuda.max_memory_allocated()
        del out
        return float(peak - before)
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
    r = subprocess.run([sys.executable, os.path.abspath(__file__), "--mem-child", name, side,
                        "--device", DEVICE], capture_output=True, text=True, check=True,
                       env=env)
    return float(r.stdout.split()[-1])


def mem_child(name: str, side: str) -> None:
    fn = WORKLOADS[name](Machine("unused", 1.0, 1.0)).sides[side]
    if DEVICE == "cuda" or can_reset_peak():
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
    sync()
    start = time.perf_counter()
    out = fn()
    sync()
    elapsed = time.perf_counter() - start
    del out
    return elapsed


def fmt_bytes(b: float) -> str:
    return f"{b / 2**20:.0f} MiB"


def run_workload(name: str, repeats: int, warmup: int) -> bool:
    machine = measure_machine()
    w = WORKLOADS[name](machine)
    used = [s for s in w.sides if any(s in (r[1], r[2]) for r in w.rows)]
    last: dict = {}
    first_call = 0.0
    for n in range(max(warmup, 1)):
        last = {}
        for s in used:
            start = time.perf_counter()
            last[s] = w.sides[s]()
            if n == 0 and s == "compiled":  # the first compiled call compiles each pass
                first_call = time.perf_counter() - start
    compile_s = sum(sum(f.compile_seconds.values()) for f in w.compiled)
    for s, check in w.checks.items():  # Adam: the same number of steps on each side so far
        if not check(last):
            raise SystemExit(f"{name}: {s} disagrees with the built-in")
    del last
    times: dict[str, list[float]] = {s: [] for s in used}
    for r in range(repeats):
        for s in used if r % 2 == 0 else reversed(used):
            times[s].append(timed(w.sides[s]))
    in_process = DEVICE == "cuda" or can_reset_peak()
    peaks = {s: peak_in_process(w.sides[s]) if in_process and s not in w.small
             else peak_apart(name, s, s in w.small) for s in used}
    bytes_moved, predicted = w.roofline
    fault = measure_fresh_output()
    print(f"{w.title} (generated vs built-in); a fresh {BN_N * BN_D * 4 / 1e6:.0f} MB output "
          f"costs {fault * 1e3:.1f} ms more than writing touched memory; "
          f"bandwidth {machine.bandwidth / 1e9:.1f} GB/s, "
          f"matmul {machine.peak / 1e9:.0f} GFLOP/s measured; the engine: "
          f"{bytes_moved / 1e6:.1f} MB moved per generated call, roofline "
          f"{predicted * 1e3:.2f} ms; compile (first compiled call) {first_call:.1f} s, "
          f"of which torch.compile's first calls {compile_s:.1f} s", flush=True)
    if name == "batchnorm":
        print(f"  access patterns on a touched {BN_N * BN_D * 4 / 1e6:.0f} MB tensor: "
              f"{measure_patterns()}", flush=True)
    ok = True
    med = statistics.median
    for label, g, b, t_target, m_target, r_target in w.rows:
        tg, tb = med(times[g]), med(times[b])
        ratio, mratio = tg / tb, peaks[g] / max(peaks[b], 1.0)
        line = (f"  {label}: {tg * 1e3:.1f} vs {tb * 1e3:.1f} ms, ratio {ratio:.2f}"
                + (f" (<= {t_target:g}: {'met' if ratio <= t_target else 'MISSED'})"
                   if t_target else ""))
        line += (f"; peak memory {fmt_bytes(peaks[g])} vs {fmt_bytes(peaks[b])}, ratio "
                 f"{mratio:.2f}" + (f" (<= {m_target:g}: "
                                    f"{'met' if mratio <= m_target else 'MISSED'})"
                                    if m_target else ""))
        frac_g, frac_b = predicted / tg, predicted / tb
        line += (f"; roofline {frac_g:.0%} vs {frac_b:.0%} ({bytes_moved / tg / 1e9:.1f} vs "
                 f"{bytes_moved / tb / 1e9:.1f} GB/s)"
                 + (f" (>= {r_target:.0%}: {'met' if frac_g >= r_target else 'MISSED'})"
                    if r_target else ""))
        ok &= (not t_target or ratio <= t_target) and (not m_target or mratio <= m_target) \
            and (not r_target or frac_g >= r_target)
        print(line, flush=True)
        print(f"{RATIO_TAG}{json.dumps([label, ratio])}", flush=True)
    return ok


RATIO_TAG = "@ratio "  # a row's time ratio, read by the parent process
LOAD_TARGET = 1.5     # loaded ratio <= this times the quiet ratio


def busy() -> None:
    """Other work on the machine: one thread adding and scaling 8 MB vectors, forever."""
    torch.set_num_threads(1)
    a, b = torch.randn(1 << 21), torch.randn(1 << 21)
    while True:
        a.add_(b).mul_(0.5)


def run_child(name: str, args, load: int) -> tuple[int, dict[str, float]]:
    """One workload in its own process, beside ``load`` busy processes (started here,
    ended here); its output passed through, its rows' time ratios returned."""
    loaders = [subprocess.Popen([sys.executable, os.path.abspath(__file__), "--busy"])
               for _ in range(load)]
    ratios: dict[str, float] = {}
    try:
        if loaders:
            time.sleep(1.0)  # the busy processes are running
        cmd = [sys.executable, os.path.abspath(__file__), "--workload", name, "--repeats",
               str(args.repeats), "--warmup", str(args.warmup), "--device", DEVICE]
        with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) as child:
            for line in child.stdout:
                if line.startswith(RATIO_TAG):
                    label, ratio = json.loads(line[len(RATIO_TAG):])
                    ratios[label] = ratio
                else:
                    print(line, end="", flush=True)
        return child.returncode, ratios
    finally:
        for p in loaders:
            p.kill()
            p.wait()


def main() -> int:
    global DEVICE
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--only", default=",".join(WORKLOADS))
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--load", type=int, default=0, metavar="N",
                    help="also run each workload beside N busy processes (CPU)")
    ap.add_argument("--workload", help=argparse.SUPPRESS)
    ap.add_argument("--busy", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--mem-child", nargs=2, metavar=("WORKLOAD", "SIDE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.busy:
        busy()
    DEVICE = args.device
    if DEVICE == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: nothing to run on cuda")
        return 0
    torch.set_num_threads(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                          else os.cpu_count() or 1)
    torch.manual_seed(0)
    if args.mem_child:
        mem_child(*args.mem_child)
        return 0
    if args.workload:
        return 0 if run_workload(args.workload, args.repeats, args.warmup) else 3
    where = (torch.cuda.get_device_name() if DEVICE == "cuda"
             else f"CPU, {torch.get_num_threads()} threads")
    print(f"torch {torch.__version__}, float32, {where}; each workload in its own process: "
          f"median of {args.repeats} interleaved calls after {args.warmup} warm-up; peak "
          "memory = " + ("growth of max_memory_allocated in one call" if DEVICE == "cuda"
                         else "growth of VmHWM over VmRSS in one call after warm-up "
                         "(/proc/self/clear_refs)" if can_reset_peak()
                         else "growth of ru_maxrss in a fresh process's first call"),
          flush=True)
    start = time.perf_counter()
    ok = True
    names = args.only.split(",")
    unknown = [n for n in names if n not in WORKLOADS]
    if unknown:
        raise SystemExit(f"unknown workload(s) {', '.join(unknown)} (known: "
                         f"{', '.join(WORKLOADS)})")
    for name in names:
        code, quiet = run_child(name, args, 0)
        if code not in (0, 3):
            raise SystemExit(f"{name}: the benchmark failed (exit status {code})")
        ok &= code == 0
        if not args.load:
            continue
        print(f"-- {name} again, beside {args.load} busy processes:", flush=True)
        code, loaded = run_child(name, args, args.load)
        if code not in (0, 3):
            raise SystemExit(f"{name}: the loaded benchmark failed (exit status {code})")
        for label, q in quiet.items():
            r = loaded[label]
            met = r <= LOAD_TARGET * q
            ok &= met
            print(f"  under load {args.load}: {label}: ratio {r:.2f} vs {q:.2f} quiet, "
                  f"{r / q:.2f}x (<= {LOAD_TARGET:g}x: {'met' if met else 'MISSED'})",
                  flush=True)
    print(f"{'all targets met' if ok else 'a target was missed'} "
          f"({time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
