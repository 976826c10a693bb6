"""Normalization layers (section "Normalization" of the reference document).

Every layer is written as the document's four steps (mean, variance, normalize,
scale and shift); only the axes the statistics run over differ.  Gradients with
respect to the input and the affine parameters are derived by the engine.
"""

from __future__ import annotations

import sympy as sp

from symflop import Component, Fact, total


def _name_shared_terms(c: Component, deviation: sp.Expr, gamma: sp.Expr,
                       var_eps: sp.Expr, grad_y: sp.Expr) -> None:
    """The names the optimized programs give the terms they compute once: the deviation
    x - mu, the variance plus epsilon, its inverse square root and the scale gamma times
    it (the derivative of y with respect to x - mu); in the gradient, dxhat = gamma dy
    and dxhat/sqrt(var + eps), the term of dx through xhat alone (the document's first
    term of dL/dx)."""
    c.name_shared("xc", deviation)
    c.name_shared("var_eps", var_eps)
    c.name_shared("inv_std", 1 / sp.sqrt(var_eps))
    c.name_shared("scale", gamma / sp.sqrt(var_eps))
    c.name_shared("grad_xhat", gamma * grad_y)
    c.name_shared("grad_x_direct", gamma * grad_y / sp.sqrt(var_eps))


def batchnorm() -> Component:
    """Batch normalization on activations x of shape (N, d): training and inference.

    ``forward`` (training) is the document's four steps (batch mean, batch
    variance, normalize, scale and shift) followed by the running-statistics
    update.  The running variance uses the unbiased batch variance
    var * N / (N - 1), as torch.nn.functional.batch_norm does (Ioffe & Szegedy
    2015, Algorithm 2); the document counts the update without that correction.
    N is the number of values per feature (B for a fully connected layer, B*H*W
    for a convolution).  The gradient is derived from this training pass.

    ``inference`` normalizes with the running statistics instead (Ioffe &
    Szegedy 2015, Algorithm 2, step 10; the document's "normalize + scale/shift"),
    written to its own output ``y_inf``.  The folding of this pass into a
    preceding linear layer is the separate component ``batchnorm-fold``.
    """
    c = Component("batchnorm", "Normalization",
                  "batch normalization (training): batch statistics, scale and shift, "
                  "running statistics; inference with running statistics",
                  reference="Ioffe & Szegedy (2015), ICML")
    N, d = c.dim("N d")
    i, j = c.index(i=N, j=d)
    x = c.input("x", (N, d), doc="activations")
    gamma = c.parameter("gamma", (d,), doc="scale")
    beta = c.parameter("beta", (d,), doc="shift")
    running_mean = c.state("running_mean", (d,))
    running_var = c.state("running_var", (d,), facts=(Fact.NONNEGATIVE,))
    eps, momentum = c.hyper("epsilon momentum", epsilon=1e-5, momentum=0.1)
    mu = c.intermediate("mu", (d,), doc="batch mean")
    var = c.intermediate("var", (d,), doc="batch variance (biased)")
    xhat = c.intermediate("xhat", (N, d), doc="normalized activations")
    y = c.output("y", (N, d), doc="training output")
    xhat_inf = c.intermediate("xhat_inf", (N, d),
                              doc="activations normalized with the running statistics")
    y_inf = c.output("y_inf", (N, d), doc="inference output")
    f = "forward"
    _name_shared_terms(c, x[i, j] - mu[j], gamma[j], var[j] + eps, c.gradient(y)[i, j])
    c.assign(f, mu[j], total(x[i, j], i) / N)
    c.assign(f, var[j], total((x[i, j] - mu[j]) ** 2, i) / N)
    c.assign(f, xhat[i, j], (x[i, j] - mu[j]) / sp.sqrt(var[j] + eps))
    c.assign(f, y[i, j], gamma[j] * xhat[i, j] + beta[j])
    c.assign(f, running_mean[j], (1 - momentum) * running_mean[j] + momentum * mu[j])
    c.assign(f, running_var[j],
             (1 - momentum) * running_var[j] + momentum * var[j] * N / (N - 1))
    inf = "inference"
    c.assign(inf, xhat_inf[i, j], (x[i, j] - running_mean[j]) / sp.sqrt(running_var[j] + eps))
    c.assign(inf, y_inf[i, j], gamma[j] * xhat_inf[i, j] + beta[j])
    c.set_gradient(y, (x, gamma, beta), pass_name=f)
    return c


