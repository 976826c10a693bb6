"""Torch's own implementations of the catalogue, differentiated by torch.autograd.

``REFERENCES`` maps a component's name to a ``Reference``: the sizes and
hyperparameter values the checks use, and a torch function that takes the same
named inputs as the component (torch tensors and floats) and returns the same
named results (forward outputs, updated state, gradients ``grad_<input>``).
Each section of the catalogue keeps its references in a module of its own.
"""

from __future__ import annotations

from validation import (
    ref_layers,
    ref_losses,
    ref_normalization,
    ref_optimizers,
    ref_precision,
    ref_regularization,
    ref_schedules,
)
from validation.ref_common import Reference
from validation.ref_optimizers import adam_reference

SECTIONS = (ref_losses, ref_optimizers, ref_regularization, ref_normalization, ref_schedules,
            ref_layers, ref_precision)
REFERENCES: dict[str, Reference] = {k: v for m in SECTIONS for k, v in m.REFERENCES.items()}

__all__ = ["REFERENCES", "Reference", "adam_reference"]
