"""Fused attention (flash, memory-efficient), counted as torch's CPU flash kernel runs it:
the products as batched matrix products, every other operation as counted work."""

from __future__ import annotations

from typing import NamedTuple

import sympy as sp

from derivations import generic_ops
from derivations.generic_ops import grad_names
from derivations.movement_ops import bernoulli
from derivations.network.contractions import batched_matmul
from symflop.estimate.calls import Keep, OpCall, TensorRef, Unknown, Use


class _Sizes(NamedTuple):
    """G = batch x heads, L query rows, S keys, head sizes d and dv."""

    G: sp.Expr
    L: sp.Expr
    S: sp.Expr
    d: sp.Expr
    dv: sp.Expr


def _forward(at: _Sizes, scores: Use, mix: Use, masked: bool, dropout) -> list:
    """The scores q k^T (a product), scaled (a float or boolean mask added), the row
    maximum (S compares a row, the old maximum included), exp(s - max) and its row sum,
    the row's running sum kept (per row an exp, a multiplication and two additions), p v
    (a product), the output divided by the row sum (a reciprocal per row, a
    multiplication per value), the log-sum-exp (a log and an addition per row)."""
    G, L, S, dv = at.G, at.L, at.S, at.dv
    n = G * L * S
    rows = G * L
    w = generic_ops.work
    forward = [scores, w("attention scale", "mul", n)]
    forward += [w("attention mask added", "add", n)] if masked else []
    forward += [w("attention row maximum", "compare", n),
                w("attention exp(s - max) and row sum", "add", n + rows * (S - 1)),
                w("attention exp(s - max)", "transcendental", n),
                w("attention running sum (exp, products, sums)", "add", 2 * rows),
                w("attention running sum (exp)", "transcendental", rows),
                w("attention running sum (products)", "mul", rows)]
    if dropout:
        forward += [Use("attention dropout mask", bernoulli, {}, {"N": n},
                        forward_only=True),
                    w("attention dropout (mask, scale)", "mul", 2 * n),
                    w("attention dropout of the gradient", "mul", 2 * n, backward=True)]
    return forward + [mix,
                      w("attention output / row sum (reciprocals)", "div", rows),
                      w("attention output / row sum", "mul", rows * dv),
                      w("attention log-sum-exp (log)", "transcendental", rows),
                      w("attention log-sum-exp (add)", "add", rows)]


def _backward(at: _Sizes, scores: Use, grad: tuple[str, ...], masked: bool) -> list:
    """The rows' sum of grad_out * out; the scores again (their product and scale, the
    mask as s * 1 + mask), p = exp(s - lse); the four products' gradients (grad_v,
    grad_p, grad_q, grad_k), each accumulated into its gradient (an addition per value)
    and grad_q, grad_k scaled (a multiplication per value); grad_s = p (grad_p - D) (a
    subtraction and a multiplication per score)."""
    G, L, S, d, dv = at
    n = G * L * S
    rows = G * L
    w = generic_ops.work
    return [
        w("attention backward: rows of grad_out * out", "mul", rows * dv, backward=True),
        w("attention backward: rows of grad_out * out (sum)", "add", rows * (dv - 1),
          backward=True),
        Use("attention scores (recomputed)", batched_matmul, scores.options, scores.dims,
            backward_only=True, contraction=True, keep=False),
        w("attention scale (recomputed)", "mul", n, backward=True),
        *([w("attention mask (s * 1)", "mul", n, backward=True),
           w("attention mask added", "add", n, backward=True)] if masked else []),
        w("attention p = exp(s - lse)", "add", n, backward=True),
        w("attention p = exp(s - lse) (exp)", "transcendental", n, backward=True),
        w("attention grad_s = p (grad_p - D)", "add", n, backward=True),
        w("attention grad_s = p (grad_p - D) (product)", "mul", n, backward=True),
        w("attention gradients accumulated", "add",
          sum((m for t, m in (("v", G * S * dv), ("q", rows * d), ("k", G * S * d))
               if t in grad), sp.Integer(0)), backward=True),
        w("attention grad_q, grad_k scaled", "mul",
          sum((m for t, m in (("q", rows * d), ("k", G * S * d)) if t in grad),
              sp.Integer(0)), backward=True)]


def rule_flash_attention(call: OpCall):
    """Fused attention (flash, memory-efficient) as torch's CPU flash kernel runs it, for
    G = batch x heads, L query rows, S keys, head sizes d and dv: its forward
    (``_forward``) and backward (``_backward``) operations.

    Every score is computed: a causal kernel that skips the key blocks past the diagonal
    does less once L is past a block (32 to 256 rows: FlashAttentionKernel.cpp); the
    positions it fills with -inf are a fill, not arithmetic.  The kernel keeps q, k, v, its
    output and the rows' log-sum-exp, not the probabilities."""
    q, k, v = call.args[:3]
    efficient = call.op == "aten._scaled_dot_product_efficient_attention"
    mask = call.arg(3, "attn_bias") if efficient else call.kwargs.get("attn_mask")
    dropout = call.arg(5 if efficient else 3, "dropout_p", 0.0)
    if len(q.shape) != 4:
        return Unknown("fused attention on tensors that are not (batch, heads, rows, dim)")
    B, H, L, d = q.shape
    at = _Sizes(B * H, L, k.shape[2], d, v.shape[3])
    grad = grad_names(("q", q), ("k", k), ("v", v))
    if not grad:
        return Unknown("fused attention outside autograd (nothing needs its gradient)")
    scores = Use("attention scores", batched_matmul,
                 {"wrt": tuple(n for n, t in (("a", "q"), ("b", "k")) if t in grad)},
                 {"G": at.G, "M": L, "K": d, "N": at.S}, {"a": q, "b": k},
                 contraction=True, keep=False)
    mix = Use("attention output", batched_matmul,
              {"wrt": ("a",) + (("b",) if "v" in grad else ())},
              {"G": at.G, "M": L, "K": at.S, "N": at.dv}, {"b": v, "y": call.outputs[0]},
              contraction=True, keep=False)
    uses = _forward(at, scores, mix, isinstance(mask, TensorRef), dropout)
    uses += _backward(at, scores, grad, isinstance(mask, TensorRef))
    return uses + [Keep((q, k, v, *call.outputs), "q, k, v, the output, the log-sum-exps")]
