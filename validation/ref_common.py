"""What a torch reference for one component states."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Reference:
    """How to check one component against torch.

    sizes: small sizes for the torch checks; tiny: sizes for the element-wise
    SymPy evaluation (default: sizes).  hypers: hyperparameter values (default:
    the component's own defaults).  initial(dims, dtype, device): state values
    to start from (default: random).  prepare(values): adjusts random inputs to
    the component's domain (e.g. labels in {-1, +1}).  run(values): torch's
    results, by the component's names; None where torch has nothing to compare.
    extreme(values): the same inputs moved to the edge of their domain (logits of
    magnitude 1e4, probabilities within 1e-7 of 0 and 1, near-zero variance), on
    which the generated code must stay finite and still match torch.  shapes: the
    size sets ``symflop validate`` runs (default: sizes, all sizes odd, batch of 1).
    """

    sizes: dict
    tiny: dict | None = None
    hypers: dict = field(default_factory=dict)
    initial: Callable | None = None
    prepare: Callable | None = None
    run: Callable | None = None
    extreme: Callable | None = None  # values -> values at the edge of the domain (or None)
    shapes: tuple = ()               # size sets for the validation run (default: derived)
    steps: int = 0                   # length of a run (schedules: steps of t)


def leaf(x):
    """A fresh tensor that autograd tracks, detached from ``x``."""
    return x.detach().clone().requires_grad_(True)