def batchnorm_fold() -> Component:
    """Inference BatchNorm folded into the preceding linear layer (weight W, bias b).

    With s = gamma / sqrt(running_var + eps), BatchNorm at inference is the affine
    map y = s (z - running_mean) + beta of the linear layer's output z = W u + b,
    so W_f[o, k] = s[o] W[o, k] and b_f[o] = s[o] (b[o] - running_mean[o]) + beta[o]
    (the document's "y = gamma/sigma x + (beta - gamma mu / sigma)"; Jacob et al.
    (2018), CVPR, section 3.2; torch.nn.utils.fusion.fuse_linear_bn_weights).
    A separate component from ``batchnorm`` because it needs a size of its own,
    K, the linear layer's input width.
    """
    c = Component("batchnorm-fold", "Normalization",
                  "inference batch normalization folded into the preceding linear layer",
                  reference="Ioffe & Szegedy (2015), ICML; Jacob et al. (2018), CVPR")
    d, K = c.dim("d K")
    o, k = c.index(o=d, k=K)
    W = c.input("W", (d, K), doc="weight of the preceding linear layer")
    b = c.input("b", (d,), doc="bias of the preceding linear layer")
    gamma = c.parameter("gamma", (d,), doc="scale")
    beta = c.parameter("beta", (d,), doc="shift")
    running_mean = c.state("running_mean", (d,))
    running_var = c.state("running_var", (d,), facts=(Fact.NONNEGATIVE,))
    eps = c.hyper("epsilon", epsilon=1e-5)
    s = c.intermediate("s", (d,), doc="per-feature scale gamma / sqrt(running_var + eps)")
    W_f = c.output("W_f", (d, K), doc="folded weight")
    b_f = c.output("b_f", (d,), doc="folded bias")
    p = "fold"
    c.assign(p, s[o], gamma[o] / sp.sqrt(running_var[o] + eps))
    c.assign(p, W_f[o, k], W[o, k] * s[o])
    c.assign(p, b_f[o], (b[o] - running_mean[o]) * s[o] + beta[o])
    return c


def layernorm() -> Component:
    """Layer normalization over the feature axis of x (B, d), affine gamma, beta (d).

    The document's equations: per-sample mean and biased variance over the d
    features, normalize, scale and shift (Ba, Kiros & Hinton 2016, eq. 4;
    torch.nn.functional.layer_norm).
    """
    c = Component("layernorm", "Normalization",
                  "layer normalization: per-sample statistics over the features, "
                  "scale and shift", reference="Ba, Kiros & Hinton (2016), arXiv:1607.06450")
    B, d = c.dim("B d")
    i, j = c.index(i=B, j=d)
    x = c.input("x", (B, d), doc="activations")
    gamma = c.parameter("gamma", (d,), doc="scale")
    beta = c.parameter("beta", (d,), doc="shift")
    eps = c.hyper("epsilon", epsilon=1e-5)
    mu = c.intermediate("mu", (B,), doc="per-sample mean")
    var = c.intermediate("var", (B,), doc="per-sample variance (biased)")
    xhat = c.intermediate("xhat", (B, d), doc="normalized activations")
    y = c.output("y", (B, d))
    f = "forward"
    _name_shared_terms(c, x[i, j] - mu[i], gamma[j], var[i] + eps, c.gradient(y)[i, j])
    c.assign(f, mu[i], total(x[i, j], j) / d)
    c.assign(f, var[i], total((x[i, j] - mu[i]) ** 2, j) / d)
    c.assign(f, xhat[i, j], (x[i, j] - mu[i]) / sp.sqrt(var[i] + eps))
    c.assign(f, y[i, j], gamma[j] * xhat[i, j] + beta[j])
    c.set_gradient(y, (x, gamma, beta))
    return c


