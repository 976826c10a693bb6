"""Executed operations of a real training step, by kind (what ``symflop estimate`` predicts).

``StepCounter`` extends the project's ``OpCounter`` (``validation.executed``) to a whole
torch training step.  torch runs most of a step in fused kernels (batch norm and its
backward, log-softmax, the loss, Adam's ``lerp_``/``addcmul_``/``addcdiv_``) whose
arithmetic the dispatcher does not see; those are replaced, while the step runs, by
torch's own decompositions (``torch._decomp``) into elementwise aten operations, which
``OpCounter`` costs.  Some kernels have no decomposition into such operations and are
costed here by hand, as the algorithm they implement executes it:

* ``convolution``: as a product over unfolded patches (im2col), K = C_in kh kw
  multiplications and K - 1 additions per output, plus one for a bias;
* ``convolution_backward``: the input gradient as a product over patches (per group of
  a grouped convolution, a sum over the group's output channels) followed by
  the fold, whose additions torch's own ``fold`` of ones counts (taps landing on each
  input position, less one); the weight gradient as a product over the B S positions;
  the bias gradient as a sum;
* ``var_mean``: the two-pass algorithm, mean (n - 1 additions, 1 division) then
  variance (n subtractions, n squares, n - 1 additions, 1 division) per output; torch's
  CPU kernel runs Welford's one-pass update, which does more per element;
* ``lerp``, ``addcmul``, ``addcdiv`` (Adam's updates): start + w (end - start) is a
  subtraction, a multiplication and an addition per element; s + v a b and s + v a / b
  an addition and a multiplication or division, and one more multiplication when v is
  not 1 (torch's decomposition of lerp evaluates both of its branches: not what runs);
* ``addmm``: bias + x W, k multiplications and k additions per output (k - 1 in the
  sum, one for the bias; torch's decomposition also multiplies by alpha and beta when
  they are 1);
* ``relu``: max(x, 0), one compare per element (torch's decomposition, a compare and
  a select, is not what its kernel runs);
* ``mean``: a sum (input less output elements additions) and a division per output;
* ``max_pool2d_with_indices``: one compare per window element inside the input, less
  one, per output (torch's ``unfold`` of ones counts the elements inside).

* ``max_pool2d_with_indices_backward``: each gradient added into the input position of
  its saved argmax, one addition per output gradient (the input gradient starts at 0).

* ``upsample_bilinear2d`` and its backward, as UpSampleKernel.cpp writes them: each
  output h0 (w0 x00 + w1 x01) + h1 (w0 x10 + w1 x11), 6 multiplications and 3
  additions; backward, h w g added into each of the 4 inputs, 8 multiplications and 4
  additions per output gradient (the weights, from the positions, are not counted);
* a transposed convolution and its backward, torch's CPU flash attention and its
  backward, ``clamp``, ``max``/``min``, ``sort``, ``topk``, ``index_put``: see their
  functions.

Work on integers and booleans only (masks, positions, indices) is kept apart
(``StepCounter.integer``), as the estimate keeps it apart from FLOPs.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F  # noqa: N812 - torch's own spelling
from torch._decomp import get_decompositions

from symflop.core.ops import KINDS
from validation import norm_kernel_count as norms
from validation.executed import OpCounter, OpRecord, _tensors

A = torch.ops.aten
DECOMPOSED = get_decompositions([
    A.native_batch_norm, A.native_batch_norm_backward, A._log_softmax,
    A._log_softmax_backward_data, A._softmax,
    A._safe_softmax, A._softmax_backward_data, A.nll_loss_forward, A.nll_loss_backward,
    A.threshold_backward, A.select_backward, A.native_dropout,
    A.native_dropout_backward, A.gelu, A.gelu_backward, A.silu, A.silu_backward,
    A.sigmoid_backward, A.tanh_backward, A.hardtanh, A.hardtanh_backward,
    A.embedding_dense_backward,
])
# Tensor creation, dtype conversion, writes of given values, profiler markers.
NO_ARITHMETIC = frozenset((
    "to", "zeros_like", "ones_like", "new_full", "new_zeros", "new_empty", "flatten",
    "select_scatter", "slice_scatter", "scatter", "broadcast_in_dim", "_record_function_enter_new",
    "_record_function_exit", "empty_strided", "full_like", "detach_", "unbind",
    # data movement: joined, split, read at indices, written into zeros
    "cat", "stack", "split", "unsafe_split", "split_with_sizes", "unsafe_split_with_sizes",
    "slice_backward", "index", "_unsafe_index", "embedding", "index_select",
    "constant_pad_nd", "new_ones",
))


def _taps(size: int, kernel: int, stride: int, pad: int, dilation: int, out: int,
          ) -> torch.Tensor:
    """Per input position along one axis, how many (output, tap) pairs read it."""
    ones = torch.ones(1, kernel, out)
    return F.fold(ones, (size + 2 * pad, 1), (kernel, 1), dilation=(dilation, 1),
                  stride=(stride, 1))[0, 0, pad:pad + size, 0]


def _conv_backward(args) -> dict:
    grad_out, x, w = args[:3]
    bias_sizes, stride, padding, dilation = args[3:7]
    groups, mask = args[9], args[10]
    B, outs = grad_out.shape[:2]
    S = math.prod(grad_out.shape[2:])
    C = x.shape[1]
    K = math.prod(w.shape[1:])      # per group: C / groups kh kw
    out = dict.fromkeys(KINDS, 0)
    if mask[0]:  # per group, each patch value a sum over the group's outs / groups outputs
        out["mul"] += B * K * S * outs
        out["add"] += B * K * S * (outs - groups)
        hits = [_taps(x.shape[2 + a], w.shape[2 + a], stride[a], padding[a], dilation[a],
                      grad_out.shape[2 + a]) for a in (0, 1)]
        per_pixel = torch.outer(hits[0], hits[1])
        out["add"] += B * C * int((per_pixel - 1).clamp(min=0).sum())
    if mask[1]:
        out["mul"] += outs * K * B * S
        out["add"] += outs * K * (B * S - 1)
    if mask[2] and bias_sizes is not None:
        out["add"] += outs * (B * S - 1)
    return out


HAND_COSTED = frozenset(("convolution", "convolution_backward", "var_mean", "rsqrt",
                         "max_pool2d_with_indices", "bernoulli", "all", "lerp", "addcmul",
                         "addcdiv", "mean", "relu", "addmm",
                         "max_pool2d_with_indices_backward", "clamp", "clamp_min",
                         "clamp_max", "bitwise_or", "bitwise_and", "bitwise_not", "tril",
                         "triu", "arange", "topk", "index_put", "_unsafe_index_put",
                         "_unsafe_masked_index_put_accumulate", "max", "min", "sort",
                         "argsort",
                         "upsample_bilinear2d", "upsample_bilinear2d_backward",
                         "_scaled_dot_product_flash_attention_for_cpu",
                         "_scaled_dot_product_flash_attention_for_cpu_backward"))


def _flash_blocks(q_len: int) -> int:
    """Rows per query block of torch's CPU flash attention (FlashAttentionKernel.cpp)."""
    return 256 if q_len >= 768 else 64 if q_len >= 192 else 32


