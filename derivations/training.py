"""The whole training step (section "Summary" of the reference document).

Per-step FLOPs: the network's forward pass F and backward pass k*F (given, not
derived: they depend on the architecture), plus the loss, the optimizer step,
L2 regularization, L_bn BatchNorm layers and the learning-rate schedule, each
derived from its component.  Memory: parameters, gradients, optimizer state
(derived from the chosen optimizer's state tensors) and activations A (given).
The document's total-memory formula is not shown in it; the standard one is
M = bytes * (P + P + M_opt * P + A), with M_opt the number of per-parameter
state tensors (Sohoni et al. 2019, "Low-memory neural network training", 2).
"""

from __future__ import annotations

import difflib

import sympy as sp

from derivations import losses, normalization, optimizers, regularization, schedules
from symflop.compose import Composite, state_tensor_count
from symflop.derive import derive
from symflop.errors import UsageError


def training_step(optimizer: str = "adam") -> Composite:
    """One training step with the given optimizer (any optimizer of the catalogue)."""
    if optimizer not in optimizers.COMPONENTS:
        close = difflib.get_close_matches(optimizer, list(optimizers.COMPONENTS), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else \
            f" (optimizers: {', '.join(optimizers.COMPONENTS)})"
        raise UsageError(f"unknown optimizer {optimizer!r}{hint}")
    t = Composite("training-step", "Training step",
                  f"one training step with {optimizer}: network forward and backward, loss, "
                  "optimizer, L2, BatchNorm layers, LR schedule; memory model",
                  reference="reference document, summary table and memory total")
    F, P, B, C, N, d, L_bn, A = t.dim("F P B C N d L_bn A")
    k = t.ratio("k")  # backward FLOPs over forward FLOPs: a coefficient, not a size
    t.add_network("network forward", F)
    t.add_network("network backward", k * F)
    t.add_part("loss", losses.cross_entropy(), ("forward", "backward"), {"B": B, "C": C})
    opt = optimizers.COMPONENTS[optimizer]()
    t.add_part("optimizer", opt, ("step",), {"P": P})
    if "l2" in regularization.COMPONENTS:
        t.add_part("l2", regularization.COMPONENTS["l2"](), ("forward", "backward"), {"P": P})
    bn = normalization.batchnorm()
    t.add_part("batchnorm", bn, ("forward", "backward"), {"N": N, "d": d}, times=L_bn)
    if "cosine" in schedules.COMPONENTS:
        t.add_part("schedule", schedules.COMPONENTS["cosine"](), ("schedule",), {})
    t.add_memory("parameters", "parameters", P)
    t.add_memory("gradients", "gradients", P)
    state = derive(opt).memory.elements("state").xreplace({opt.dims["P"]: P})
    t.add_memory(f"{optimizer} state", "state", state)
    t.add_memory("activations", "saved", A)
    m_opt = state_tensor_count(opt, opt.dims["P"])
    t.notes.append(f"M_opt = {m_opt}: {optimizer} keeps {m_opt} state tensor(s) of P values"
                   + (f" plus {sp.expand(state - m_opt * P)} scalar(s)"
                      if sp.expand(state - m_opt * P) != 0 else ""))
    return t


COMPONENTS = {"training-step": training_step}
