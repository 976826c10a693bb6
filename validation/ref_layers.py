"""References for the layers used by the worked examples."""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812

from validation.ref_common import Reference, leaf


def _linear(v):
    x, W, b = leaf(v["x"]), leaf(v["W"]), leaf(v["bias"])
    y = F.linear(x, W, b)
    y.backward(v["grad_y"])
    return {"y": y.detach(), "grad_x": x.grad, "grad_W": W.grad, "grad_bias": b.grad}


def _conv(v):
    cols, W, b = leaf(v["cols"]), leaf(v["W"]), leaf(v["bias"])
    y = torch.einsum("ok,bks->bos", W, cols) + b[None, :, None]
    y.backward(v["grad_y"])
    return {"y": y.detach(), "grad_cols": cols.grad, "grad_W": W.grad, "grad_bias": b.grad}


def _conv_matches_torch_conv2d():
    """The im2col form is torch's convolution: checked once here, on random data."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 5, 5, dtype=torch.float64, generator=g)
    w = torch.randn(4, 3, 3, 3, dtype=torch.float64, generator=g)
    cols = F.unfold(x, 3, padding=1)
    y = torch.einsum("ok,bks->bos", w.reshape(4, -1), cols).reshape(2, 4, 5, 5)
    return torch.allclose(y, F.conv2d(x, w, padding=1), rtol=1e-12, atol=1e-12)


REFERENCES = {
    "linear": Reference(sizes={"B": 3, "O": 4, "I": 5}, tiny={"B": 2, "O": 2, "I": 3},
                        run=_linear),
    "conv2d-im2col": Reference(sizes={"B": 2, "O": 3, "K": 4, "S": 5},
                               tiny={"B": 1, "O": 2, "K": 3, "S": 2}, run=_conv),
}