def _flash_forward(args, kwargs) -> dict | None:
    """torch's CPU flash attention forward, per (batch, head), block by block: the scores
    q k^T (a product over d), scaled (and the mask added: a scale and an add), the row
    maximum, exp(s - max) summed, the running sums rescaled (exp, a multiplication and
    an addition per row and block; the output rescaled from the second key block on), p v
    accumulated, the output divided by the row sums (a reciprocal per row, a
    multiplication per value) and the log-sum-exp (a log and an addition per row).  A
    causal kernel skips the key blocks past the diagonal and fills the rest of the last
    one with -inf (a fill, no arithmetic)."""
    q, k, v = args[:3]
    dropout = args[3] if len(args) > 3 else kwargs.get("dropout_p", 0.0)
    causal = args[4] if len(args) > 4 else kwargs.get("is_causal", False)
    mask = kwargs.get("attn_mask")
    if dropout:
        return None  # the CPU kernel has no dropout: not run here
    G = q.shape[0] * q.shape[1]
    L, d, S, dv = q.shape[2], q.shape[3], k.shape[2], v.shape[3]
    qs, ks = _flash_blocks(L), 512
    out = dict.fromkeys(KINDS, 0)
    for m in range(0, L, qs):
        rows = min(qs, L - m)
        keys = min(m + rows, S) if causal else S
        for n in range(0, keys, ks):
            cols = min(ks, S - n)
            out["mul"] += rows * cols * d + rows * cols          # q k^T, the scale
            out["add"] += rows * cols * (d - 1)
            if mask is not None:
                out["add"] += rows * cols
            out["compare"] += rows * cols                         # row max (with the old)
            out["add"] += rows * cols + rows * (cols - 1)         # s - max, the row sum
            out["transcendental"] += rows * cols + rows           # exp; exp(old - new)
            out["add"] += 2 * rows                                # old - new; sums added
            out["mul"] += rows + (rows * dv if n > 0 else 0)      # sums, output rescaled
            out["mul"] += rows * dv * cols                        # p v
            out["add"] += rows * dv * (cols - 1) + (rows * dv if n > 0 else 0)
        out["div"] += rows
        out["mul"] += rows * dv
        out["transcendental"] += rows
        out["add"] += rows
    return {k: G * n for k, n in out.items() if n}


