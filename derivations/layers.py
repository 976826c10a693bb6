"""Layers the worked examples compare against (not costed by the document itself)."""

from __future__ import annotations

from symflop import Component, total


def gradient_of(c: Component, y, wrt: tuple[str, ...]) -> None:
    """Differentiate ``y`` with respect to the tensors named in ``wrt`` (none: no backward,
    as for a layer none of whose inputs needs a gradient)."""
    if wrt:
        c.set_gradient(y, tuple(c.tensors[n] for n in wrt))


def linear(bias: bool = True, wrt: tuple[str, ...] = ("x", "W", "bias")) -> Component:
    """Fully connected layer y = x W^T + b (torch.nn.functional.linear).

    ``bias`` and ``wrt`` (the tensors that need a gradient) are for ``symflop estimate``,
    which meets the layer without a bias, or on an input that needs no gradient."""
    c = Component("linear", "Layers", "fully connected layer y = x W^T + b",
                  reference="torch.nn.functional.linear")
    B, O, I = c.dim("B O I")
    b, o, i = c.index(b=B, o=O, i=I)
    x = c.input("x", (B, I))
    W = c.parameter("W", (O, I))
    y = c.output("y", (B, O))
    rhs = total(W[o, i] * x[b, i], i)
    if bias:
        rhs += c.parameter("bias", (O,))[o]
    c.assign("forward", y[b, o], rhs)
    gradient_of(c, y, wrt)
    return c


def conv2d_im2col(bias: bool = True, wrt: tuple[str, ...] = ("cols", "W", "bias")
                  ) -> Component:
    """2-D convolution as a matrix product over unfolded patches (im2col).

    cols[b, k, s] holds, for output position s, the K = C_in * kh * kw input
    values under the kernel (torch.nn.functional.unfold); then
    y[b, o, s] = sum_k W[o, k] * cols[b, k, s] + bias[o], which is what
    torch.nn.functional.conv2d computes (Chellapilla et al. 2006).
    """
    c = Component("conv2d-im2col", "Layers",
                  "2-D convolution as a matrix product over unfolded patches",
                  reference="Chellapilla, Puri & Simard (2006); torch.nn.functional.unfold")
    B, O, K, S = c.dim("B O K S")
    b, o, k, s = c.index(b=B, o=O, k=K, s=S)
    cols = c.input("cols", (B, K, S))
    W = c.parameter("W", (O, K))
    y = c.output("y", (B, O, S))
    rhs = total(W[o, k] * cols[b, k, s], k)
    if bias:
        rhs += c.parameter("bias", (O,))[o]
    c.assign("forward", y[b, o, s], rhs)
    gradient_of(c, y, wrt)
    return c


COMPONENTS = {"linear": linear, "conv2d-im2col": conv2d_im2col}
