"""The Megatron-LM papers' closed forms, derived from a traced GPT layer.

* Korthikanti et al. (2022), "Reducing Activation Recomputation in Large Transformer
  Models", Table 2: the activation memory of one transformer layer, in bytes, with
  16-bit activations and 1-byte dropout masks, for no parallelism, tensor parallelism
  (t), tensor and sequence parallelism, each with and without selective recomputation
  (of the attention's core: QK^T, softmax, dropout, the product with V), and full
  recomputation.
* Narayanan et al. (2021), "Efficient Large-Scale Language Model Training on GPU
  Clusters Using Megatron-LM", eq. (3): the FLOPs of one iteration,
  96 B s l h^2 (1 + s/(6h) + V/(16 l h)), with full recomputation.

The layer is the one those papers count (pre-LayerNorm GPT, fused QKV projection, a
4h MLP with GeLU, dropout after the attention probabilities and after each block), in
bfloat16.  It is traced with s and b symbolic; the head count a, the head size d
(h = a d) and t are fixed by each trace, so each row is fitted over a grid of them
(``symflop.estimate.fit.fit_grid``) and checked at one more value of each.
"""

from __future__ import annotations

import sympy as sp
import torch
import torch.nn.functional as F  # noqa: N812 - torch's own spelling
from torch import nn

from symflop.core.model import size_symbol
from symflop.estimate.fit import fit_grid
from symflop.estimate.tensor_parallel import layout

s, b, h, a, t, L, V = (size_symbol(n) for n in ("s", "b", "h", "a", "t", "L", "V"))
d, u = size_symbol("d"), sp.Symbol("u", positive=True)   # head size; u = 1/t


class CoreAttention(nn.Module):
    """softmax(q k^T / sqrt(d)) with dropout, times v: what selective recomputation
    recomputes."""

    def __init__(self, p: float = 0.1):
        super().__init__()
        self.p = p

    def forward(self, q, k, v):
        scores = torch.matmul(q, k.transpose(-2, -1)) / q.shape[-1] ** 0.5
        probs = F.dropout(torch.softmax(scores, dim=-1), self.p, self.training)
        return torch.matmul(probs, v)


class Attention(nn.Module):
    def __init__(self, hidden: int, heads: int):
        super().__init__()
        self.head = hidden // heads
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.core = CoreAttention()
        self.proj = nn.Linear(hidden, hidden)

    def forward(self, x):                       # x: (s, b, h), Megatron's layout
        s_, b_, _ = x.shape
        qkv = self.qkv(x).view(s_, b_, -1, 3 * self.head).permute(1, 2, 0, 3)
        q, k, v = qkv.chunk(3, dim=-1)
        o = self.core(q, k, v).permute(2, 0, 1, 3).reshape(s_, b_, -1)
        return self.proj(o)


class Layer(nn.Module):
    def __init__(self, hidden: int, heads: int, p: float = 0.1):
        super().__init__()
        self.ln1 = nn.LayerNorm(hidden)
        self.attn = Attention(hidden, heads)
        self.drop1 = nn.Dropout(p)
        self.ln2 = nn.LayerNorm(hidden)
        self.fc1 = nn.Linear(hidden, 4 * hidden)
        self.fc2 = nn.Linear(4 * hidden, hidden)
        self.drop2 = nn.Dropout(p)

    def forward(self, x):
        x = x + self.drop1(self.attn(self.ln1(x)))
        return x + self.drop2(self.fc2(F.gelu(self.fc1(self.ln2(x)))))


class OneLayer(nn.Module):
    """The layer under a name, so that the whole of it can be checkpointed."""

    def __init__(self, hidden: int, heads: int):
        super().__init__()
        self.layer = Layer(hidden, heads)

    def forward(self, x):
        return self.layer(x)


