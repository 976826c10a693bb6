"""Mixed-precision training (Micikevicius et al. 2018, ICLR): dynamic loss scaling.

Half-precision gradients underflow; the loss is multiplied by a scale S before the
backward pass so that they do not, and the gradients are divided by S before the
optimizer step.  A step whose gradients hold an infinity or a NaN is skipped and S
backs off; after ``interval`` clean steps in a row S grows.  This is torch's
``torch.amp.GradScaler`` (``scale``, ``unscale_``, ``update``), whose defaults are used.
The bytes per parameter of mixed precision (2 + 2 + 12 with Adam) are derived in
``derivations.distributed``.
"""

from __future__ import annotations

import sympy as sp

from symflop import Component, Fact, isinf, isnan, total


def loss_scaling() -> Component:
    """Dynamic loss scaling, one training step: scale the loss; unscale the P gradients,
    count the non-finite ones, and update the scale and the count of clean steps.

    The overflow check counts infinite and NaN gradients and keeps min(count, 1): a sum
    where torch's fused kernel (``_amp_foreach_non_finite_check_and_unscale_``) sets a
    flag, so the count has P - 1 additions that kernel does not do (an any-reduction
    all the same), and two tests per value where its ``isfinite`` is one.
    The new scale: S * backoff after an overflow, S * growth when the ``interval``-th
    clean step in a row ends, else S; ``floor((n + 1)/interval)`` is 1 exactly then,
    as the tracker n stays below ``interval``.  (GradScaler also keeps the old scale
    where growing it would overflow float32, past 2**127: not modelled.)
    """
    c = Component("loss-scaling", "Mixed precision",
                  "dynamic loss scaling: scale the loss, unscale and check the gradients, "
                  "update the scale", reference="Micikevicius et al. (2018), ICLR; "
                  "torch.amp.GradScaler")
    P = c.dim("P")
    p = c.index(p=P)
    L = c.input("L", doc="loss").symbol
    gs = c.input("gs", (P,), facts=(Fact.MAY_BE_NONFINITE,),
                 doc="gradients of the scaled loss (may overflow)")
    S = c.state("S", initial=2.0 ** 16, doc="loss scale").symbol
    n = c.state("n", doc="clean steps in a row since the scale last changed").symbol
    growth, backoff, interval = c.hyper("growth backoff interval", growth=2.0, backoff=0.5,
                                        interval=2000)
    Ls = c.output("Ls", doc="scaled loss")
    g = c.output("g", (P,), doc="unscaled gradients")
    found = c.intermediate("found", doc="1 if any gradient is infinite or NaN, else 0")
    grow = c.intermediate("grow", doc="1 if this clean step completes an interval")
    c.assign("scale", Ls, S * L)
    c.assign("unscale", g[p], gs[p] / S)
    c.assign("unscale", found, sp.Min(1, total(isinf(gs[p]) + isnan(gs[p]), p)))
    c.assign("unscale", grow, sp.floor((n + 1) / interval))
    c.assign("unscale", S, S * (found * backoff + (1 - found) * (1 + grow * (growth - 1))))
    c.assign("unscale", n, (1 - found) * (n + 1 - grow * interval))
    return c


COMPONENTS = {"loss-scaling": loss_scaling}
