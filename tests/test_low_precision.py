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


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name", ["batchnorm", "layernorm", "groupnorm", "instancenorm"])
def test_half_precision_normalization_trains_past_256(name, dtype):
    """|x| up to about 1000 (300 randn): the variance, past float16's 65504, is handed to
    the backward in float32 (once stored in float16, inf, and the backward refused it)."""
    results = check(name, dtype, scale=300.0)
    assert {r.result for r in results} >= {"y", "grad_x"}
    for r in results:
        assert r.ours <= r.allowed, (f"{name} {r.result} ({r.dtype}): error {r.ours:.3g}, "
                                     f"torch's {r.torch:.3g}")


@pytest.mark.parametrize("dtype, offset, spread, sizes", [
    (torch.float16, None, None, {"B": 8, "C": 1000}),      # 10 randn, C = 1000
    (torch.float16, 1e4, 1.0, {"B": 8, "C": 1000}),
    (torch.bfloat16, 1e4, 1.0, {"B": 8, "C": 1000}),
    (torch.float32, 1e6, 1.0, {"B": 8, "C": 1000}),
    (torch.float64, 1e30, 0.0, {"B": 2, "C": 3}),          # every logit 1e30
    (torch.float64, 1e17, 1.0, {"B": 8, "C": 7}),
], ids=["fp16-10randn", "fp16-1e4", "bf16-1e4", "fp32-1e6", "fp64-equal-1e30",
        "fp64-1e17"])
def test_cross_entropy_gradient_at_any_offset(dtype, offset, spread, sizes):
    """The gradient from the logits centred by their row maximum, exp(z - m) / s (once
    exp(z - lse), lse rounded: fp32 at 1e6 was 2e5 times torch's error, fp64 logits all
    1e30 gave [0, 0.5, 0.5] for a softmax of [1/3, 1/3, 1/3])."""
    results = check("cross-entropy", dtype, sizes=sizes, offset=offset,
                    spread=spread if spread is not None else 1e-6)
    assert {r.result for r in results} == {"L", "grad_z"}
    for r in results:
        assert r.ours <= r.allowed, (f"{r.result} ({r.dtype}): error {r.ours:.3g}, "
                                     f"torch's {r.torch:.3g}")