def _flash_backward(args, kwargs) -> dict:
    """torch's CPU flash attention backward, per (batch, head): the rows' sum of
    grad_out * out; per block the scores again (q k^T, scaled in the product: a
    multiplication per score), the mask added (as s * 1 + mask), p = exp(s - lse) (a
    subtraction and an exp per score), grad_v += p^T grad_out, grad_p = grad_out v^T,
    grad_s = p (grad_p - D) (a subtraction and a multiplication per score),
    grad_q += scale grad_s k and grad_k += scale grad_s^T q (a product, a scale and an
    accumulation each)."""
    grad_out, q, k, v = args[:4]
    causal = args[7] if len(args) > 7 else kwargs.get("is_causal", False)
    mask = kwargs.get("attn_mask")
    G = q.shape[0] * q.shape[1]
    L, d, S, dv = q.shape[2], q.shape[3], k.shape[2], v.shape[3]
    qs, ks = _flash_blocks(L), 512
    out = dict.fromkeys(KINDS, 0)
    out["mul"] += L * dv
    out["add"] += L * (dv - 1)
    for m in range(0, L, qs):
        rows = min(qs, L - m)
        keys = min(m + rows, S) if causal else S
        for n in range(0, keys, ks):
            cols = min(ks, S - n)
            sc = rows * cols
            out["mul"] += sc * d + sc + (sc if mask is not None else 0)   # mask: s 1 + m
            out["add"] += sc * (d - 1) + (sc if mask is not None else 0)
            out["add"] += sc
            out["transcendental"] += sc
            out["mul"] += cols * dv * rows                        # grad_v += p^T grad_out
            out["add"] += cols * dv * rows
            out["mul"] += sc * dv                                 # grad_p = grad_out v^T
            out["add"] += sc * (dv - 1)
            out["add"] += sc
            out["mul"] += sc
            out["mul"] += rows * d * cols + rows * d              # grad_q
            out["add"] += rows * d * cols
            out["mul"] += cols * d * rows + cols * d              # grad_k
            out["add"] += cols * d * rows
    return {k: G * n for k, n in out.items() if n}


def _transposed_conv(x, w, y, bias, stride, padding, dilation) -> dict:
    """A transposed convolution as torch's CPU kernel runs it: the columns W^T x (per input
    position C_out kh kw values, each a sum over C_in) folded into the output (taps
    landing on each output position, less one, additions; torch's ``fold`` of ones counts
    them), and the bias added."""
    B, C_in = x.shape[:2]
    S_in = math.prod(x.shape[2:])
    cols = math.prod(w.shape[1:])             # C_out kh kw (groups of one)
    out = {"mul": B * S_in * cols * C_in, "add": B * S_in * cols * (C_in - 1)}
    hits = [_taps(y.shape[2 + a], w.shape[2 + a], stride[a], padding[a], dilation[a],
                  x.shape[2 + a]) for a in (0, 1)]
    per_pixel = torch.outer(hits[0], hits[1])
    out["add"] += B * y.shape[1] * int((per_pixel - 1).clamp(min=0).sum())
    if bias is not None:
        out["add"] += y.numel()
    return out


def _transposed_conv_backward(args) -> dict:
    """The gradients of a transposed convolution: of its input, a convolution of grad_out
    with W (per input value a sum over C_out kh kw products); of W, per weight a sum over
    the B S_in input positions; of the bias, a sum."""
    grad_out, x, w = args[:3]
    bias_sizes, mask = args[3], args[10]
    B = x.shape[0]
    S_in = math.prod(x.shape[2:])
    K = math.prod(w.shape[1:])
    out = dict.fromkeys(KINDS, 0)
    if mask[0]:
        out["mul"] += x.numel() * K
        out["add"] += x.numel() * (K - 1)
    if mask[1]:
        out["mul"] += w.numel() * B * S_in
        out["add"] += w.numel() * (B * S_in - 1)
    if mask[2] and bias_sizes is not None:
        S_out = math.prod(grad_out.shape[2:])
        out["add"] += grad_out.shape[1] * (B * S_out - 1)
    return out


def _first(out) -> torch.Tensor:
    return out[0] if isinstance(out, (tuple, list)) else out


