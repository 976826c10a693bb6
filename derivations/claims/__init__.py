"""The reference document's quantitative claims, as data, each with how the engine
derives the same quantity (``symflop claims``).

Every FLOP count, memory figure, worked-example number and stated gradient of the
document is one ``Claim``: its section, the text quoted, the value as the document
states it, and a function that derives the comparable quantity from the catalogue
under a counting convention.  The document's numbers are only compared here; no
derivation reads them.  The inputs of its worked examples (P = 25.6M parameters,
ResNet-50's backward of 7.6G FLOPs, B = 32, 56x56, ...) are the document's
premises and are used as such.  ``symflop.report.claims`` parses, compares and renders.

A claim's ``reason`` explains a difference (or a reconciliation) in one line; the
report shows it only when the claim does not simply agree.

One ledger module per section of the document holds its claims, next to the equations
they compare with; ``query`` holds how a quantity is derived and what several sections
share.  ``CLAIMS`` lists them in the document's order.
"""

from __future__ import annotations

from derivations.claims import (
    losses,
    normalization,
    optimizers,
    regularization,
    schedules,
    summary,
)
from symflop.report import claims as engine
from symflop.report.claims import Claim

SECTIONS = (losses, optimizers, regularization, normalization, schedules, summary)
CLAIMS: list[Claim] = [c for section in SECTIONS for c in section.CLAIMS]


def report(fmt: str = "markdown") -> str:
    """The claims report (``symflop claims --format markdown|json|latex``)."""
    return engine.report(CLAIMS, fmt)
