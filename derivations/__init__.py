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
    precision,
    regularization,
    schedules,
    training,
)
from derivations.glossary import DISPLAY, ENGLISH_WORDS, glossary
from symflop.report.latex import set_symbol_latex
from symflop.report.prose import add_symbols

# In every table and report: lr printed as eta, lam as lambda; the glossary's symbols
# typeset where captions and cells write formulas in ASCII (theta - lr*g), but for the
# glossary's English words (dropout's a), which prose never reads as symbols.
set_symbol_latex(DISPLAY)
add_symbols(sym for _kind, sym, _meaning in glossary() if sym not in ENGLISH_WORDS)

SECTIONS = (losses, optimizers, regularization, normalization, schedules, training, layers,
            precision)
CATALOGUE = {name: build for m in SECTIONS for name, build in m.COMPONENTS.items()}
