"""A claim and its verdict: the data a catalogue writes and the renderers read.

A catalogue records each quantitative claim of a text as a ``Claim``; judging it
(``symflop.report.claims``) gives a ``Verdict``, which the renderers
(``symflop.report.claims_render``) set out.  Both sides meet here, so that neither
imports the other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

STATUSES = ("agrees", "reconciled", "scope", "differs", "cannot-derive")


@dataclass(frozen=True)
class Underivable:
    """Returned by a derivation that finds the quantity out of the engine's reach."""

    reason: str


@dataclass(frozen=True)
class Claim:
    """One quantitative claim of a text and how the engine derives the same quantity.

    ``derive`` takes a convention name and a stage (``optimized`` or ``written``) and
    returns the derived quantity (a SymPy polynomial or number, a dict of counts per
    kind, an ``Equation``, a string, ``Underivable``, or None when the quantity does
    not exist at that stage); ``None`` instead of a function means the claim cannot
    be derived, and ``reason`` says why.  ``by_convention`` / ``by_stage`` are False
    for quantities no convention / no stage changes, which are derived once.
    ``assumed`` derives the quantity under the document's own stated assumption
    (``assumption`` says which), ``table`` groups the rows a convention must fit
    together (default: the section), ``scope`` says how the document's quantity is
    another than the tool's.  ``reason`` explains a difference or a reconciliation.
    """

    id: str
    section: str
    quote: str
    claimed: str
    how: str = ""
    derive: Callable[[str, str], object] | None = None
    by_convention: bool = True
    reason: str = ""
    by_stage: bool = True
    assumed: Callable[[str, str], object] | None = None
    assumption: str = ""
    table: str = ""
    scope: str = ""

    @property
    def group(self) -> str:
        return self.table or self.section


@dataclass(frozen=True)
class Verdict:
    """The verdict on one claim (a status of ``STATUSES``) and the figures behind it."""

    claim: Claim
    status: str
    derived: str = ""
    conventions: tuple[str, ...] = ()
    detail: str = ""
    reason: str = ""
    written: str = ""          # the as-written figure (empty when no stage changes it)
    optimized: str = ""        # the optimized figure
    # The same three figures as LaTeX (math through SymPy's printer), for the PDF.
    derived_tex: str = ""
    written_tex: str = ""
    optimized_tex: str = ""
    by_assumption: bool = False  # agrees only under the document's stated assumption

    def as_dict(self) -> dict:
        c = self.claim
        return {"id": c.id, "section": c.section, "quote": c.quote, "claimed": c.claimed,
                "how": c.how, "verdict": self.status, "derived": self.derived,
                "as_written": self.written, "optimized": self.optimized,
                "conventions": list(self.conventions), "detail": self.detail,
                "reason": self.reason}


def tally(verdicts: list[Verdict]) -> dict[str, int]:
    """How many verdicts have each status, and the total."""
    counts = {s: 0 for s in STATUSES}
    for v in verdicts:
        counts[v.status] += 1
    counts["total"] = len(verdicts)
    return counts
