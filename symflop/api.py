"""The Python API: what the command line does, as functions a notebook calls.

Each function is named after its command and takes a catalogue name (``"layernorm"``),
a file's component (``"rmsnorm.py:rmsnorm"``) or a ``Component``::

    from symflop import api
    api.grad("cross-entropy", "z", latex=True)    # the fused gradient, as LaTeX
    api.count("layernorm", "backward", sizes={"B": 32, "d": 1024})
    api.memory("adam", sizes={"P": 25_600_000})
    api.table("loss-all", format="markdown")

Counts and bytes are SymPy polynomials in the sizes, or integers where ``sizes`` gives
every size; ``validate`` and ``estimate`` need torch.
"""

from __future__ import annotations

import sympy as sp

from symflop.core.model import Component
from symflop.derive import Derivation
from symflop.errors import UsageError, needs_torch

__all__ = ["component", "count", "derivation", "estimate", "grad", "memory", "table",
           "validate"]


def component(name: str | Component, **options: str) -> Component:
    """A catalogue component by name, or one of a file (``"FILE.py:NAME"``); a
    ``Component`` is returned as it is.  ``options``: a builder's keywords (the optimizer
    of ``training-step``)."""
    if isinstance(name, Component):
        return name
    from symflop.registry import get_component
    return get_component(name, **options)


def derivation(name: str | Component) -> Derivation:
    """Everything derived of a component (gradients, counts by stage, memory, code),
    cached on disk."""
    from symflop.compose import derive_any
    return derive_any(component(name))


def _at(expr: sp.Expr, sizes: dict | None):
    """``expr`` with ``sizes`` put in: an int once no size is left, else a polynomial."""
    expr = sp.sympify(expr)
    if not sizes:
        return expr
    value = expr.xreplace({s: sizes[s.name] for s in expr.free_symbols if s.name in sizes})
    return int(value) if value.is_Integer else value


def _check_sizes(d: Derivation, sizes: dict | None) -> None:
    extra = set(sizes or {}) - set(d.dims)
    if extra:
        raise UsageError(f"{d.component} has no size {', '.join(sorted(extra))} (its sizes: "
                         f"{', '.join(d.dims) or 'none'})")


def grad(name: str | Component, wrt: str, latex: bool = False) -> sp.Expr | str:
    """The fused gradient of the component's loss (or output) with respect to ``wrt``, in
    its optimized closed form: a SymPy expression, or with ``latex`` the line the report
    prints (``\\frac{\\partial L}{\\partial z_{ik}} = ...``, no index ranges)."""
    d = derivation(name)
    if wrt not in d.fused:
        raise UsageError(f"{d.component} has no gradient with respect to {wrt!r} "
                         f"(it has: {', '.join(d.fused) or 'none'})")
    if not latex:
        return d.fused[wrt].expr
    from symflop.report.render import fused_text
    return fused_text(d.fused[wrt], latex=True)


def count(name: str | Component, pass_name: str = "forward", sizes: dict | None = None,  # noqa: S107
          convention: str = "default", stage: str = "optimized") -> dict:
    """Operations of one pass by kind, with ``"total"`` (weighted by ``convention``) and
    ``"leading"`` (its leading order), at ``sizes`` where given."""
    d = derivation(name)
    _check_sizes(d, sizes)
    c = d.counts(pass_name, convention, stage)
    out = {k: _at(v, sizes) for k, v in c.by_kind.items()}
    out["total"] = _at(c.total, sizes)
    out["leading"] = _at(c.leading, sizes)
    return out


def memory(name: str | Component, sizes: dict | None = None, dtype: str = "float32",
           stage: str = "optimized") -> dict:
    """Bytes of parameters, gradients, optimizer state and tensors saved for backward, at
    ``dtype``, at ``sizes`` where given."""
    d = derivation(name)
    _check_sizes(d, sizes)
    m = d.memory_at(stage)
    return {what: _at(m.bytes(what, dtype), sizes)
            for what in ("parameters", "gradients", "state", "saved")}


def table(name: str, format: str = "markdown", **options) -> str:  # noqa: A002 - the CLI's
    """A table of the catalogue (``symflop table`` lists them) rendered as ``format``:
    text, markdown, latex or json; ``options``: convention, dtype, exact, stage, dims."""
    from symflop.registry import plugin
    from symflop.report.tables import render
    tables = plugin("symflop.tables", "tables")
    if name not in tables:
        raise UsageError(f"unknown table {name!r} (symflop table lists them)")
    return render(tables[name](**options), format)


def validate(name: str | Component, reference=None, device: str = "cpu",
             dtype: str = "float64") -> list:
    """The generated code against torch: rows of (pass, sizes checked, errors, verdict).
    A catalogue component uses its own torch reference; any other needs ``reference``,
    a function of the component's named values returning its results by name."""
    try:
        import torch
    except ImportError:
        raise needs_torch("validate") from None
    from symflop.registry import plugin
    suite = plugin("symflop.validation", "a validation suite")
    torch_dtype = {"float32": torch.float32, "float64": torch.float64}.get(dtype)
    if torch_dtype is None:
        raise UsageError(f"dtype {dtype!r}: float32 or float64")
    if reference is None and isinstance(name, str) and ":" not in name:
        return suite.validate([name], device, torch_dtype)
    if reference is None:
        raise UsageError("a component of your own needs a reference: validate(c, reference="
                         "FUNC), FUNC(values) -> results by name")
    return suite.validate_user(component(name), reference, device, torch_dtype)


def estimate(model, shape: tuple, **options):
    """One training step of a torch model: ``symflop.estimate.estimate``."""
    try:
        import torch  # noqa: F401
    except ImportError:
        raise needs_torch("estimate") from None
    from symflop.estimate import estimate as run
    return run(model, shape, **options)
