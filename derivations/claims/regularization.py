"""The ledger of the document's regularization sections (L1, L2, dropout, data
augmentation): their claims, with the stated penalty and dropout gradients and the
document's weight-decay form of SGD."""

from __future__ import annotations

import sympy as sp

from derivations.claims.query import (
    S_AUG,
    S_DROP,
    S_L1,
    S_L2,
    WITH_DATA_GRADIENT,
    cannot_derive,
    claim,
    component,
    computed,
    count_at,
    derivation,
    flops,
    fused_gradient,
    indexed_base,
    memory,
    plus_data_gradient,
    size_symbol,
    tensor_symbol,
)
from symflop import Component, derive
from symflop.report.claims import Claim, Equation


def _grad_dropout(_conv):
    f = fused_gradient("dropout", "a")
    i, j = f.idx
    gy, mask = indexed_base(f.expr, "grad_y"), tensor_symbol("dropout", "mask")
    p = sp.Symbol("p", positive=True)
    return Equation(f.expr, gy[i, j] * mask[i, j] / (1 - p),
                    {size_symbol("B"): 2, size_symbol("n"): 3})


def _grad_penalty(name: str, term):
    def run(_conv):
        f = fused_gradient(name, "w")
        (p,) = f.idx
        w, lam = tensor_symbol(name, "w"), sp.Symbol("lam", positive=True)
        return Equation(f.expr, term(lam, w[p]), {size_symbol("P"): 3})
    return run


def _weight_decay_equivalence(_conv):
    """SGD on the loss plus the L2 penalty: theta - lr*(g + grad of the penalty)."""
    sgd = component("sgd")
    step = sgd.passes["step"].assignments[-1]
    (p,) = step.idx
    theta, g = tensor_symbol("sgd", "theta"), tensor_symbol("sgd", "g")
    f = fused_gradient("l2", "w")
    penalty = f.expr.xreplace({tensor_symbol("l2", "w")[f.idx]: theta[p]})
    update = step.rhs.xreplace({g[p]: g[p] + penalty})
    lr, lam = sp.Symbol("lr", positive=True), sp.Symbol("lam", positive=True)
    return Equation(update, theta[p] * (1 - lr * lam) - lr * g[p], {size_symbol("P"): 3})


def _sgd_weight_decay() -> Component:
    """SGD with L2 as weight decay, written as the document writes it:
    w <- w (1 - lr*lam) - lr*g."""
    c = Component("sgd-weight-decay", "Optimizers", "SGD step with weight decay")
    P = c.dim("P")
    p = c.index(p=P)
    theta, g = c.parameter("theta", (P,)), c.input("g", (P,))
    lr, lam = c.hyper("lr lam")
    c.assign("step", theta[p], theta[p] * (1 - lr * lam) - lr * g[p])
    return c


def _weight_decay_extra(conv):
    wd = derive(_sgd_weight_decay()).counts("step", conv).by_kind
    sgd = derivation("sgd").counts("step", conv).by_kind
    return {k: sp.expand(wd.get(k, 0) - sgd.get(k, 0)) for k in set(wd) | set(sgd)}


