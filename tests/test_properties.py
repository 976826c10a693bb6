"""Property tests: for random sizes and random values, every differentiable component's
generated gradient equals torch.autograd of torch's own implementation."""

import pytest
import torch
from conftest import derived
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from derivations import CATALOGUE
from symflop import Component
from validation.harness import run_passes
from validation.inputs import torch_inputs
from validation.references import REFERENCES
from validation.tolerances import TOLERANCES

DIFFERENTIABLE = [n for n, b in CATALOGUE.items()
                  if isinstance(c := b(), Component) and c.differentiate is not None
                  and REFERENCES[n].run is not None]


# torch refuses a batch statistic over a single value ("Expected more than 1 value per
# channel when training"); BatchNorm's running variance N/(N - 1) needs N >= 2 too.
# LayerNorm over one feature is the same degenerate case, which torch does not refuse:
# there x - mean is exactly 0 in the generated code and rounding noise (~1e-12, scaled
# by 1/sqrt(eps)) in torch's kernel, so neither is a meaningful reference for the other.
TORCH_DOMAIN = {
    "layernorm": lambda s: s["d"] >= 2,
    "batchnorm": lambda s: s["N"] >= 2,
    "groupnorm": lambda s: s["Cg"] * s["S"] >= 2,
    "instancenorm": lambda s: s["S"] >= 2,
}


def _sizes(name):
    """Random sizes: each of the reference's sizes replaced by 1..6."""
    return st.fixed_dictionaries({k: st.integers(1, 6) for k in REFERENCES[name].sizes})


@pytest.mark.parametrize("name", DIFFERENTIABLE)
def test_gradient_equals_autograd_for_random_sizes_and_values(name):
    c, d = derived(name)
    ref = REFERENCES[name]

    @settings(max_examples=25, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(sizes=_sizes(name), seed=st.integers(0, 2 ** 31 - 1),
           scale=st.sampled_from([1e-3, 1.0, 30.0]))
    def check(sizes, seed, scale):
        assume(TORCH_DOMAIN.get(name, lambda s: True)(sizes))
        values = torch_inputs(c, d, ref, sizes, seed, torch.float64,
                              scale={k: scale for k in ("z", "yhat", "x", "cols")})
        ours = run_passes(d, values, backend="torch", seed=seed)
        draws = {k: ours[k] for k in ours if k.endswith("_draw") or k == "u"}
        theirs = ref.run({**values, **draws})
        for key, want in theirs.items():
            if key.startswith("grad_"):
                torch.testing.assert_close(ours[key], want, **TOLERANCES[torch.float64],
                                           msg=f"{name} {sizes} scale {scale}: {key}")

    check()
