"""The ledger of the document's closing sections: the summary table of every
component's cost and the memory total of its ResNet-50 example."""

from __future__ import annotations

import sympy as sp

from derivations import examples, resnet50
from derivations.claims.query import (
    BN_BACKWARD,
    BN_CACHE,
    RESNET_P,
    S_MEM,
    S_SUM,
    WITH_DATA_GRADIENT,
    cannot_derive,
    claim,
    component,
    computed,
    derivation,
    elements_of,
    example_figure,
    flops,
    memory,
    plus_data_gradient,
    size_symbol,
)
from symflop.compose import state_tensor_count
from symflop.cost.counting import leading_order
from symflop.report.claims import Claim

MIB, GIB = 2 ** 20, 2 ** 30


_RESNET_P_ROUNDED = (f"P = {RESNET_P / 1e6:g}M, as the document rounds ResNet-50's "
                     f"{resnet50.parameters():,} parameters")


def _backward_factor(conv) -> sp.Expr:
    """k in backward = k * forward, from the derived linear layer (leading orders)."""
    fwd = leading_order(derivation("linear").counts("forward", conv).total)
    bwd = leading_order(derivation("linear").counts("backward", conv).total)
    return sp.nsimplify(bwd / fwd)


def _largest_memory(_conv) -> str:
    ex = examples.EXAMPLES["resnet50-memory"]()
    sizes = {r.label: r.value * (GIB if r.unit == "GiB" else MIB)
             for r in ex.rows if r.label != "total"}
    return max(sizes, key=lambda k: sizes[k])


def _m_opt(_conv) -> str:
    P = size_symbol("P")
    return ", ".join(str(state_tensor_count(component(n), P))
                     for n in ("sgd", "momentum", "adam"))


_PCT = ("a share of the whole training step needs the network's own forward and backward "
        "FLOPs (F and k*F), which the engine takes as given, not derived, and the document "
        "names no configuration for this column")


