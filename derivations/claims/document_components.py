"""Components written as the reference document writes them, for its claims alone.

The document's loss tables count from given probabilities, a softmax kept from the
forward pass or a given p_t, where the catalogue's components start from the logits.
These variants are the document's assumptions, not catalogue entries: ``query``'s
component lookup finds them by name when the catalogue has no such component.
"""

from __future__ import annotations

from collections.abc import Callable

import sympy as sp

from symflop import Component, Fact, total


def _ce_from_probabilities(fact: Fact) -> Callable[[], Component]:
    """Cross-entropy from the probabilities p, given (the document's tables count from
    yhat): L = -1/B sum_ik y log p."""
    def build() -> Component:
        c = Component("ce-from-probabilities", "Losses", "cross-entropy of given probabilities")
        B, C = c.dim("B C")
        i, k = c.index(i=B, k=C)
        p, y = c.input("p", (B, C)), c.target("y", (B, C), facts=(fact,))
        L = c.output("L")
        c.assign("forward", L, -total(y[i, k] * sp.log(p[i, k]), i, k) / B)
        return c
    return build


def _softmax_kept(fact: Fact) -> Callable[[], Component]:
    """The cross-entropy gradient with the softmax p kept from the forward pass: (p - y)/B."""
    def build() -> Component:
        c = Component("ce-gradient-from-softmax", "Losses", "(p - y)/B, p given")
        B, C = c.dim("B C")
        i, k = c.index(i=B, k=C)
        p, y = c.input("p", (B, C)), c.target("y", (B, C), facts=(fact,))
        g = c.output("g", (B, C))
        c.assign("softmax-kept", g[i, k], (p[i, k] - y[i, k]) / B)
        return c
    return build


def _focal_from_pt() -> Component:
    """The document's focal formula with p_t and alpha_t given: -alpha_t (1 - p_t)^gamma
    log p_t, averaged over the B*C elements."""
    c = Component("focal-from-pt", "Losses", "focal loss of given p_t and alpha_t")
    B, C = c.dim("B C")
    i, k = c.index(i=B, k=C)
    pt, at = c.input("p_t", (B, C)), c.input("alpha_t", (B, C))
    gamma = c.hyper("gamma")
    L = c.output("L")
    c.assign("forward", L, -total(at[i, k] * (1 - pt[i, k]) ** gamma * sp.log(pt[i, k]),
                                  i, k) / (B * C))
    return c


def _kl_from_probabilities() -> Component:
    """KL(p || q) with q given as probabilities: sum p (log p - log q), batch mean."""
    c = Component("kl-from-probabilities", "Losses", "KL divergence of given q")
    B, C = c.dim("B C")
    i, k = c.index(i=B, k=C)
    p = c.target("p", (B, C), facts=(Fact.ROWS_SUM_TO_ONE,))
    q = c.input("q", (B, C))
    L = c.output("L")
    c.assign("forward", L, total(p[i, k] * (sp.log(p[i, k]) - sp.log(q[i, k])), i, k) / B)
    return c


AS_THE_DOCUMENT_WRITES = {
    "ce-from-probabilities": _ce_from_probabilities(Fact.ONE_HOT),
    "ce-soft-from-probabilities": _ce_from_probabilities(Fact.ROWS_SUM_TO_ONE),
    "ce-gradient-from-softmax": _softmax_kept(Fact.ONE_HOT),
    "ce-soft-gradient-from-softmax": _softmax_kept(Fact.ROWS_SUM_TO_ONE),
    "focal-from-pt": _focal_from_pt,
    "kl-from-probabilities": _kl_from_probabilities,
}
