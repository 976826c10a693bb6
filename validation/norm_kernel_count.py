"""What torch's CPU BatchNorm and LayerNorm kernels execute, counted on real tensors.

Read from ATen's sources (batch_norm_kernel.cpp, Normalization.cpp,
layer_norm_kernel.cpp, moments_utils.h), loop by loop, on this machine: the SIMD
width (``Vectorized<float>::size()``, from torch's CPU capability) decides how
Welford's partial moments are merged, the thread count how many partial sums are
added.  Written apart from the estimate's rules (``derivations.norm_kernels``), which
count per value and per channel only.
"""

from __future__ import annotations

import torch

from symflop.core.ops import KINDS

# Vectorized<float>::size(): 512-bit registers hold 16 floats, 256-bit ones (and the
# default vectors) 8
_WIDTH = {"AVX512": 16, "AVX2": 8, "DEFAULT": 8, "NO AVX": 8}


def simd_width() -> int:
    return _WIDTH.get(torch.backends.cpu.get_cpu_capability(), 8)


def _zero() -> dict[str, int]:
    return dict.fromkeys(KINDS, 0)


def _ceil_log2(x: int) -> int:
    """utils::CeilLog2: 1 up to 2, else ceil(log2 x)."""
    return 1 if x <= 2 else (x - 1).bit_length()


def rowwise_moments(n_values: int, width: int) -> dict[str, int]:
    """moments_utils.h RowwiseMomentsImpl over one row of ``n_values`` floats: Welford's
    update per full vector (chunks of 16 vectors, each merged into a cascade),
    a scalar update per value past the last vector, one merge per lane, m2 / n."""
    out = _zero()
    n = n_values // width
    m = -(-n // 16)
    depth = _ceil_log2(m)
    merges = 0
    for i in range(m):
        values = min(16, n - i * 16) * width
        out["add"] += 4 * values      # delta = x - m1, m1 += ..., x - m1, m2 += ...
        out["mul"] += 2 * values      # delta c, delta (x - m1)
        merges += 1
        mask, j = i + 1, 1
        while j < depth and mask & 1 == 0:
            merges += 1
            mask >>= 1
            j += 1
    merges += depth - 1
    # AddMomentsVec: c = m0_add / n (a division); delta, m1 += c delta,
    # m2 += m2_add + delta delta c m0
    out["add"] += 4 * width * merges
    out["mul"] += 4 * width * merges
    out["div"] += merges
    tail = n_values - n * width      # delta, m1 += delta / m0, m2 += delta (x - m1)
    out["add"] += 4 * tail
    out["mul"] += tail
    out["div"] += tail
    out["add"] += 4 * width           # AddMoments per lane, scalar
    out["mul"] += 4 * width
    out["div"] += width
    out["div"] += 1                   # m2 / n
    return out


def layer_norm(x: torch.Tensor, normalized_shape, weight, bias) -> dict[str, int]:
    """LayerNormKernelImplInternal: the moments, rstd = 1 / sqrt(var + eps), bias =
    -rstd mean per row, (x scale + bias) gamma + beta per value (gamma 1 and beta 0
    are still multiplied and added when absent)."""
    n = 1
    for s in normalized_shape:
        n *= int(s)
    rows = x.numel() // n
    moments = rowwise_moments(n, simd_width())
    out = {k: v * rows for k, v in moments.items()}
    out["add"] += rows * (1 + 2 * n)
    out["div"] += rows
    out["transcendental"] += rows
    out["mul"] += rows * (1 + 2 * n)
    return out


def layer_norm_backward(grad_out, x, normalized_shape, weight, mask) -> dict[str, int]:
    """LayerNormBackwardKernelImplInternal: per row, the buffers of w's gradient
    (dgamma + dy (a x + b), with b = -a mean) and b's (dbeta + dy); ds = sum dy x w,
    db = sum dy w; b' = (db mean - ds) a^3 scale, c' = -b' mean - db a scale; dx = a dy
    w + b' x + c'.  Then the per-thread buffers summed, per column."""
    n = 1
    for s in normalized_shape:
        n *= int(s)
    rows = x.numel() // n
    threads = torch.get_num_threads()
    out = _zero()
    out["div"] += 1                                         # scale = 1 / n
    d_gamma, d_beta, d_x = mask[1], mask[2], mask[0]
    weighted = weight is not None
    if d_gamma:
        out["mul"] += rows * (1 + 2 * n)
        out["add"] += rows * 2 * n
    if d_beta:
        out["add"] += rows * n
    if d_x:
        out["add"] += rows * (2 * (n - 1) + 2 + 2 * n)      # two row sums, b', c', dx
        out["mul"] += rows * ((3 if weighted else 1) * n + 8 + (3 if weighted else 2) * n)
    if d_gamma or d_beta:
        out["add"] += 2 * threads * n                       # both buffers, always
    return out


def batch_norm(x, weight, running_mean, training: bool) -> dict[str, int] | None:
    """batch_norm_cpu in training: the statistics (two passes over each channel into a
    double; on channels-last and (N, C) inputs, per-thread buffers then their sum),
    invstd and the running averages per channel, then x alpha + beta."""
    if not training:
        return None
    C = x.shape[1]
    E = x.numel()
    L = E // C
    image = E // (x.shape[0] * C)
    running = running_mean is not None
    out = _zero()
    out["add"] += 4 * E
    out["mul"] += 2 * E
    out["add"] += C * (6 if running else 2)
    out["mul"] += C * (6 if running else 2)
    out["div"] += C * (4 if running else 3)
    out["transcendental"] += C
    out["compare"] += C
    if _channels_last(x, image) and L > torch.get_num_threads():
        out["add"] += 2 * torch.get_num_threads() * C     # the buffers' sums
    return out


def _channels_last(x: torch.Tensor, image: int) -> bool:
    return not x.is_contiguous() or image == 1


def batch_norm_backward(grad_out, x, weight, training: bool, mask) -> dict[str, int] | None:
    """batch_norm_cpu_backward in training: per channel the sum of dy and of (x - mean)
    dy, then dx (per value; the channels-last kernel recomputes k = dotp invstd^2 / N
    and sum / N for every value), grad_w = dotp invstd."""
    if not training:
        return None
    C = x.shape[1]
    E = x.numel()
    image = E // (x.shape[0] * C)
    last = _channels_last(x, image)
    out = _zero()
    out["add"] += 3 * E
    out["mul"] += E
    if mask[0]:
        out["add"] += 3 * E
        if last:
            out["mul"] += 5 * E
            out["div"] += 2 * E
        else:
            out["mul"] += 3 * E + 2 * C
            out["div"] += 2 * C
    if mask[1]:
        out["mul"] += C
    if last:
        out["add"] += 2 * torch.get_num_threads() * C
    return out
