"""Half precision: the generated code against torch on float16 and bfloat16 inputs.

Both run on the same half-precision inputs; both are measured against torch on the
same inputs in float64 (the truth).  The generated code computes half-precision inputs
in float32 and rounds its results once, so its error should be no worse than torch's
own: a check passes when it is within ``FACTOR`` times torch's error, or within one unit
in the last place of the result's magnitude where torch is closer than that.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from derivations import CATALOGUE
from symflop import derive
from symflop.core.model import Fact, Role
from validation.harness import run_passes
from validation.inputs import torch_inputs
from validation.references import REFERENCES
from validation.validate import _drawn

FACTOR = 4
SECTIONS = ("Losses", "Normalization")


@dataclass(frozen=True)
class HalfResult:
    component: str
    dtype: str
    result: str
    ours: float   # max |generated - float64 torch|
    torch: float  # max |torch in the dtype - float64 torch|
    scale: float  # max |float64 torch|

    @property
    def allowed(self) -> float:
        """FACTOR times torch's error, and never below one unit in the last place at the
        result's magnitude: a result rounded twice (a multiply, then an add) can be one
        unit off, where torch's fused multiply-add happens to land a tenth of one away."""
        ulp = torch.finfo(getattr(torch, self.dtype)).eps * max(self.scale, 1.0)
        return max(FACTOR * self.torch, ulp)

    @property
    def ok(self) -> bool:
        return self.ours <= self.allowed


def _dyadic_rows(p: torch.Tensor, bits: int = 7) -> torch.Tensor:
    """Rows that sum to exactly one in float16 and bfloat16 too: multiples of 2**-bits
    (a soft-target distribution rounded to half precision no longer sums to one, and a
    component that declares rows summing to one may rely on it)."""
    unit = 2 ** bits
    q = torch.floor(p * unit)
    rest = unit - q.sum(-1, keepdim=True)
    q.scatter_add_(-1, p.argmax(-1, keepdim=True), rest)
    return q / unit


def components() -> list[str]:
    """Every loss and normalization layer with a torch reference that runs it."""
    return [n for n, ref in REFERENCES.items() if n in CATALOGUE and ref.run is not None
            and getattr(CATALOGUE[n](), "section", "") in SECTIONS]


def _as(values: dict, dtype) -> dict:
    return {k: v.to(dtype) if isinstance(v, torch.Tensor) and v.is_floating_point() else v
            for k, v in values.items()}


def check(name: str, dtype: torch.dtype, seed: int = 0, scale: float = 10.0,
          sizes: dict | None = None, offset: float | None = None,
          spread: float = 1e-6) -> list[HalfResult]:
    """One component at its reference sizes (or ``sizes``), its inputs ``scale`` times a
    standard normal: BatchNorm of 10 * randn over 1024 rows once overflowed a float16
    variance and returned zeros.  With ``offset``, the main input (a normalization's x,
    a loss's logits z) is instead ``offset + spread * randn``: for a normalization a
    spread the dtype barely holds, far below eps; for logits an offset that cancels in
    the softmax (1e6 + randn in float32), or logits all equal (``spread`` 0)."""
    c = CATALOGUE[name]()
    d = derive(c)
    ref = REFERENCES[name]
    values = torch_inputs(c, d, ref, sizes or ref.sizes, seed, torch.float64, "cpu")
    big = {k for k, t in c.tensors.items() if t.role is Role.INPUT and k in values
           and isinstance(values[k], torch.Tensor) and values[k].is_floating_point()}
    if offset is None:
        values = {k: v * scale if k in big and k != "grad_y" else v
                  for k, v in values.items()}
    else:
        key = "x" if "x" in values else "z"
        values = {**values, key: offset + spread * values[key]}
    for k, t in c.tensors.items():  # a declared fact must hold in the dtype itself
        if k in values and t.has(Fact.ROWS_SUM_TO_ONE) and not t.has(Fact.ONE_HOT):
            values[k] = _dyadic_rows(values[k])
    half = _as(values, dtype)
    exact_in = _as(half, torch.float64)  # the same (rounded) inputs, in float64
    ours = run_passes(d, half, backend="torch", seed=seed)
    draws = {k: ours[k].double() for k in ours if k in _drawn(d)}
    truth = ref.run({**exact_in, **draws})
    theirs = ref.run({**half, **_as(draws, dtype)})
    out = []
    for key, want in truth.items():
        if key not in ours or want is None:
            continue
        want = want.double()
        out.append(HalfResult(name, str(dtype).replace("torch.", ""), key,
                              float((ours[key].double() - want).abs().max()),
                              float((theirs[key].double() - want).abs().max()),
                              float(want.abs().max())))
    return out