def groupnorm() -> Component:
    """Group normalization of x (B, G, Cg, S): C = G*Cg channels in G groups, S = H*W.

    The document describes the statistics but omits the equations; these are
    Wu & He (2018), ECCV, eqs. (1)-(4) with the group set of eq. (7):
    mu[b, g] = 1/(Cg S) sum_{c, s} x[b, g, c, s],
    var[b, g] = 1/(Cg S) sum_{c, s} (x[b, g, c, s] - mu[b, g])^2,
    xhat = (x - mu) / sqrt(var + eps), y = gamma[g, c] xhat + beta[g, c],
    with one gamma and beta per channel (stored as (G, Cg), i.e. C values each).
    torch.nn.functional.group_norm on x reshaped to (B, G*Cg, S) computes the same.
    """
    c = Component("groupnorm", "Normalization",
                  "group normalization: per-sample statistics over each group of channels "
                  "and all positions, scale and shift",
                  reference="Wu & He (2018), Group Normalization, ECCV")
    B, G, Cg, S = c.dim("B G Cg S")
    i, g, ch, s = c.index(i=B, g=G, c=Cg, s=S)
    x = c.input("x", (B, G, Cg, S), doc="activations: sample, group, channel in group, position")
    gamma = c.parameter("gamma", (G, Cg), doc="per-channel scale")
    beta = c.parameter("beta", (G, Cg), doc="per-channel shift")
    eps = c.hyper("epsilon", epsilon=1e-5)
    mu = c.intermediate("mu", (B, G), doc="per-sample, per-group mean")
    var = c.intermediate("var", (B, G), doc="per-sample, per-group variance (biased)")
    xhat = c.intermediate("xhat", (B, G, Cg, S), doc="normalized activations")
    y = c.output("y", (B, G, Cg, S))
    f = "forward"
    _name_shared_terms(c, x[i, g, ch, s] - mu[i, g], gamma[g, ch], var[i, g] + eps,
                       c.gradient(y)[i, g, ch, s])
    c.assign(f, mu[i, g], total(x[i, g, ch, s], ch, s) / (Cg * S))
    c.assign(f, var[i, g], total((x[i, g, ch, s] - mu[i, g]) ** 2, ch, s) / (Cg * S))
    c.assign(f, xhat[i, g, ch, s], (x[i, g, ch, s] - mu[i, g]) / sp.sqrt(var[i, g] + eps))
    c.assign(f, y[i, g, ch, s], gamma[g, ch] * xhat[i, g, ch, s] + beta[g, ch])
    c.set_gradient(y, (x, gamma, beta))
    return c


def instancenorm() -> Component:
    """Instance normalization of x (B, C, S), S = H*W, with affine gamma, beta (C,).

    Statistics per sample and channel over the S positions (GroupNorm with G = C,
    the document's table; Ulyanov, Vedaldi & Lempitsky (2016), arXiv:1607.08022,
    eq. 2), then scale and shift per channel (torch.nn.functional.instance_norm).
    """
    c = Component("instancenorm", "Normalization",
                  "instance normalization: per-sample, per-channel statistics over positions, "
                  "scale and shift",
                  reference="Ulyanov, Vedaldi & Lempitsky (2016), arXiv:1607.08022")
    B, C, S = c.dim("B C S")
    i, ch, s = c.index(i=B, c=C, s=S)
    x = c.input("x", (B, C, S), doc="activations: sample, channel, position")
    gamma = c.parameter("gamma", (C,), doc="per-channel scale")
    beta = c.parameter("beta", (C,), doc="per-channel shift")
    eps = c.hyper("epsilon", epsilon=1e-5)
    mu = c.intermediate("mu", (B, C), doc="per-sample, per-channel mean")
    var = c.intermediate("var", (B, C), doc="per-sample, per-channel variance (biased)")
    xhat = c.intermediate("xhat", (B, C, S), doc="normalized activations")
    y = c.output("y", (B, C, S))
    f = "forward"
    _name_shared_terms(c, x[i, ch, s] - mu[i, ch], gamma[ch], var[i, ch] + eps,
                       c.gradient(y)[i, ch, s])
    c.assign(f, mu[i, ch], total(x[i, ch, s], s) / S)
    c.assign(f, var[i, ch], total((x[i, ch, s] - mu[i, ch]) ** 2, s) / S)
    c.assign(f, xhat[i, ch, s], (x[i, ch, s] - mu[i, ch]) / sp.sqrt(var[i, ch] + eps))
    c.assign(f, y[i, ch, s], gamma[ch] * xhat[i, ch, s] + beta[ch])
    c.set_gradient(y, (x, gamma, beta))
    return c


COMPONENTS = {
    "batchnorm": batchnorm,
    "batchnorm-fold": batchnorm_fold,
    "layernorm": layernorm,
    "groupnorm": groupnorm,
    "instancenorm": instancenorm,
}
