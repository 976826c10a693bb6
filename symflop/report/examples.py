"""Worked examples: figures computed by the engine from stated inputs, each set beside
the figure a reference text gives for it, so that a difference is visible.

The engine knows no particular example; a catalogue provides them through the
``symflop.examples`` entry point as a dict of name -> function returning an
``Example``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from symflop.report.agreement import number_agrees


@dataclass(frozen=True)
class Row:
    """One figure: what it is, its value, how it was obtained, and what the text says."""

    label: str
    value: float
    unit: str = ""
    how: str = ""
    claimed: float | None = None
    claimed_text: str = ""
    rel_tol: float = 0.01
    abs_tol: float = 0.0

    def verdict(self) -> str:
        """What the document says, and whether the figure agrees with it."""
        if self.claimed is None:
            return ""
        # the claims' rule, at the tolerance the row states rather than at the stated
        # figure's last digit
        tolerance = max(self.rel_tol * abs(self.claimed), self.abs_tol)
        if number_agrees(self.value, self.claimed, tolerance):
            return f"document: {self.claimed_text} (agrees)"
        ratio = self.value / self.claimed if self.claimed else float("inf")
        return f"document: {self.claimed_text} (DIFFERS: engine/document = {ratio:.3g})"


@dataclass
class Example:
    name: str
    title: str
    inputs: dict
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *args, **kwargs) -> Row:
        row = Row(*args, **kwargs)
        self.rows.append(row)
        return row

    @property
    def differences(self) -> list[Row]:
        return [r for r in self.rows if "DIFFERS" in r.verdict()]


def format_value(v: float, unit: str) -> str:
    if unit == "%":
        return f"{v:.3g} %"
    if float(v).is_integer() and abs(v) < 1e18:
        return f"{int(v):,} {unit}".rstrip()
    return f"{v:,.4g} {unit}".rstrip()


def render(ex: Example) -> str:
    out = [f"{ex.name}: {ex.title}",
           "inputs: " + ", ".join(f"{k}={v:,}" if isinstance(v, int) else f"{k}={v:g}"
                                  for k, v in ex.inputs.items())]
    width = max(len(r.label) for r in ex.rows)
    for r in ex.rows:
        line = f"  {r.label:<{width}}  {format_value(r.value, r.unit)}"
        if r.how:
            line += f"   [{r.how}]"
        if r.verdict():
            line += f"\n  {'':<{width}}  {r.verdict()}"
        out.append(line)
    out.extend(f"  note: {n}" for n in ex.notes)
    n = len(ex.differences)
    out.append(f"  {n} figure(s) differ from the document" if n else
               "  every figure stated by the document agrees")
    return "\n".join(out)
