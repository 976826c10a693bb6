"""Communication: a collective written as its rounds, and what it costs each device.

A collective algorithm (ring all-reduce, reduce-scatter, ...) is written by the
catalogue as phases of rounds: in each round every device sends and receives some
elements and may add what it received to its own.  From that description this module
derives, per device: elements sent and received, rounds (messages in sequence, the
latency term), additions, and the latency-bandwidth (alpha-beta) time
``rounds * alpha + bytes sent * beta`` (Hockney 1994; Thakur, Rabenseifner & Gropp
2005, whose ring algorithms the catalogue writes).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import sympy as sp


@dataclass(frozen=True)
class Phase:
    """``rounds`` rounds, each: send ``send`` elements, receive ``receive``, add ``add``."""

    name: str
    rounds: sp.Expr
    send: sp.Expr
    receive: sp.Expr
    add: sp.Expr = sp.Integer(0)


@dataclass(frozen=True)
class Collective:
    """A collective over ``elements`` values on each of ``devices`` devices."""

    name: str
    summary: str
    reference: str
    elements: sp.Expr
    devices: sp.Expr
    phases: tuple[Phase, ...]

    def _total(self, attr: str) -> sp.Expr:
        return sp.factor(sp.Add(*[p.rounds * getattr(p, attr) for p in self.phases]))

    @property
    def sent(self) -> sp.Expr:
        """Elements each device sends."""
        return self._total("send")

    @property
    def received(self) -> sp.Expr:
        return self._total("receive")

    @property
    def additions(self) -> sp.Expr:
        return self._total("add")

    @property
    def rounds(self) -> sp.Expr:
        return sp.factor(sp.Add(*[p.rounds for p in self.phases]))

    def time(self, alpha: sp.Expr, beta: sp.Expr, bytes_per_element: sp.Expr) -> sp.Expr:
        """alpha per round (latency), beta per byte sent (inverse bandwidth)."""
        return sp.expand(self.rounds * alpha + self.sent * bytes_per_element * beta)

    def at(self, **sizes) -> Collective:
        """The same collective with symbols replaced (``elements``, ``devices``, ...)."""
        sub = {s: sizes[s.name] for s in self._symbols() if s.name in sizes}
        return Collective(self.name, self.summary, self.reference,
                          sp.sympify(self.elements).xreplace(sub),
                          sp.sympify(self.devices).xreplace(sub),
                          tuple(Phase(p.name, *(sp.sympify(v).xreplace(sub) for v in
                                                (p.rounds, p.send, p.receive, p.add)))
                                for p in self.phases))

    def _symbols(self) -> set:
        out = set()
        for e in (self.elements, self.devices):
            out |= sp.sympify(e).free_symbols
        for p in self.phases:
            for v in (p.rounds, p.send, p.receive, p.add):
                out |= sp.sympify(v).free_symbols
        return out


def repeat(c: Collective, times: sp.Expr, name: str | None = None) -> Collective:
    """``times`` collectives one after another (buckets, micro-batches)."""
    return Collective(name or f"{times} x {c.name}", c.summary, c.reference, c.elements,
                      c.devices, tuple(Phase(p.name, p.rounds * times, p.send, p.receive,
                                             p.add) for p in c.phases))


def sequence(name: str, summary: str, *parts: Collective) -> Collective:
    """Several collectives one after another, as one (ZeRO-3: two all-gathers and a
    reduce-scatter per step)."""
    first = parts[0]
    return Collective(name, summary, "; ".join(dict.fromkeys(p.reference for p in parts)),
                      first.elements, first.devices,
                      tuple(ph for p in parts for ph in p.phases))


@dataclass(frozen=True)
class AlphaBetaFit:
    """alpha (seconds per round) and beta (seconds per byte sent) fitted to measured times,
    and each measurement's relative error under the fit."""

    alpha: float
    beta: float
    errors: tuple[float, ...]

    @property
    def bandwidth(self) -> float:
        """1/beta, bytes per second."""
        return 1.0 / self.beta

    @property
    def median_error(self) -> float:
        return float(np.median(np.abs(self.errors)))

    @property
    def max_error(self) -> float:
        return float(np.max(np.abs(self.errors)))

    def predict(self, c: Collective, bytes_per_element: float) -> float:
        return float(c.rounds) * self.alpha + float(c.sent) * bytes_per_element * self.beta


def fit_alpha_beta(measured: list[tuple[Collective, float, float]]) -> AlphaBetaFit:
    """Least squares of ``rounds * alpha + bytes sent * beta`` against measured seconds,
    on the relative error (a microsecond weighs as much at 1 KB as a millisecond at 1 MB);
    ``measured``: (collective at numbers, bytes per element, seconds)."""
    if len(measured) < 2:
        raise ValueError("an alpha-beta fit needs two measurements or more")
    design = np.array([[float(c.rounds), float(c.sent) * b] for c, b, _t in measured])
    seconds = np.array([t for _c, _b, t in measured], dtype=float)
    (alpha, beta), *_ = np.linalg.lstsq(design / seconds[:, None], np.ones_like(seconds),
                                        rcond=None)
    if not (alpha > 0 and beta > 0):
        raise ValueError(f"the times fit no positive latency and bandwidth (alpha "
                         f"{alpha:.3g} s, beta {beta:.3g} s/byte): measure more sizes")
    errors = (design @ np.array([alpha, beta]) - seconds) / seconds
    return AlphaBetaFit(float(alpha), float(beta), tuple(float(e) for e in errors))
