"""Normalization layers (section "Normalization" of the reference document)."""

from __future__ import annotations

import sympy as sp

from symflop import Component, total


def batchnorm() -> Component:
    """Batch normalization, training mode, on activations x of shape (N, d).

    The forward pass is the document's four steps (batch mean, batch variance,
    normalize, scale and shift) followed by the running-statistics update.  The
    running variance uses the unbiased batch variance var * N / (N - 1), as
    torch.nn.functional.batch_norm does (Ioffe & Szegedy 2015, Algorithm 2); the
    document counts the update without that correction.  N is the number of
    values per feature (B for a fully connected layer, B*H*W for a convolution).
    """
    c = Component("batchnorm", "Normalization",
                  "batch normalization (training): batch statistics, scale and shift, "
                  "running statistics", reference="Ioffe & Szegedy (2015), ICML")
    N, d = c.dim("N d")
    i, j = c.index(i=N, j=d)
    x = c.input("x", (N, d), doc="activations")
    gamma = c.parameter("gamma", (d,), doc="scale")
    beta = c.parameter("beta", (d,), doc="shift")
    running_mean = c.state("running_mean", (d,))
    running_var = c.state("running_var", (d,))
    eps, momentum = c.hyper("epsilon momentum")
    mu = c.intermediate("mu", (d,), doc="batch mean")
    var = c.intermediate("var", (d,), doc="batch variance (biased)")
    xhat = c.intermediate("xhat", (N, d), doc="normalized activations")
    y = c.output("y", (N, d))
    f = "forward"
    c.assign(f, mu[j], total(x[i, j], i) / N)
    c.assign(f, var[j], total((x[i, j] - mu[j]) ** 2, i) / N)
    c.assign(f, xhat[i, j], (x[i, j] - mu[j]) / sp.sqrt(var[j] + eps))
    c.assign(f, y[i, j], gamma[j] * xhat[i, j] + beta[j])
    c.assign(f, running_mean[j], (1 - momentum) * running_mean[j] + momentum * mu[j])
    c.assign(f, running_var[j],
             (1 - momentum) * running_var[j] + momentum * var[j] * N / (N - 1))
    c.set_gradient(y, (x, gamma, beta))
    return c


COMPONENTS = {
    "batchnorm": batchnorm,
}
