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
* ``convolution_backward``: the input gradient as a product over patches followed by
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

A transposed convolution is not costed here: it is reported unknown.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F  # noqa: N812 - torch's own spelling
from torch._decomp import get_decompositions

from symflop.core.ops import KINDS
from validation.executed import OpCounter, OpRecord, _tensors

A = torch.ops.aten
DECOMPOSED = get_decompositions([
    A.native_batch_norm, A.native_batch_norm_backward, A.native_layer_norm,
    A.native_layer_norm_backward, A._log_softmax, A._log_softmax_backward_data, A._softmax,
    A._safe_softmax, A._softmax_backward_data, A.nll_loss_forward, A.nll_loss_backward,
    A.threshold_backward, A.select_backward, A.native_dropout,
    A.native_dropout_backward, A.gelu, A.gelu_backward, A.silu, A.silu_backward,
    A.sigmoid_backward, A.tanh_backward,
])
# Tensor creation, dtype conversion, writes of given values, profiler markers.
NO_ARITHMETIC = frozenset((
    "to", "zeros_like", "ones_like", "new_full", "new_zeros", "new_empty", "flatten",
    "select_scatter", "slice_scatter", "scatter", "broadcast_in_dim", "_record_function_enter_new",
    "_record_function_exit", "empty_strided", "full_like", "detach_", "unbind",
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
    mask = args[10]
    B, outs = grad_out.shape[:2]
    S = math.prod(grad_out.shape[2:])
    C = x.shape[1]
    K = math.prod(w.shape[1:])
    out = dict.fromkeys(KINDS, 0)
    if mask[0]:
        out["mul"] += B * K * S * outs
        out["add"] += B * K * S * (outs - 1)
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
                         "max_pool2d_with_indices_backward"))


def _kernel_cost(name: str, args, kwargs, out) -> dict | None:
    transposed = {"convolution": 6, "convolution_backward": 7}.get(name)
    if transposed is not None and args[transposed]:
        return None  # a transposed convolution: not costed here (reported unknown)
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


class StepCounter(OpCounter):
    """``OpCounter`` over a whole training step: fused kernels decomposed or hand-costed."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        decomposition = DECOMPOSED.get(func)
        if decomposition is not None:
            with self:
                result = decomposition(*args, **kwargs)
            if result is not NotImplemented:
                return result
        if func.has_kernel_for_dispatch_key(torch._C.DispatchKey.CompositeImplicitAutograd):
            with self:  # reached from inside a decomposition: decompose it as torch would
                return func.decompose(*args, **kwargs)
        name = func.overloadpacket.__name__
        if name in NO_ARITHMETIC:
            return func(*args, **kwargs)
        if name.rstrip("_") not in HAND_COSTED:
            return super().__torch_dispatch__(func, types, args, kwargs)
        out = func(*args, **kwargs)
        ins, outs = _tensors((args, kwargs)), _tensors(out)
        self.records.append(OpRecord(
            f"aten.{name}", str(func), tuple(tuple(t.shape) for t in ins),
            tuple(str(t.dtype) for t in ins), tuple(tuple(t.shape) for t in outs),
            tuple(str(t.dtype) for t in outs), _kernel_cost(name.rstrip("_"), args, kwargs, out),
            "costed by hand (see the module)"))
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
