"""The report's ResNet-50 figures, as ``symflop estimate`` gives them, written to the file
the report reads (``derivations/recorded/resnet50-estimate.json``).

Why a file: ``derivations/`` never imports torch, and the report builds without it; the
estimate traces the model with torch.  So the estimate's figures are kept in the
repository, and ``tests/test_resnet50.py`` fails when the committed file is not what the
estimate gives now.  Remake it with ``python -m validation.resnet50_record``.

The figures are grouped by the module type of each line of the estimate (Conv2d,
BatchNorm2d, ReLU, ..., and its loss and optimizer lines), as polynomials in B: FLOPs
under the default convention, the report's own; the multiply-adds of products and
convolutions (``macs_*``); bytes first kept for backward (``saved``).
"""

from __future__ import annotations

import json
import sys

import sympy as sp
import torch

from derivations.resnet50 import CONVENTION, RECORD, RUN
from validation.resnet50 import resnet50


def estimate_record() -> dict:
    """The figures of the record, from a fresh estimate (the disk cache is used)."""
    from symflop.estimate import estimate
    torch.manual_seed(0)
    est = estimate(resnet50(), ("B", 3, 224, 224), loss=RUN["loss"],
                   optimizer=RUN["optimizer"], convention=CONVENTION, hints={"B": RUN["B"]},
                   flop_counter=False, name="resnet50")
    by_type: dict[str, dict[str, sp.Expr]] = {}
    for ln in est.lines:
        acc = by_type.setdefault(ln.what, {})
        for key, value in (("forward", ln.flops_forward), ("backward", ln.flops_backward),
                           ("macs_forward", ln.macs_forward),
                           ("macs_backward", ln.macs_backward), ("saved", ln.saved_bytes)):
            acc[key] = sp.expand(acc.get(key, sp.Integer(0)) + value)
    if est.unknown:
        raise RuntimeError(f"ResNet-50's estimate leaves operations without a cost: "
                           f"{est.unknown}")
    return {**RUN, "convention": est.convention, "parameters": est.parameters,
            "memory": {"parameters": str(est.parameter_bytes),
                       "gradients": str(est.gradient_bytes),
                       "state": str(sp.expand(est.state_bytes)),
                       "saved": str(sp.expand(est.activation_bytes))},
            "by_type": {what: {k: str(v) for k, v in parts.items()}
                        for what, parts in by_type.items()}}


def text(record: dict) -> str:
    return json.dumps(record, indent=1, sort_keys=True) + "\n"


def main(argv: list[str]) -> int:
    new = text(estimate_record())
    if argv == ["--check"]:
        same = RECORD.is_file() and RECORD.read_text() == new
        print(f"{RECORD}: {'up to date' if same else 'differs from the estimate'}")
        return 0 if same else 1
    tmp = RECORD.with_suffix(".tmp")
    tmp.write_text(new)
    tmp.replace(RECORD)
    print(f"wrote {RECORD}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
