"""BatchNorm and LayerNorm as torch's CPU kernels run them (``symflop estimate``).

The catalogue's ``batchnorm`` and ``layernorm`` are the papers' four steps, and the
engine derives their backward: 7 operations a value forward and 7 backward for
BatchNorm.  torch runs neither: its kernels fold the normalization into one scale and
shift per channel (or row), and its backward is a formula of its own.  What each
kernel does to every value, read from ATen's sources (torch 2.x):

* ``native_batch_norm``, training (batch_norm_kernel.cpp,
  ``batch_norm_cpu_collect_stats_contiguous_impl`` and ``batch_norm_cpu_contiguous_impl``;
  Normalization.cpp, ``batch_norm_cpu_update_stats_template``): the channel's sum, then
  the sum of (x - mean)^2 (two passes, not Welford), then y = x alpha + beta with
  alpha = invstd w, beta = b - mean alpha: 4 additions and 2 multiplications a value.
  Per channel: the mean, var / n, 1 / sqrt(var + eps) and (with running statistics)
  var / (n - 1): 4 divisions, a square root, a compare (var != 0); alpha, beta and the
  two running averages m r + (1 - m) s: 6 multiplications, 6 additions.
* ``native_batch_norm_backward``, training: per value, the channel's sum of dy and
  sum of (x - mean) dy (3 additions, a multiplication), then, where the input needs a
  gradient, dx = (dy - sum / N - (x - mean) k) invstd w (3 additions, 3
  multiplications).  Per channel k = dotp invstd^2 / N and sum / N (2
  multiplications, 2 divisions), grad_w = dotp invstd (a multiplication).  On (N, C)
  inputs (no spatial axes) torch takes its channels-last kernel, whose dx recomputes
  k and sum / N for every value (3 multiplications and 2 divisions more a value).
* ``native_layer_norm`` (layer_norm_kernel.cpp, moments_utils.h ``RowwiseMoments``):
  Welford's update per value of the full vectors (x - m1; m1 += delta / k; m2 += delta
  (x - m1): 4 additions, 2 multiplications, 1 / k from a table) in chunks of 16
  vectors, each chunk's moments merged into a cascade (4 additions, 4 multiplications a
  lane and a division a merge), the values past the last full vector updated one by
  one (a division each), the lanes merged (4 additions, 4 multiplications, a division
  each) and m2 / n; then per row 1 / sqrt(var + eps) and -rstd mean, and per value
  (x rstd - mean rstd) w + b (2 additions, 2 multiplications).  The vector width is
  this machine's (``Vectorized<float>::size()``: 16 floats with AVX-512, else 8): at a
  width of 64 the merges double Welford's work, at a few thousand they add a tenth.
* ``native_layer_norm_backward``: per value, w's gradient dy (rstd x - rstd mean)
  (2 additions, 2 multiplications), b's gradient (an addition), the row sums of
  dy x w and dy w (2 additions, 3 multiplications; without w, 2 and 1) and dx = rstd dy
  w + b' x + c' (2 additions, 3 multiplications; without w, 2).  Per row b' and c' (2
  additions, 8 multiplications) and -rstd mean (a multiplication, for w's gradient).

Left out, because it is a setting of the run, not of the model or the machine: the
per-thread partial sums the kernels add up at the end (2 T additions a channel of a
channels-last BatchNorm or a column of LayerNorm's weight gradients, T threads).
``validation.step_count`` counts them as they run.
"""

from __future__ import annotations

import sympy as sp

from derivations import generic_ops
from symflop.estimate.calls import Gradients, Keep, OpCall, TensorRef, Unknown, Use

_WIDTH = {"AVX512": 16}   # Vectorized<float>::size(); 8 for AVX2 and the default vectors


def simd_width() -> int:
    """Floats in one vector of torch's CPU kernels on this machine."""
    import torch
    return _WIDTH.get(torch.backends.cpu.get_cpu_capability(), 8)


def _ceil_log2(x: int) -> int:
    return 1 if x <= 2 else (x - 1).bit_length()


