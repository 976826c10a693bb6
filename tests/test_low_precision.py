"""float16 and bfloat16: the generated code against torch on the same dtype, both measured
against torch in float64 on the same (rounded) inputs."""

import pytest
import torch

from validation.low_precision import FACTOR, check, components

DTYPES = (torch.float16, torch.bfloat16)


def test_every_loss_and_normalization_layer_is_checked():
    names = components()
    assert {"batchnorm", "layernorm", "groupnorm", "instancenorm", "cross-entropy", "mse",
            "focal", "kl-div"} <= set(names)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name", components())
def test_half_precision_error_is_within_four_times_torchs(name, dtype):
    results = check(name, dtype)
    assert results, f"{name}: nothing compared"
    for r in results:
        assert r.ours <= r.allowed, (f"{name} {r.result} ({r.dtype}): error {r.ours:.3g}, "
                                     f"torch's {r.torch:.3g} (allowed {FACTOR}x)")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name, sizes", [
    ("batchnorm", {"N": 1024, "d": 4}),      # the variance of 1024 values of 10*randn:
    ("layernorm", {"B": 4, "d": 2048}),      # about 1e5 summed, past float16's 65504
    ("groupnorm", {"B": 2, "G": 2, "Cg": 8, "S": 128}),
    ("instancenorm", {"B": 2, "C": 2, "S": 1024}),
])
def test_statistics_of_large_half_precision_inputs_do_not_overflow(name, sizes, dtype):
    """Once float16 statistics overflowed: BatchNorm returned zeros (error 4.45 against
    torch's 0.003)."""
    for r in check(name, dtype, sizes=sizes):
        assert r.ours <= r.allowed, (f"{name} {r.result} ({r.dtype}): error {r.ours:.3g}, "
                                     f"torch's {r.torch:.3g}")


@pytest.mark.parametrize("offset", [3.0, 100.0])
@pytest.mark.parametrize("sizes", ["reference", "large"])
@pytest.mark.parametrize("name", ["batchnorm", "layernorm", "groupnorm", "instancenorm"])
def test_float32_normalization_with_a_large_common_offset(name, sizes, offset):
    """x = offset + 1e-6 * randn in float32: the spread is a few units in the last place,
    the variance far below eps.  Every result (output, gradients, running statistics)
    within 4x torch's own float32 error against float64 on the same inputs."""
    large = {"batchnorm": {"N": 1024, "d": 4}, "layernorm": {"B": 4, "d": 1024},
             "groupnorm": {"B": 2, "G": 2, "Cg": 8, "S": 64},
             "instancenorm": {"B": 2, "C": 2, "S": 512}}
    results = check(name, torch.float32, sizes=large[name] if sizes == "large" else None,
                    offset=offset)
    assert {r.result for r in results} >= {"y", "grad_x"}
    for r in results:
        assert r.ours <= r.allowed, (f"{name} {r.result}: error {r.ours:.3g}, "
                                     f"torch's {r.torch:.3g}")
