"""An estimate under torch.autocast (``--precision bf16-autocast``): what the step keeps
for backward, against what autograd saves in a real autocast step."""

import pytest
import torch
import torch.nn.functional as F  # noqa: N812 - torch's own spelling

from symflop.errors import UsageError
from symflop.estimate.step import estimate
from validation.megatron import GPT

B, S = 2, 8


def _saved_bytes(model, ids, dtype) -> int:
    """Storages autograd saves in one autocast forward pass and loss (parameters out),
    each once."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    packed = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: packed.append(t) or t,
                                                  lambda t: t), \
            torch.autocast("cpu", dtype=dtype):
        logits = model(ids)
        F.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                        torch.zeros(logits.shape[0] * logits.shape[1], dtype=torch.long))
    seen = {}
    for t in packed:
        st = t.untyped_storage()
        if st.nbytes() and st.data_ptr() not in params:
            seen.setdefault(st.data_ptr(), st.nbytes())
    return sum(seen.values())


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_saved_bytes_under_autocast_are_autograds(dtype):
    torch.manual_seed(0)
    model = GPT(64, 32, 4, 2).eval()           # no dropout: the same step both ways
    for layer in model.layers:
        layer.attn.core.p = 0.0
    est = estimate(model, ("B", "s"), input_dtype="int64", flop_counter=False,
                   use_cache=False, autocast=dtype)
    ids = torch.randint(0, 64, (B, S))
    model.train()
    measured = _saved_bytes(model, ids, getattr(torch, dtype))
    derived = est.at(est.activation_bytes, B=B, s=S)
    plain = estimate(model, ("B", "s"), input_dtype="int64", flop_counter=False,
                     use_cache=False)
    assert derived != plain.at(plain.activation_bytes, B=B, s=S)
    # the loss's total weight (one float) is the one storage the estimate leaves out
    assert 0 <= measured - derived <= 4, (measured, derived)
    assert any("torch.autocast" in n for n in est.notes)


def test_an_unknown_autocast_type_is_refused():
    with pytest.raises(UsageError, match="bfloat16 or float16"):
        estimate(GPT(64, 32, 4, 1), ("B", "s"), input_dtype="int64", autocast="int8")