def welford_row(n: int, width: int) -> dict[str, int]:
    """RowwiseMomentsImpl over one row of n values: closed form.  With v = n // width
    full vectors in m = ceil(v / 16) chunks and a cascade of depth D = CeilLog2(m),
    chunk k (1-based) is merged once plus min(ctz(k), D - 1) times up the cascade (the
    number of j < D with 2^j dividing k), and D - 1 merges close it."""
    v = n // width
    m = -(-v // 16)
    depth = _ceil_log2(m)
    merges = m + sum(m // 2 ** j for j in range(1, depth)) + depth - 1
    tail = n - v * width
    lanes = width
    return {"add": 4 * v * width + 4 * width * merges + 4 * tail + 4 * lanes,
            "mul": 2 * v * width + 4 * width * merges + tail + 4 * lanes,
            "div": merges + tail + lanes + 1}


def _work(label: str, counts: dict[str, sp.Expr], backward: bool = False) -> list[Use]:
    return [generic_ops.work(f"{label} ({kind})", kind, n, backward=backward)
            for kind, n in counts.items() if sp.expand(n) != 0]


def _needs_grad(t) -> bool:
    return isinstance(t, TensorRef) and t.requires_grad and t.floating


def batch_norm(call: OpCall):
    x, w, b, running_mean = call.args[:4]
    if not call.arg(5, "training"):
        return Unknown("batch norm in eval mode (running statistics)")
    if len(x.shape) < 2:
        return Unknown("batch norm of a tensor without a channel axis")
    E, C = sp.Mul(*x.shape), x.shape[1]
    running = isinstance(running_mean, TensorRef)
    _y, mean, invstd = call.outputs[:3]
    uses = _work("batch norm: sums, (x - mean)^2, x alpha + beta",
                 {"add": 4 * E, "mul": 2 * E})
    uses += _work("batch norm: per channel statistics, alpha, beta", {
        "add": (6 if running else 2) * C, "mul": (6 if running else 2) * C,
        "div": (4 if running else 3) * C, "transcendental": C, "compare": C})
    grads = tuple(t for t in (x, w, b) if _needs_grad(t))
    if not grads:
        return uses
    dx = _needs_grad(x)
    spatial = len(x.shape) > 2 and sp.Mul(*x.shape[2:]) != 1
    per_value = {"add": 3 * E, "mul": E}           # sum of dy, sum of (x - mean) dy
    per_channel = {"mul": C if _needs_grad(w) else 0}
    if dx and spatial:
        per_value = {"add": 6 * E, "mul": 4 * E}
        per_channel = {"mul": per_channel["mul"] + 2 * C, "div": 2 * C}
    elif dx:                                        # channels-last kernel: k per value
        per_value = {"add": 6 * E, "mul": 6 * E, "div": 2 * E}
    uses += _work("batch norm backward: row sums and dx", per_value, backward=True)
    uses += _work("batch norm backward: per channel", per_channel, backward=True)
    return uses + [Gradients(grads), Keep((x, mean, invstd), "the input, mean, invstd")]


def layer_norm(call: OpCall):
    x, shape, w, b = call.args[:4]
    n = sp.Mul(*(sp.Integer(s) for s in shape))
    E = sp.Mul(*x.shape)
    rows = E / n
    _y, mean, rstd = call.outputs[:3]
    width = simd_width()
    moments = welford_row(int(n), width)
    uses = _work(f"layer norm: Welford's moments ({width}-float vectors)",
                 {k: v * rows for k, v in moments.items()})
    uses += _work("layer norm: rstd and -rstd mean per row, (x rstd - mean rstd) w + b",
                  {"add": rows + 2 * E, "div": rows, "transcendental": rows,
                   "mul": rows + 2 * E})
    grads = tuple(t for t in (x, w, b) if _needs_grad(t))
    if not grads:
        return uses
    add, mul, per_row_mul = 0, 0, 0
    if _needs_grad(w):
        add, mul, per_row_mul = add + 2, mul + 2, per_row_mul + 1
    if _needs_grad(b):
        add += 1
    if _needs_grad(x):
        weighted = isinstance(w, TensorRef)
        # row sums (ds, db): n - 1 additions a row each, then b' and c' (an addition each)
        add, mul = add + 4, mul + (6 if weighted else 3)
        per_row_mul += 8
    counts = {"add": add * E, "mul": mul * E + per_row_mul * rows,
              "div": sp.Integer(1)}                 # 1 / n, once
    uses += _work("layer norm backward", counts, backward=True)
    return uses + [Gradients(grads), Keep((x, mean, rstd), "the input, mean, rstd")]
