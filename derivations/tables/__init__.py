"""The reference document's tables, every figure computed by the engine.

``TABLES`` maps a table name to a function ``(convention="default", dtype="float32",
exact=False) -> symflop.tables.Table``.  Each table corresponds to one table of the
reference document (or a family of them, e.g. one metrics table per optimizer of the
catalogue); its counts come from ``derive(c).counts`` / ``.step_counts``, its memory
from ``.memory.bytes`` and its composite figures from the training-step composite and
the worked examples' inputs.  No FLOP or memory figure is written here: change a
component's equations and the tables change with them.  Components are looked up in
their section module's ``COMPONENTS`` each time a table is built.

The options choose the columns' content: ``convention`` the counting convention,
``dtype`` the element size of every byte figure, ``exact`` the exact polynomials
instead of their leading-order part (applied to counts and to byte counts alike).

``render_table(name, fmt, ...)`` renders one table as LaTeX, Markdown, CSV or JSON.

The options and the component lookup are ``options``; the cells several tables share,
``cells``; the tables, one module per section of the document, each with its share of
``TABLES``.  This module joins them in the document's order.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable

from derivations.tables import (
    distributed,
    losses,
    normalization,
    optimizers,
    regularization,
    stages,
    step,
)
from symflop.errors import UsageError
from symflop.report.tables import Table, render

TABLES: dict[str, Callable[..., Table]] = {
    **losses.TABLES, **optimizers.TABLES, **regularization.TABLES, **normalization.TABLES,
    **step.TABLES, **stages.TABLES, **distributed.TABLES,
}

TABLE_NAMES = list(TABLES)  # the report's tables: the alias below is not one of them
TABLES["distributed"] = distributed.distributed_memory  # `symflop table distributed --dims ...`


def build_table(name: str, convention: str = "default", dtype: str = "float32",
                exact: bool = False, stage: str = "optimized") -> Table:
    if name not in TABLES:
        close = difflib.get_close_matches(name, TABLE_NAMES, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else \
            f" (tables: {', '.join(TABLE_NAMES)})"
        raise UsageError(f"unknown table {name!r}{hint}")
    return TABLES[name](convention=convention, dtype=dtype, exact=exact, stage=stage)


def render_table(name: str, fmt: str = "markdown", convention: str = "default",
                 dtype: str = "float32", exact: bool = False, stage: str = "optimized") -> str:
    """One table of the document, rendered as ``latex``, ``markdown``, ``csv`` or ``json``."""
    return render(build_table(name, convention, dtype, exact, stage), fmt)
