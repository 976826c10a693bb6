"""The ledger of the document's learning-rate schedule section."""

from __future__ import annotations

import sympy as sp

from derivations.claims.query import (
    S_LR,
    cannot_derive,
    claim,
    computed,
    derivation,
    difference,
    flops,
    hyperparameter_choice,
)
from symflop.report.claims import Claim


def _schedules_order(_conv):
    from derivations import schedules
    return sp.Add(*[derivation(n).counts("schedule").total for n in schedules.COMPONENTS])


CLAIMS: list[Claim] = [
    # ---- Learning-rate schedules ---------------------------------------------------------
    claim("schedules-negligible", S_LR, r"the per-step cost of computing a new learning "
          r"rate is negligible ($O(1)$ FLOPs)", "O(1)",
          computed(_schedules_order, "every schedule of the catalogue: the sum of their counts",
                   False)),
    cannot_derive("schedules-halve-epochs", S_LR, r"A good schedule can halve the number of "
                  r"training epochs needed", "1/2", "the number of epochs is an empirical outcome "
                  "of training, not a consequence of the schedule's equations"),
    claim("step-decay-cost", S_LR, r"Computational cost: 1 floor division + 1 power + 1 "
          r"multiplication", "div: 1, transcendental: 1, mul: 1, other: 0",
          flops("step-decay", "schedule", kinds=True),
          reason="floor(t/S) is a division and a floor (compare/select kind); the document "
                 "counts one floor division"),
    claim("step-decay-order", S_LR, r"= $O(1)$ per step", "O(1)",
          flops("step-decay", "schedule")),
    claim("step-decay-typical", S_LR, r"$\gamma \in (0,1)$ is the decay factor (typically "
          r"0.1) ... Commonly: reduce LR by 10× every 30 epochs", "0.1, 30",
          hyperparameter_choice("step-decay", ("gamma", "S"), "the decay factor and interval")),
    claim("cosine-cost", S_LR, r"Computational cost: 1 cosine + 3 multiplications + 2 "
          r"additions", "transcendental: 1, mul: 3, add: 2, other: 0",
          flops("cosine", "schedule", kinds=True),
          reason="the engine also counts t/T (a division) and eta_max - eta_min (a "
                 "subtraction)"),
    claim("cosine-order", S_LR, r"= $O(1)$", "O(1)", flops("cosine", "schedule")),
    cannot_derive("warmup-insurance", S_LR, r"typically 5–10 epochs out of 90+ ... $\approx$5% "
                  r"extra steps to avoid $\gg$100% wasted steps from divergence", "≈5%",
                  "the warmup length is a choice and divergence an empirical outcome; neither "
                  "follows from the equations"),
    claim("one-cycle-phases", S_LR, r"Phase 1 (warmup, ~30% of training) ... Phase 2 "
          r"(annealing, ~70% of training) ... to $\eta_{\text{low}}/10$", "30%, 70%",
          hyperparameter_choice("one-cycle-doc", ("pct",), "the warmup fraction")),
    cannot_derive("one-cycle-fewer-steps", S_LR, r"training to the same accuracy in 5–10× fewer "
                  r"steps than standard schedules", "5-10x", "the number of steps to an accuracy "
                  "is an empirical outcome of training (super-convergence is an observation)"),
    cannot_derive("one-cycle-3x", S_LR, r"If one-cycle reaches target accuracy in 30 epochs "
                  r"instead of 90, the total training FLOPs are reduced by 3×", "3x",
                  "the epochs to an accuracy are the premise, an empirical outcome; given it, "
                  "90/30 = 3 is arithmetic, not a derivation"),
    claim("one-cycle-same-step-cost", S_LR, r"The per-step cost is identical; only the "
          r"number of steps differs", "O(1)",
          difference(flops("one-cycle-doc", "schedule"), flops("cosine", "schedule"),
                     "one-cycle-doc schedule FLOPs minus cosine schedule FLOPs: the change "
                     "of a step's cost, without a size term")),
]