class GPT(nn.Module):
    """Narayanan et al.'s GPT: token embedding, l layers, a final LayerNorm and an
    untied output projection to the V logits (token ids in, (s, b, V) logits out)."""

    def __init__(self, vocab: int, hidden: int, heads: int, layers: int):
        super().__init__()
        self.embedding = nn.Embedding(vocab, hidden)
        self.layers = nn.ModuleList(Layer(hidden, heads) for _ in range(layers))
        self.norm = nn.LayerNorm(hidden)
        self.head = nn.Linear(hidden, vocab, bias=False)

    def forward(self, ids):                     # ids: (b, s)
        x = self.embedding(ids).transpose(0, 1)
        for layer in self.layers:
            x = layer(x)
        return self.head(self.norm(x))


def OneLayerSmall() -> nn.Module:  # noqa: N802 - a factory named as the model it makes
    """A bfloat16 layer of h = 64, a = 8 (the command line's tests)."""
    return OneLayer(64, 8).to(torch.bfloat16)


def TwoLayerGPT() -> nn.Module:  # noqa: N802
    """A two-layer GPT, V = 64, h = 32, a = 4 (the command line's tests)."""
    return GPT(64, 32, 4, 2)


TP_PLAN = {"layer.attn.qkv": "colwise", "layer.attn.proj": "rowwise",
           "layer.fc1": "colwise", "layer.fc2": "rowwise"}

# Table 2, as published (bytes per layer)
TABLE2 = {
    "no parallelism": s * b * h * (34 + 5 * a * s / h),
    "tensor parallel": s * b * h * (10 + 24 / t + 5 * a * s / (h * t)),
    "tensor + sequence parallel": s * b * h * (34 / t + 5 * a * s / (h * t)),
    "tensor parallel + selective recomputation": s * b * h * (10 + 24 / t),
    "tensor + sequence parallel + selective recomputation": s * b * h * 34 / t,
    "full recomputation": s * b * h * 2,
}

# (tensor parallel, sequence parallel, what is checkpointed) of each row
ROWS = {
    "no parallelism": (False, False, ()),
    "tensor parallel": (True, False, ()),
    "tensor + sequence parallel": (True, True, ()),
    "tensor parallel + selective recomputation": (True, False, ("layer.attn.core",)),
    "tensor + sequence parallel + selective recomputation":
        (True, True, ("layer.attn.core",)),
    "full recomputation": (False, False, ("layer",)),
}

# the grid each row is fitted over (degree 1 in each of a, d and 1/t), and the points off
# the grid where the fit is checked
GRID = {a: [8, 16], d: [2, 4], u: [sp.Integer(1), sp.Rational(1, 2)]}
CHECKS = [{a: 24, d: 6, u: sp.Rational(1, 4)}, {a: 8, d: 6, u: sp.Rational(1, 4)},
          {a: 24, d: 2, u: sp.Rational(1, 2)}]
OPTIONS = dict(loss="mse", optimizer="adam", schedule=None, name="GPT layer",
               optimizer_impl="for-loop", target="cuda")


def _traced(model, tp=None):
    """The layer's trace (of one device's shard under ``tp``): one per layout, shared by
    the rows that differ only in what they recompute or cut along the sequence."""
    from symflop.estimate.step import _trace
    from symflop.estimate.tensor_parallel import local_model
    shape = ("s", "b", model.layer.ln1.normalized_shape[0])
    if tp is None:
        return shape, _trace(model, shape, {}, torch.bfloat16, "mse")
    with local_model(model, tp):
        return shape, _trace(model, shape, {}, torch.bfloat16, "mse")


def layer_activation_bytes(heads: int, head: int, devices: int) -> list[sp.Expr]:
    """Bytes each row's layer keeps for backward on one device, at concrete a, d, t."""
    from symflop.cost.conventions import get_convention
    from symflop.estimate.step import _traced_estimate
    model = OneLayer(heads * head, heads).to(torch.bfloat16)
    tp = layout(model, devices, TP_PLAN, sequence_dim=0, implementation="megatron")
    traces = {False: _traced(model), True: _traced(model, tp)}
    out = []
    for tensor, sequence, checkpoint in ROWS.values():
        shape, tr = traces[tensor]
        parallel = layout(model, devices, TP_PLAN, sequence=sequence, sequence_dim=0,
                          implementation="megatron") if tensor else None
        est = _traced_estimate(model, shape, {}, torch.bfloat16, traced=tr,
                               conv=get_convention("default"), checkpoint=checkpoint,
                               parallel=parallel, **OPTIONS)
        out.append(est.activation_bytes)
    return out


