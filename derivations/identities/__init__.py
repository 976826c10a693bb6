"""The equivalences and non-equivalences the reference document asserts, proved or
refuted in SymPy from the catalogue's own equations.

Each function returns an ``Identity`` (symflop.identities): the statement, the verdict,
the derivation step by step, and what the document says.  Optimizer steps, the L2
penalty's gradient, BatchNorm at inference and its fold, and the MSE and BCE
gradients are taken from the catalogue components (``step`` runs a component's pass on
one element, symbolically; ``derive(...).fused`` gives a component's gradient), so that
a proof is about the equations the rest of symflop counts and checks.  Each identity
names its numeric check (with torch) by its own name: the engine asks the installed
validation suite to run it (validation/identities_torch.py), and this catalogue imports
no validation module.

Every simplification here is targeted (``expand`` of small expressions, limits of one
variable); no blanket ``simplify`` of a large expression.  The identities are in one
module per section of the document, their shared tools in ``proof``; this module lists
them in the document's order and renders them.
"""

from __future__ import annotations

from functools import lru_cache

from derivations.identities import losses, normalization, optimizers, regularization
from symflop.errors import UsageError
from symflop.report.identities import FORMATS, Identity, evaluate, render

IDENTITIES = {
    "nesterov-lookahead": optimizers.nesterov_lookahead,
    "l2-weight-decay-sgd": regularization.l2_weight_decay_sgd,
    "l2-weight-decay-momentum": regularization.l2_weight_decay_momentum,
    "l2-weight-decay-adam": regularization.l2_weight_decay_adam,
    "batchnorm-fold": normalization.batchnorm_fold,
    "adam-bias-correction": optimizers.adam_bias_correction,
    "mse-gaussian-nll": losses.mse_gaussian_nll,
    "ce-vs-mse-sigmoid": losses.ce_vs_mse_sigmoid,
}


@lru_cache(maxsize=2)
def _evaluated(numeric: bool) -> tuple[Identity, ...]:
    return tuple(evaluate(IDENTITIES, numeric))


def report(fmt: str = "text", numeric: bool = True) -> str:
    """Every identity of this catalogue, evaluated and rendered ("text", "markdown", "json").

    The numeric checks run when torch and the validation package can be imported; without
    them each says it did not run.  The evaluation is done once per process and
    ``numeric`` setting; each format renders the same records.
    """
    if fmt not in FORMATS:
        raise UsageError(f"unknown format {fmt!r} (formats: {', '.join(FORMATS)})")
    return render(list(_evaluated(bool(numeric))), fmt)
