"""The catalogue: one module per section of the reference document.

``CATALOGUE`` maps each component's CLI name to the function that builds it; the
engine finds it through the ``symflop.catalogues`` entry point and never
imports this package itself.
"""

from derivations.losses import cross_entropy, cross_entropy_soft, mse
from derivations.normalization import batchnorm
from derivations.optimizers import adam

CATALOGUE = {
    "mse": mse,
    "cross-entropy": cross_entropy,
    "cross-entropy-soft": cross_entropy_soft,
    "batchnorm": batchnorm,
    "adam": adam,
}
