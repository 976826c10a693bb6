"""CUDA's autocast traced on the CPU (symflop.estimate.cuda_autocast) against torch's own
CUDA autocast run on fake CUDA tensors (validation.cuda_autocast_checks): the same
operations with the same types, one by one."""

import pytest

torch = pytest.importorskip("torch")

from symflop.estimate.cuda_autocast import policy  # noqa: E402
from symflop.estimate.step import _for_target, _trace  # noqa: E402
from symflop.registry import load_object  # noqa: E402

# a GPT (embedding, LayerNorm, attention's softmax and dropout, GELU, products), a U-Net
# (convolutions, group norms, upsampling), one in half precision, a causal SDPA block
MODELS = [("validation.megatron:TwoLayerGPT", (16, 2), "int64"),
          ("validation.zoo:unet", (2, 3, 32, 32), "float32"),
          ("validation.megatron:OneLayerSmall", (16, 2, 64), "bfloat16"),
          ("validation.zoo:causal_sdpa", (2, 12, 64), "float32")]


def test_each_operation_has_the_type_cuda_autocast_gives_it():
    """Forward pass and cross-entropy, operation by operation (views, which decide no
    type, left out; the loss as far as its float32 copy of the log-probabilities)."""
    from validation.cuda_autocast_checks import comparable, in_child
    theirs = in_child(MODELS)
    for (spec, shape, dtype), measured in zip(MODELS, theirs):
        tr = _for_target(_trace(load_object(spec, "a model")(), shape, {},
                                getattr(torch, dtype), "cross-entropy", "bfloat16", "cuda"),
                         "cuda")
        ours = comparable([[c.op.removeprefix("aten."), c.outputs[0].dtype]
                           for c in tr.calls if c.outputs])
        assert ours == comparable(measured), spec
        assert len(ours) > 15 and ours[-1][1] == "float32"   # what the loss reads


def test_the_lists_differ_from_the_cpus_where_torch_says():
    """torch's autocast documentation: on CUDA softmax, log_softmax and layer_norm run in
    float32 and products in the low type; the CPU's lists leave softmax alone."""
    x = torch.empty(4, 8)
    assert policy(torch.ops.aten.mm.default, torch.bfloat16, (x, x.t()), {}) == \
        (torch.bfloat16, torch.bfloat16)
    half = x.to(torch.bfloat16)
    for op, args in ((torch.ops.aten.softmax.int, (half, -1)),
                     (torch.ops.aten.log_softmax.int, (half, -1)),
                     (torch.ops.aten.layer_norm.default, (half, [8]))):
        assert policy(op, torch.bfloat16, args, {})[0] == torch.float32, op
    assert policy(torch.ops.aten.relu.default, torch.bfloat16, (half,), {}) is None


def test_the_estimate_says_whose_types_it_counts():
    from symflop.estimate import estimate
    from validation.megatron import TwoLayerGPT
    est = {target: estimate(TwoLayerGPT(), ("B", "s"), input_dtype="int64",
                            hints={"B": 2, "s": 16}, autocast="bfloat16", target=target,
                            flop_counter=False, use_cache=False)
           for target in ("cpu", "cuda")}
    assert any("CUDA's per-operation types" in n for n in est["cuda"].notes)
    assert any("the CPU's per-operation types" in n for n in est["cpu"].notes)
