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
    """

    sizes: dict
    tiny: dict | None = None
    hypers: dict = field(default_factory=dict)
    initial: Callable | None = None
    prepare: Callable | None = None
    run: Callable | None = None


def leaf(x):
    """A fresh tensor that autograd tracks, detached from ``x``."""
    return x.detach().clone().requires_grad_(True)
