"""Stage names: the pipeline's stages in order, their aliases and their labels.

A command, a report or a table names a stage (``--stage optimized``) without needing
the pipeline that makes it (``symflop.rewrite.pipeline``); the names live here, below
every layer that reads them.
"""

from __future__ import annotations

from symflop.errors import UsageError

REWRITE_STAGES = ("written", "differentiated", "simplified", "reused", "stabilized")
STAGES = REWRITE_STAGES + ("lowered",)  # lowered: symflop.lower.plan, what the code runs
ALIASES = {"optimized": "reused", "as-written": "written", "code": "lowered"}
DERIVED = ("backward", "gradient")


def as_written_stage(d: object, pass_name: str) -> str:
    """The stage at which a pass appears as written: its author's passes when written,
    the derived ones (backward, gradient) when reverse mode derived them."""
    return "differentiated" if pass_name.rpartition(".")[2] in DERIVED else "written"


def stage_label(name: str) -> str:
    """A stage's name with its alias: ``reused (optimized)``, ``stabilized (code)``."""
    extra = {v: k for k, v in ALIASES.items() if k != "as-written"}.get(name)
    return f"{name} ({extra})" if extra else name


def stage_name(name: str) -> str:
    """A stage by name or alias (``optimized``, ``code``); one-line error otherwise."""
    name = ALIASES.get(name, name)
    if name not in STAGES:
        import difflib
        known = STAGES + tuple(ALIASES)
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise UsageError(f"unknown stage {name!r} (known: {', '.join(known)}){hint}")
    return name