CLAIMS: list[Claim] = [
    # ---- Summary table -----------------------------------------------------------------
    cannot_derive("summary-forward", S_SUM, r"Forward pass | $F$ | Activations: $O(BL\bar{d})$",
                  "F; O(B*L*dbar)", "the network's own forward FLOPs and activations are inputs "
                  "of the training-step composite (F and A), not derived"),
    claim("summary-forward-share", S_SUM, r"Forward pass | ... | ~33%", "~33%",
          computed(lambda conv: sp.Float(100 / (1 + _backward_factor(conv))),
                   "F / (F + kF) with k from the linear layer's backward/forward (leading)")),
    claim("summary-backward", S_SUM, r"Backward pass | $\approx 2F$", "≈2*F",
          computed(lambda conv: _backward_factor(conv) * size_symbol("F"),
                   "k*F with k = linear backward / forward FLOPs (leading orders; "
                   "conv2d-im2col gives the same)")),
    claim("summary-gradients", S_SUM, r"Backward pass | ... | Gradients: $4P$", "4*P bytes",
          memory("training-step", "gradients", optimizer="adam")),
    claim("summary-backward-share", S_SUM, r"Backward pass | ... | ~66%", "~66%",
          computed(lambda conv: sp.Float(100 * _backward_factor(conv)
                                         / (1 + _backward_factor(conv))),
                   "k*F/(F + k*F) with k from the linear layer")),
    claim("summary-loss-flops", S_SUM, r"Loss computation | $O(BC)$", "O(B*C)",
          computed(lambda conv: sp.expand(
              derivation("training-step", optimizer="adam").counts("loss.forward", conv).total
              + derivation("training-step", optimizer="adam").counts("loss.backward",
                                                                     conv).total),
              "training-step: the loss's forward and backward FLOPs (cross-entropy)")),
    claim("summary-loss-memory", S_SUM, r"Loss computation | ... | $O(BC)$", "O(B*C)",
          memory("cross-entropy", "saved")),
    claim("summary-sgd", S_SUM, r"Optimizer (SGD) | $2P$", "2*P", flops("sgd", "step")),
    claim("summary-sgd-memory", S_SUM, r"Optimizer (SGD) | ... | 0", "0",
          memory("sgd", "state")),
    claim("summary-adam", S_SUM, r"Optimizer (Adam) | $14P$", "14*P", flops("adam", "step")),
    claim("summary-adam-memory", S_SUM, r"Optimizer (Adam) | ... | $8P$", "8*P bytes",
          memory("adam", "state")),
    claim("summary-l2", S_SUM, r"L2 regularization | $2P$", "2*P", flops("l2", "gradient"),
          assumed=plus_data_gradient("l2"), assumption=WITH_DATA_GRADIENT),
    claim("summary-l2-memory", S_SUM, r"L2 regularization | ... | 0", "0",
          memory("l2", ("state", "saved"))),
    claim("summary-dropout", S_SUM, r"Dropout (per layer) | $\approx 4Bn$", "≈4*B*n",
          flops("dropout", "forward")),
    claim("summary-dropout-memory", S_SUM, r"Dropout (per layer) | ... | $4Bn$ (mask)",
          "4*B*n bytes", memory("dropout", "saved")),
    claim("summary-bn-forward", S_SUM, r"BatchNorm (per layer, fwd) | $\approx 7Nd$",
          "≈7*N*d", flops("batchnorm", "forward")),
    claim("summary-bn-memory", S_SUM, r"BatchNorm (per layer, fwd) | ... | $4(Nd + 2d)$",
          "4*(N*d + 2*d) bytes", memory("batchnorm", "saved"),
          assumed=elements_of("batchnorm", ("xhat", "mu", "var"), 4), assumption=BN_CACHE),
    claim("summary-bn-backward", S_SUM, r"BatchNorm (per layer, bwd) | $\approx 10Nd$",
          "≈10*N*d", flops("batchnorm", "backward"), reason=BN_BACKWARD),
    claim("summary-schedule", S_SUM, r"LR schedule | $O(1)$", "O(1)",
          flops("cosine", "schedule")),
    claim("summary-schedule-memory", S_SUM, r"LR schedule | ... | 0", "0",
          memory("cosine", ("parameters", "state", "saved"))),
    *[cannot_derive(f"summary-share-{n}", S_SUM, rf"{label} | ... | {pct}", pct, _PCT)
      for n, label, pct in (("loss", "Loss computation", "<0.01%"),
                            ("sgd", "Optimizer (SGD)", "<1%"),
                            ("adam", "Optimizer (Adam)", "~2–5%"),
                            ("l2", "L2 regularization", "<0.5%"),
                            ("dropout", "Dropout (per layer)", "<0.1%"),
                            ("bn-forward", "BatchNorm (per layer, fwd)", "~1–2%"),
                            ("bn-backward", "BatchNorm (per layer, bwd)", "~2–3%"),
                            ("schedule", "LR schedule", r"$\approx 0$"))],
    cannot_derive("summary-network-share", S_SUM, r"account for ~95–98% of total training FLOPs. "
                  r"All other components ... are collectively less than 5%", "95-98%; <5%", _PCT),
    claim("summary-adam-binding", S_SUM, r"Adam's $8P$ extra bytes can be the difference "
          r"between fitting a model on a GPU or not", "8*P bytes", memory("adam", "state")),
    # ---- Memory total ---------------------------------------------------------------------
    claim("memory-m-opt", S_MEM, r"$M_{\text{opt}} = 0$ (SGD), $1$ (Momentum), $2$ (Adam)",
          "0, 1, 2", computed(_m_opt, "state tensors of P values of sgd, momentum, adam",
                              False)),
    claim("memory-parameters", S_MEM, r"Params: 97.7 MB", "97.7 MB",
          example_figure("resnet50-memory", "parameters", MIB),
          assumed=memory("training-step", "parameters", at={"P": RESNET_P}, optimizer="adam"),
          assumption=_RESNET_P_ROUNDED),
    claim("memory-gradients", S_MEM, r"Grads: 97.7 MB", "97.7 MB",
          example_figure("resnet50-memory", "gradients", MIB),
          assumed=memory("training-step", "gradients", at={"P": RESNET_P}, optimizer="adam"),
          assumption=_RESNET_P_ROUNDED),
    claim("memory-adam-state", S_MEM, r"Adam state: 195.3 MB", "195.3 MB",
          example_figure("resnet50-memory", "Adam state", MIB),
          assumed=memory("training-step", "state", at={"P": RESNET_P}, optimizer="adam"),
          assumption=_RESNET_P_ROUNDED),
    claim("memory-activations", S_MEM, r"Activations: ~2.5 GB", "~2.5 GB",
          example_figure("resnet50-memory", "activations", GIB)),
    claim("memory-total", S_MEM, r"Total: ~2.9 GB", "~2.9 GB",
          example_figure("resnet50-memory", "total", GIB)),
    claim("memory-activations-dominate", S_MEM, r"Activations dominate for this "
          r"configuration", "activations",
          computed(_largest_memory, "example resnet50-memory: the largest term", False)),
]
