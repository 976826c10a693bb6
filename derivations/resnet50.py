"""ResNet-50's training step as ``symflop estimate`` counts it: the one source of the
report's ResNet-50 figures (the worked example, its figure, its memory table, the claims).

The estimate traces ``validation.resnet50:resnet50`` (torchvision's ResNet-50, written
in torch.nn) with torch; this package never imports torch, so the estimate's figures are
read from the committed record ``recorded/resnet50-estimate.json``, written by
``python -m validation.resnet50_record`` and checked against a fresh estimate by
``tests/test_resnet50.py``.  Every figure is a polynomial in the batch B; the record's
FLOPs are under the default convention, the report's own.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import sympy as sp

from symflop.core.model import size_symbol
from symflop.errors import UsageError

RECORD = Path(__file__).with_name("recorded") / "resnet50-estimate.json"
CONVENTION = "default"
RUN = {"model": "validation.resnet50:resnet50", "input": "3x224x224", "loss": "cross-entropy",
       "optimizer": "adam", "B": 32, "dtype": "float32"}
# in backquotes: the report's prose sets it as code, not as words and a formula
COMMAND = (f"`symflop estimate {RUN['model']} --input {RUN['input']} --loss {RUN['loss']} "
           f"--optimizer {RUN['optimizer']} --at B={RUN['B']}`")
B = size_symbol("B")

# What a reader calls each line type of the estimate (a module type, or the step's parts).
LABELS = {"Conv2d": "convolutions", "BatchNorm2d": "BatchNorm", "ReLU": "ReLU",
          "Bottleneck": "residual additions", "MaxPool2d": "max-pool",
          "AdaptiveAvgPool2d": "average pool", "Linear": "fully connected layer",
          "gradients of tensors read twice or more, added": "gradient sums",
          "loss": "loss (cross-entropy)", "optimizer": "optimizer step (Adam)"}
MEMORY = (("parameters", "parameters"), ("gradients", "gradients"),
          ("Adam state", "state"), ("saved for backward", "saved"))


@lru_cache(maxsize=1)
def record() -> dict:
    """The committed record, its polynomials parsed (in ``B``)."""
    if not RECORD.is_file():
        raise UsageError(f"no ResNet-50 estimate at {RECORD}: make one with "
                         "python -m validation.resnet50_record")
    raw = json.loads(RECORD.read_text())
    if raw.get("convention") != CONVENTION:
        raise UsageError(f"{RECORD} is under convention {raw.get('convention')!r}, not "
                         f"{CONVENTION!r}: remake it with python -m validation.resnet50_record")
    local = {"B": B}
    parse = lambda s: sp.sympify(s, locals=local)  # noqa: E731
    return {**raw, "memory": {k: parse(v) for k, v in raw["memory"].items()},
            "by_type": {what: {k: parse(v) for k, v in parts.items()}
                        for what, parts in raw["by_type"].items()}}


def at(expr: sp.Expr, batch: int | None = None) -> int:
    """A polynomial of the record at the batch (the worked example's B by default)."""
    return int(expr.xreplace({B: RUN["B"] if batch is None else batch}))


def label(what: str) -> str:
    return LABELS.get(what, what)


def memory() -> list[tuple[str, sp.Expr]]:
    """(term, bytes as a polynomial in B): parameters, gradients, Adam state, saved."""
    mem = record()["memory"]
    return [(name, mem[key]) for name, key in MEMORY]


def flops(part: str) -> sp.Expr:
    """FLOPs of the whole step's "forward" or "backward" (loss and optimizer included)."""
    return sp.expand(sp.Add(*[p[part] for p in record()["by_type"].values()]))


def parameters() -> int:
    return int(record()["parameters"])


STEP_PARTS = ("loss", "optimizer")  # lines of the estimate that are not the network's


def network(key: str) -> sp.Expr:
    """The network's own figure (``forward``, ``backward``, ``macs_forward``, ...): every
    line of the estimate but the loss and the optimizer step."""
    return sp.expand(sp.Add(*[p.get(key, 0) for what, p in record()["by_type"].items()
                              if what not in STEP_PARTS]))


def backward_one_image() -> int:
    """FLOPs of the network's backward pass for one image (B = 1)."""
    return at(network("backward"), 1)
