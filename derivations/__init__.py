"""The catalogue: one module per section of the reference document.

Each section module has a ``COMPONENTS`` dict from CLI name to the function that
builds the component; ``CATALOGUE`` merges them in the document's order.  The
engine finds it through the ``symflop.catalogues`` entry point and never
imports this package itself.
"""

from derivations import (
    layers,
    losses,
    normalization,
    optimizers,
    regularization,
    schedules,
    training,
)
from derivations.glossary import DISPLAY
from symflop.report.tables import set_symbol_latex

set_symbol_latex(DISPLAY)  # lr printed as eta, lam as lambda, in every table and report

SECTIONS = (losses, optimizers, regularization, normalization, schedules, training, layers)
CATALOGUE = {name: build for m in SECTIONS for name, build in m.COMPONENTS.items()}