def table2() -> dict[str, sp.Expr]:
    """Each row of Table 2 derived: a polynomial in s, b, h, a and t (bytes)."""
    def at(point: dict) -> list[sp.Expr]:
        return layer_activation_bytes(int(point[a]), int(point[d]), int(1 / point[u]))

    rows = fit_grid(at, GRID, CHECKS)
    return {name: sp.expand(sp.expand(e.xreplace({u: 1 / t})).xreplace({d: h / a}))
            for name, e in zip(ROWS, rows)}


# Narayanan et al. (2021), eq. (3): one iteration's FLOPs with full recomputation
NARAYANAN = 96 * b * s * L * h**2 * (1 + s / (6 * h) + V / (16 * L * h))
HEADS_GPT = 2
GPT_GRID = {L: [1, 2], h: [8, 16, 24], V: [16, 32]}
GPT_CHECKS = [{L: 3, h: 40, V: 48}, {L: 2, h: 64, V: 24}]


def gpt_step(layers: int, hidden: int, vocab: int) -> list[sp.Expr]:
    """A GPT step with every layer recomputed (Megatron-LM's full recomputation): FLOPs
    of the products (2 per multiply-add, as Narayanan et al. count) and of everything."""
    from symflop.estimate.step import estimate
    model = GPT(vocab, hidden, HEADS_GPT, layers)
    est = estimate(model, ("b", "s"), input_dtype="int64", flop_counter=False,
                   target="cuda", checkpoint=tuple(f"layers.{k}" for k in range(layers)))
    syms = {est.symbols["b"]: b, est.symbols["s"]: s}
    products = 2 * sum((ln.macs_forward + ln.macs_backward for ln in est.lines
                        if ln.what not in ("optimizer", "schedule")), sp.Integer(0))
    everything = est.flops("forward") + est.flops("backward")
    return [sp.expand(products).xreplace(syms), sp.expand(everything).xreplace(syms)]


def product_flops() -> sp.Expr:
    """The derived FLOPs of the products of one iteration (b sequences of s tokens), as a
    polynomial in b, s, l, h, V."""
    return fit_grid(lambda p: gpt_step(int(p[L]), int(p[h]), int(p[V]))[:1],
                    GPT_GRID, GPT_CHECKS)[0]


def other_flops(hidden: int) -> sp.Expr:
    """Everything but the products, at one h, as a polynomial in b, s, l, V: LayerNorm's
    CPU kernel merges Welford's partial sums in a tree whose size is no polynomial in h,
    so h stays fixed here (V in whole vectors of the log-softmax kernel)."""
    def at(p: dict) -> list[sp.Expr]:
        products, everything = gpt_step(int(p[L]), hidden, int(p[V]))
        return [everything - products]

    return fit_grid(at, {L: [1, 2], V: [256, 512]}, [{L: 3, V: 768}])[0]


def layernorm_statistics(tensor: bool, sequence: bool, checkpoint: tuple) -> sp.Expr:
    """What the traced layer keeps beyond Table 2: each LayerNorm's mean and 1/std, one
    float32 value each per token on CUDA (2 x 2 x 4 bytes for s b tokens; cut along the
    sequence with it), unless the layer is recomputed whole."""
    if checkpoint == ("layer",):
        return sp.Integer(0)
    return 16 * s * b / (t if sequence else 1)


if __name__ == "__main__":
    for name, poly in table2().items():
        print(f"{name}: {sp.factor(poly)}")