CLAIMS: list[Claim] = [
    # ---- Regularization --------------------------------------------------------------
    claim("l1-gradient", S_L1, r"\pd{L_{\text{reg}}}{w_i} = \pd{L_{\text{data}}}{w_i} + "
          r"\lambda \cdot \text{sign}(w_i)", "lam sign(w)",
          computed(_grad_penalty("l1", lambda lam, w: lam * sp.sign(w)),
                   "l1: fused gradient of the penalty wrt w (the data term is not the "
                   "penalty's)", False)),
    claim("l1-forward", S_L1, r"Extra forward FLOPs | $P$ (absolute values) + $P$ (sum) = "
          r"$2P$", "P + P", flops("l1", "forward")),
    claim("l1-gradient-flops", S_L1, r"Extra gradient FLOPs | $P$ (sign) + $P$ (scale by "
          r"$\lambda$) + $P$ (add to gradient) = $3P$", "P + P + P",
          flops("l1", "gradient"), assumed=plus_data_gradient("l1"),
          assumption=WITH_DATA_GRADIENT),
    claim("l1-memory", S_L1, r"Extra memory | 0", "0", memory("l1", ("state", "saved"))),
    claim("l2-gradient", S_L2, r"\pd{L_{\text{reg}}}{w_i} = \pd{L_{\text{data}}}{w_i} + "
          r"\lambda w_i", "lam w", computed(_grad_penalty("l2", lambda lam, w: lam * w),
                                            "l2: fused gradient of the penalty wrt w", False)),
    claim("l2-gradient-flops", S_L2, r"Extra gradient FLOPs | $P$ (scale $w_i$ by "
          r"$\lambda$) + $P$ (add to gradient) = $2P$", "P + P", flops("l2", "gradient"),
          assumed=plus_data_gradient("l2"), assumption=WITH_DATA_GRADIENT),
    claim("l2-memory", S_L2, r"Extra memory | 0 (uses existing parameter values)", "0",
          memory("l2", ("state", "saved"))),
    claim("l2-weight-decay", S_L2, r"In SGD, L2 regularization is equivalent to weight "
          r"decay: $w_i \leftarrow w_i(1 - \eta\lambda) - \eta \pd{L}{w_i}$",
          "w (1 - lr lam) - lr g",
          computed(_weight_decay_equivalence, "sgd's step with the l2 penalty's fused gradient "
                                              "added to g", False)),
    claim("l2-weight-decay-cost", S_L2, r"This costs $P$ extra multiplications — "
          r"negligible.", "mul: P",
          computed(_weight_decay_extra, "the update w(1 - lr lam) - lr g (written here) minus "
                                        "sgd's step, per kind")),
    claim("dropout-random", S_DROP, r"Generate random mask | $Bn$ random number "
          r"generations", "random: B*n", flops("dropout", "forward", ("u",), kinds=True)),
    claim("dropout-threshold", S_DROP, r"Threshold to binary | $Bn$ comparisons",
          "compare: B*n", flops("dropout", "forward", ("mask",), kinds=True)),
    claim("dropout-mask-and-scale", S_DROP, r"Multiply by mask | $Bn$ multiplications; "
          r"Scale by $1/(1-p)$ | $Bn$ multiplications", "B*n + B*n",
          flops("dropout", "forward", ("y",)),
          how="dropout: FLOPs of step y = a*mask/(1 - p) (a product and a division) of the "
              "forward pass"),
    claim("dropout-total", S_DROP, r"Total | $\approx 4Bn$ FLOPs + RNG cost", "≈4*B*n",
          flops("dropout", "forward")),
    claim("dropout-inference", S_DROP, r"FLOPs (Inference) ... 0 (free at inference)", "0",
          flops("dropout", "inference")),
    claim("dropout-mask-memory", S_DROP, r"Extra memory (training): $Bn$ values for the "
          r"binary mask", "B*n values", memory("dropout", "saved", elements=True)),
    claim("dropout-gradient", S_DROP, r"\pd{L}{\bm{a}} = \pd{L}{\tilde{\bm{a}}} \odot "
          r"\frac{\text{mask}}{1-p}", "grad_y mask/(1 - p)",
          computed(_grad_dropout, "dropout: fused gradient wrt a", False)),
    claim("dropout-backward-flops", S_DROP, r"same element-wise operation, $2Bn$ FLOPs",
          "2*B*n", flops("dropout", "backward")),
    claim("dropout-example-flops", S_DROP, r"$4 \times 32 \times 4096 = 524{,}288$ FLOPs",
          "524,288", flops("dropout", "forward", leading=True, at={"B": 32, "n": 4096}),
          how="dropout: the leading order 4Bn of the forward pass at B=32, n=4,096 (the "
              "exact count adds one subtraction, 1 - p)"),
    claim("dropout-example-matmul", S_DROP, r"$2 \times 32 \times 4096 \times 4096 = "
          r"1.07$G FLOPs", "1.07G", flops("linear", "forward",
                                           at={"B": 32, "O": 4096, "I": 4096})),
    claim("dropout-example-overhead", S_DROP, r"Dropout overhead: 0.05%", "0.05%",
          computed(lambda conv: sp.Float(100 * count_at("dropout", "forward", conv, B=32, n=4096)
                                         / count_at("linear", "forward", conv, B=32, O=4096,
                                                    I=4096)),
                   "dropout forward over linear forward at B=32, n=4,096")),
    cannot_derive("dropout-rng-bottleneck", S_DROP, r"The random number generation is typically "
                  r"the bottleneck (cuRAND on GPU), not the arithmetic", "bottleneck",
                  "a statement about hardware throughput; the engine counts operations (one "
                  "random draw is one FLOP, or none under xla), not time"),
    claim("dropout-free-at-inference", S_DROP, r"At inference, dropout costs exactly zero",
          "0", flops("dropout", "inference")),
    claim("augmentation-flops", S_AUG, r"Extra GPU FLOPs | 0 (CPU preprocessing)", "0",
          flops("data-augmentation", "forward")),
    claim("augmentation-memory", S_AUG, r"Extra GPU memory | 0", "0",
          memory("data-augmentation", ("parameters", "state", "saved"))),
    cannot_derive("augmentation-throughput", S_AUG, r"Training throughput impact | Typically zero "
                  r"if data pipeline is not bottlenecked; Extra training data | Effectively "
                  r"infinite", "0; infinite", "throughput depends on the input pipeline and the "
                  "hardware, which the engine does not model"),
]