def _kernel_cost(name: str, args, kwargs, out) -> dict | None:
    if name == "convolution" and args[6]:
        return _transposed_conv(args[0], args[1], out, args[2], args[3], args[4], args[5])
    if name == "convolution_backward" and args[7]:
        return _transposed_conv_backward(args)
    if name == "_scaled_dot_product_flash_attention_for_cpu":
        return _flash_forward(args, kwargs)
    if name == "_scaled_dot_product_flash_attention_for_cpu_backward":
        return _flash_backward(args, kwargs)
    if name in ("clamp", "clamp_min", "clamp_max"):  # a compare per bound given
        bounds = (args[1:3] if name == "clamp" else args[1:2])
        return {"compare": out.numel() * sum(b is not None for b in bounds)}
    if name in ("bitwise_or", "bitwise_and", "bitwise_not", "tril", "triu"):
        return {"compare": out.numel()}
    if name == "arange":  # one value made per element
        return {"add": out.numel()}
    if name in ("max", "min"):  # a reduction (max(a, b) runs as aten.maximum)
        return {"compare": args[0].numel() - _first(out).numel()}
    if name in ("sort", "argsort"):  # a comparison sort: n ceil(log2 n) compares per row
        dim = args[1] if len(args) > 1 and isinstance(args[1], int) else kwargs.get("dim", -1)
        n = args[0].shape[dim] if args[0].dim() else 1
        return {"compare": args[0].numel() * max(n - 1, 0).bit_length()}
    if name == "topk":  # k passes of (n - 1) compares over each row
        x, k = args[:2]
        dim = args[2] if len(args) > 2 else kwargs.get("dim", -1)
        n = x.shape[dim]
        return {"compare": x.numel() // n * k * (n - 1)}
    if name in ("index_put", "_unsafe_index_put"):
        accumulate = args[3] if len(args) > 3 else kwargs.get("accumulate", False)
        return {"add": args[2].numel()} if accumulate else {}
    if name == "_unsafe_masked_index_put_accumulate":  # (self, mask, indices, values)
        return {"add": args[3].numel()}
    if name == "upsample_bilinear2d":  # h0 (w0 x00 + w1 x01) + h1 (w0 x10 + w1 x11)
        return {"mul": 6 * out.numel(), "add": 3 * out.numel()}
    if name == "upsample_bilinear2d_backward":  # input += h w g at each of 4 taps
        return {"mul": 8 * args[0].numel(), "add": 4 * args[0].numel()}
    if name == "convolution":
        x, w, bias = args[:3]
        y = out
        K = math.prod(w.shape[1:])
        return {"mul": y.numel() * K, "add": y.numel() * (K - 1 + (bias is not None))}
    if name == "convolution_backward":
        return _conv_backward(args)
    if name == "var_mean":
        x = args[0]
        n_out = out[0].numel()
        n = x.numel() // n_out
        return {"add": n_out * ((n - 1) + n + (n - 1)), "mul": n_out * n, "div": 2 * n_out}
    if name == "rsqrt":
        return {"transcendental": out.numel()}
    if name == "max_pool2d_with_indices":
        x, kernel = args[:2]
        stride = args[2] if len(args) > 2 and args[2] else kernel
        padding = args[3] if len(args) > 3 else (0, 0)
        y = out[0]
        hits = F.unfold(torch.ones(1, 1, *x.shape[2:]), kernel, padding=padding,
                        stride=stride).sum(dim=1)
        return {"compare": y.shape[0] * y.shape[1] * int((hits - 1).sum())}
    if name in ("lerp", "addcmul", "addcdiv"):
        n = out.numel()
        value = kwargs.get("value", args[3] if len(args) > 3 else 1)
        scaled = 0 if name == "lerp" or value == 1 else n
        return {"lerp": {"add": 2 * n, "mul": n},
                "addcmul": {"add": n, "mul": n + scaled},
                "addcdiv": {"add": n, "div": n, "mul": scaled}}[name]
    if name == "addmm":  # beta bias + alpha x W: a product, the bias added (scaled if not 1)
        bias, x, w = args[:3]
        k, n = x.shape[-1], out.numel()
        scale = (kwargs.get("beta", 1) != 1) * bias.numel() + (kwargs.get("alpha", 1) != 1) * n
        return {"mul": n * k + scale, "add": n * k}
    if name == "relu":  # max(x, 0)
        return {"compare": out.numel()}
    if name == "mean":  # a sum, then one division per output
        return {"add": args[0].numel() - out.numel(), "div": out.numel()}
    if name == "max_pool2d_with_indices_backward":
        return {"add": args[0].numel()}
    if name == "bernoulli":
        n = args[0].numel()
        return {"random": n, "compare": n}
    return {"compare": args[0].numel() - out.numel()}  # all: a reduction of compares


def _norm_kernel(name: str, args) -> dict | None:
    """torch's CPU BatchNorm and LayerNorm kernels (``validation.norm_kernel_count``);
    None where they are not costed (BatchNorm in eval mode: decomposed)."""
    if name == "native_batch_norm":
        return norms.batch_norm(args[0], args[1], args[3], args[5])
    if name == "native_batch_norm_backward":
        return norms.batch_norm_backward(args[0], args[1], args[2], args[7], args[9])
    if name == "native_layer_norm":
        return norms.layer_norm(args[0], args[1], args[2], args[3])
    if name == "native_layer_norm_backward":
        return norms.layer_norm_backward(args[0], args[1], args[2], args[5], args[7])
    return None


def _on_integers(r: OpRecord) -> bool:
    """An operation on integers or booleans only (no floating tensor in or out)."""
    dtypes = r.in_dtypes + r.out_dtypes
    return bool(dtypes) and not any(torch.empty((), dtype=getattr(torch, d.split(".")[-1]))
                                    .is_floating_point() for d in dtypes)


class StepCounter(OpCounter):
    """``OpCounter`` over a whole training step: fused kernels decomposed or hand-costed.
    ``by_kind`` counts the work on floating-point tensors; ``integer`` the work on
    integers and booleans only, kept apart as the estimate keeps it."""

    @property
    def by_kind(self) -> dict[str, int]:
        acc = dict.fromkeys(KINDS, 0)
        for r in self.records:
            if not _on_integers(r):
                for k, v in (r.counts or {}).items():
                    acc[k] += v
        return acc

    @property
    def integer(self) -> int:
        return sum(sum((r.counts or {}).values()) for r in self.records if _on_integers(r))

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = func.overloadpacket.__name__
        counts = _norm_kernel(name, args) if not kwargs else None
        if counts is not None:
            return self._hand_costed(func, name, args, kwargs, counts,
                                     "torch's CPU kernel (validation.norm_kernel_count)")
        decomposition = DECOMPOSED.get(func)
        if decomposition is not None:
            with self:
                result = decomposition(*args, **kwargs)
            if result is not NotImplemented:
                return result
        if func.has_kernel_for_dispatch_key(torch._C.DispatchKey.CompositeImplicitAutograd):
            with self:  # reached from inside a decomposition: decompose it as torch would
                return func.decompose(*args, **kwargs)
        if name in NO_ARITHMETIC:
            return func(*args, **kwargs)
        if name.rstrip("_") not in HAND_COSTED:
            return super().__torch_dispatch__(func, types, args, kwargs)
        return self._hand_costed(func, name, args, kwargs, None,
                                 "costed by hand (see the module)")

    def _hand_costed(self, func, name: str, args, kwargs, counts: dict | None, why: str):
        out = func(*args, **kwargs)
        if counts is None:
            counts = _kernel_cost(name.rstrip("_"), args, kwargs, out)
        ins, outs = _tensors((args, kwargs)), _tensors(out)
        self.records.append(OpRecord(
            f"aten.{name}", str(func), tuple(tuple(t.shape) for t in ins),
            tuple(str(t.dtype) for t in ins), tuple(tuple(t.shape) for t in outs),
            tuple(str(t.dtype) for t in outs), counts, why))
        return out


PHASES = ("forward", "backward", "optimizer")


def step_counts(model: torch.nn.Module, x: torch.Tensor, optimizer: str = "adam",
                seed: int = 0) -> dict[str, StepCounter]:
    """Counters of one real training step, by phase: the forward pass with the
    cross-entropy loss (over the last axis of the output, random labels), the backward
    pass, and the optimizer step."""
    from validation.estimate_checks import OPTIMIZERS

    torch.manual_seed(seed)
    model.train()
    model.zero_grad(set_to_none=True)  # a step of its own: no gradient to add to
    opt = OPTIMIZERS[optimizer](model.parameters())
    with torch.no_grad():
        out = model(x)
    labels = torch.randint(0, out.shape[-1], (out.numel() // out.shape[-1],))
    counters = {p: StepCounter() for p in PHASES}
    with counters["forward"]:
        out = model(x)
        loss = F.cross_entropy(out.reshape(-1, out.shape[-1]), labels)
    with counters["backward"]:
        loss.backward()
    with counters["optimizer"]:
        opt.step()
    return counters
