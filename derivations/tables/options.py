"""The tables' mechanism: the options every table takes and the components it reads.

``Opts`` checks the options once (convention, stage, dtype, exact) and turns counts and
byte figures into cells at them, and a ``Table`` into one whose caption says how its
figures were counted.  ``derived(name)`` looks a component up in its section module's
``COMPONENTS`` each time a table is built (a replaced builder changes every table that
uses it) and derives it once per builder and process.  The tables themselves are in the
section modules beside this one.
"""

from __future__ import annotations

from collections.abc import Callable

import sympy as sp

import derivations
from symflop.core.model import Component
from symflop.core.stages import as_written_stage, stage_name
from symflop.cost.conventions import Convention, get_convention
from symflop.cost.counting import Counts, leading_order
from symflop.cost.memory import dtype_bytes
from symflop.derive import Derivation, derive
from symflop.errors import UsageError
from symflop.report.tables import Table


class Opts:
    """The options every table takes, checked once."""

    def __init__(self, convention: str | Convention, dtype: str, exact: bool,
                 stage: str = "optimized"):
        self.conv = get_convention(convention)
        dtype_bytes(dtype)
        self.dtype = dtype
        self.exact = bool(exact)
        self.stage = stage_name(stage)

    def counts(self, d, pass_name: str) -> Counts:
        """A pass's counts at the chosen stage (a pass the author wrote, or one derived
        from it: as written means as reverse mode derived it)."""
        return d.counts(pass_name, self.conv, self._stage(d, pass_name))

    def step_counts(self, d, pass_name: str):
        return d.step_counts(pass_name, self.conv, self._stage(d, pass_name))

    def memory(self, d):
        return d.memory_at(self.stage) if hasattr(d, "memory_at") else d.memory

    def _stage(self, d, pass_name: str) -> str:
        if self.stage == "written" and hasattr(d, "stages"):
            return as_written_stage(d, pass_name)
        return self.stage

    def poly(self, e) -> sp.Expr:
        e = sp.expand(sp.sympify(e))
        return e if self.exact else leading_order(e)

    def flops(self, cnt: Counts) -> sp.Expr:
        return cnt.total if self.exact else cnt.leading

    def bytes(self, d, what: str) -> sp.Expr:
        return self.poly(self.memory(d).bytes(what, self.dtype))

    @property
    def order(self) -> str:
        return "exact" if self.exact else "leading order"

    @property
    def program(self) -> str:
        """What the chosen stage counts, in words."""
        return {"reused": "the optimized program", "written": "the equations as written"
                }.get(self.stage, f"the {self.stage} program")

    def table(self, name: str, title: str, columns, what: str = "",
              flops: bool = True) -> Table:
        """A table whose caption says how its figures were counted (FLOPs: which program,
        convention and order; bytes: which dtype); ``flops=False`` for a table of bytes."""
        basis = (f"FLOPs of {self.program}, under the {self.conv.name} convention, "
                 f"{self.order}; bytes for {self.dtype}." if flops
                 else f"Bytes of {self.program}, {self.order}; the MiB column from the "
                 "exact count.")
        caption = f"{title}. {what + ' ' if what else ''}{basis}"
        return Table(name, title, columns, caption=caption,
                     options={"convention": self.conv.name, "dtype": self.dtype,
                              "exact": self.exact, "stage": self.stage})


def builder(name: str) -> Callable[[], Component]:
    """The builder that ``name``'s section module lists now (as the training-step composite
    looks it up), so that a changed builder changes every table that uses it."""
    for module in derivations.SECTIONS:
        if name in module.COMPONENTS:
            return module.COMPONENTS[name]
    raise UsageError(f"no component {name!r} in the catalogue")


def component(name: str) -> Component:
    return builder(name)()


_DERIVED: dict = {}


def derived(name: str) -> tuple[Component, Derivation]:
    """(component, derivation), once per builder and process: builders are functions of
    nothing, so the same builder gives the same equations; a replaced builder is a new key."""
    build = builder(name)
    hit = _DERIVED.get(build)
    if hit is None:
        c = build()
        hit = _DERIVED[build] = (c, derive(c))
    return hit
