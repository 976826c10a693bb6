"""The ledger of the document's normalization sections (BatchNorm and its example,
training vs inference, LayerNorm, GroupNorm, the comparison table), with BatchNorm's
backward equations as the document writes them."""

from __future__ import annotations

import sympy as sp

from derivations.claims.query import (
    BN_BACKWARD,
    BN_CACHE,
    S_BN,
    S_BNX,
    S_GN,
    S_LN,
    S_NCMP,
    S_TI,
    Query,
    claim,
    computed,
    count_at,
    derivation,
    elements_of,
    example_figure,
    flops,
    fused_gradient,
    indexed_base,
    inlined_step,
    memory,
    size_symbol,
    tensor_symbol,
)
from symflop.report.claims import Claim, Equation


def _bn_folded(_conv):
    """BatchNorm's inference pass against gamma/sigma x + (beta - gamma mu/sigma)."""
    expr, (i, j) = inlined_step("batchnorm", "inference", "y_inf")
    x, gamma, beta = (tensor_symbol("batchnorm", n) for n in ("x", "gamma", "beta"))
    mu, var = tensor_symbol("batchnorm", "running_mean"), tensor_symbol("batchnorm", "running_var")
    sigma = sp.sqrt(var[j] + sp.Symbol("epsilon", positive=True))
    claimed = gamma[j] / sigma * x[i, j] + (beta[j] - gamma[j] * mu[j] / sigma)
    return Equation(expr, claimed, _BN_SIZES,
                    assumptions=("sigma = sqrt(running_var + epsilon)",))


def _bn_names():
    f = fused_gradient("batchnorm", "x")
    names = {n: tensor_symbol("batchnorm", n) for n in ("x", "mu", "var", "gamma", "xhat")}
    names["grad_y"] = indexed_base(f.expr, "grad_y")
    names["eps"] = sp.Symbol("epsilon", positive=True)
    return names


def _batch_statistics(v: dict) -> dict:
    """mu and var set to the batch mean and (biased) variance of the x values drawn, and
    xhat to (x - mu)/sqrt(var + eps): what the forward pass computed."""
    v = dict(v)
    cols: dict = {}
    xs_at: dict = {}
    for leaf, x in v.items():
        if isinstance(leaf, sp.Indexed) and str(leaf.base) == "x":
            cols.setdefault(leaf.indices[1], []).append(x)
            xs_at[tuple(leaf.indices)] = x
    eps = next((x for leaf, x in v.items() if isinstance(leaf, sp.Symbol)
                and leaf.name == "epsilon"), 0.0)

    def stats(j):
        xs = cols[j]
        m = sum(xs) / len(xs)
        return m, sum((x - m) ** 2 for x in xs) / len(xs)

    for leaf in list(v):
        if isinstance(leaf, sp.Indexed) and str(leaf.base) in ("mu", "var"):
            m, var = stats(leaf.indices[0])
            v[leaf] = m if str(leaf.base) == "mu" else var
        elif isinstance(leaf, sp.Indexed) and str(leaf.base) == "xhat":
            m, var = stats(leaf.indices[1])
            v[leaf] = (xs_at[tuple(leaf.indices)] - m) / (var + eps) ** 0.5
    return v


_BN_SIZES = {size_symbol("N"): 3, size_symbol("d"): 2}
_BN_ASSUMES = ("mu, var: the batch mean and variance of x",)


def _bn_doc_adjoints(i, j):
    """The document's backward equations for BatchNorm, as written there."""
    n = _bn_names()
    x, mu, var, gamma, gy, eps = (n[k] for k in ("x", "mu", "var", "gamma", "grad_y", "eps"))
    N = size_symbol("N")
    k = sp.Idx("k", N)

    def dxhat(r):
        return gy[r, j] * gamma[j]

    dvar = sp.Sum(dxhat(k) * (x[k, j] - mu[j]), (k, 0, N - 1)) * (-sp.Rational(1, 2)) \
        * (var[j] + eps) ** sp.Rational(-3, 2)
    dmu = sp.Sum(dxhat(k) * (-1 / sp.sqrt(var[j] + eps)), (k, 0, N - 1)) \
        + dvar * (-2 / N) * sp.Sum(x[k, j] - mu[j], (k, 0, N - 1))
    dx = dxhat(i) / sp.sqrt(var[j] + eps) + dvar * 2 * (x[i, j] - mu[j]) / N + dmu / N
    return dvar, dmu, dx


def _grad_bn(which: str):
    def run(_conv):
        if which == "x":
            f = fused_gradient("batchnorm", "x")
            i, j = f.idx
            return Equation(f.expr, _bn_doc_adjoints(i, j)[2], _BN_SIZES,
                            values=_batch_statistics, assumptions=_BN_ASSUMES)
        if which in ("gamma", "beta"):
            f = fused_gradient("batchnorm", which)
            (j,) = f.idx
            n = _bn_names()
            k = sp.Idx("k", size_symbol("N"))
            body = n["grad_y"][k, j] * (n["xhat"][k, j] if which == "gamma" else 1)
            return Equation(f.expr, sp.Sum(body, (k, 0, size_symbol("N") - 1)), _BN_SIZES)
        expr, (j,) = inlined_step("batchnorm", "backward", which)
        i = sp.Idx("i", size_symbol("N"))
        dvar, dmu, _ = _bn_doc_adjoints(i, j)
        return Equation(expr, dvar if which == "grad_var" else dmu, _BN_SIZES,
                        values=_batch_statistics, assumptions=_BN_ASSUMES)
    return run


_BN_EXAMPLE = {"N": 32 * 56 * 56, "d": 256}
_CONV_EXAMPLE = {"B": 32, "O": 256, "K": 128 * 3 * 3, "S": 56 * 56}


def _ratio(num: Query, den: Query, how: str) -> Query:
    def run(conv, stage="optimized"):
        a, b = num(conv, stage), den(conv, stage)
        return None if a is None or b is None else sp.nsimplify(sp.sympify(a) / sp.sympify(b))
    return Query(run, how, by_stage=num.by_stage or den.by_stage)


def _bn_fold_per_input(conv):
    """FLOPs of the fold per inference input: its count's change with the batch size."""
    tot = derivation("batchnorm-fold").counts("fold", conv).total
    return sp.expand(sum((sp.diff(tot, size_symbol(n)) for n in ("N", "B")), sp.Integer(0)))


CLAIMS: list[Claim] = [
    # ---- Normalization: BatchNorm ------------------------------------------------------
    claim("bn-mean", S_BN, r"1. Mean | Sum $N$ values, divide | $Nd + d \approx Nd$",
          "N*d + d", flops("batchnorm", "forward", ("mu_sum", "mu")),
          reason="a sum of N values is N - 1 additions per feature, and the division one "
                 "more: the document counts N additions and the division"),
    claim("bn-variance", S_BN, r"2. Variance | $(x-\mu)^2$: $Nd$ subs + $Nd$ squarings; sum; "
          r"divide | $3Nd$", "3*N*d", flops("batchnorm", "forward", ("var_sum", "var"))),
    claim("bn-normalize", S_BN, r"3. Normalize | $(x-\mu)$: already computed; "
          r"$\sqrt{\sigma^2+\epsilon}$: $d$ sqrts; divide: $Nd$ | $Nd + d$", "N*d + d",
          flops("batchnorm", "forward", ("xhat",)),
          reason="the d additions var + eps are not counted; as written x - mu "
                 "is computed again here"),
    claim("bn-scale-shift", S_BN, r"4. Scale+shift | $\gamma \hat{x} + \beta$: $Nd$ mults + "
          r"$Nd$ adds | $2Nd$", "mul: N*d, add: N*d",
          flops("batchnorm", "forward", ("y",), kinds=True)),
    claim("bn-forward-total", S_BN, r"Total forward | $\approx 7Nd + 2d$",
          "≈7*N*d + 2*d", flops("batchnorm", "forward",
                               exclude=("running_mean", "running_var"))),
    claim("bn-running-stats", S_BN, r"Running stats update | EMA for $\mu$, $\sigma^2$: "
          r"$2d$ mults + $2d$ adds | $4d$", "mul: 2*d, add: 2*d",
          flops("batchnorm", "forward", ("running_mean", "running_var"), kinds=True),
          reason="(1 - momentum)*running_mean + momentum*mu is two multiplications and an "
                 "addition per feature and "
                 "statistic (the document counts one multiplication); torch's unbiased "
                 "factor N/(N - 1) for the running variance adds only scalar work"),
    claim("bn-parameters", S_BN, r"Learnable parameters: $\gamma, \beta \in \R^C$ → $2C$ "
          r"parameters", "2*C elements",
          memory("batchnorm", "parameters", elements=True, rename={"d": size_symbol("C")})),
    claim("bn-running-values", S_BN, r"Running statistics (inference only): running mean + "
          r"running variance → $2C$ values", "2*C elements",
          memory("batchnorm", "state", elements=True, rename={"d": size_symbol("C")})),
    claim("bn-saved", S_BN, r"Memory for backprop: Must cache $\hat{\bm{x}}$ (normalized "
          r"values), $\mu$, $\sigma^2$ → $Nd + 2d$ elements", "N*d + 2*d elements",
          memory("batchnorm", "saved", elements=True),
          assumed=elements_of("batchnorm", ("xhat", "mu", "var")), assumption=BN_CACHE),
    claim("bn-gradient-gamma", S_BN, r"\pd{L}{\gamma_j} = \sum_{i=1}^{N} \pd{L}{y_{ij}} "
          r"\cdot \hat{x}_{ij}", "sum_i dL/dy_ij xhat_ij",
          computed(_grad_bn("gamma"), "batchnorm: fused gradient wrt gamma", False)),
    claim("bn-gradient-gamma-flops", S_BN, r"FLOPs: $Nd$ multiplications + $Nd$ additions = "
          r"$2Nd$", "mul: N*d, add: N*d",
          flops("batchnorm", "backward", ("grad_gamma",), kinds=True)),
    claim("bn-gradient-beta", S_BN, r"\pd{L}{\beta_j} = \sum_{i=1}^{N} \pd{L}{y_{ij}}",
          "sum_i dL/dy_ij", computed(_grad_bn("beta"), "batchnorm: fused gradient wrt beta",
                                     False)),
    claim("bn-gradient-beta-flops", S_BN, r"FLOPs: $Nd$ additions", "add: N*d",
          flops("batchnorm", "backward", ("grad_beta",), kinds=True)),
    claim("bn-gradient-var", S_BN, r"\pd{L}{\sigma_j^2} = \sum_{i=1}^{N}\pd{L}{\hat{x}_{ij}} "
          r"\cdot (x_{ij} - \mu_j) \cdot \left(-\frac{1}{2}\right)(\sigma_j^2+\epsilon)^{-3/2}",
          "sum_i dL/dxhat (x - mu) (-1/2)(var + eps)^(-3/2)",
          computed(_grad_bn("grad_var"), "batchnorm: step grad_var of the derived backward pass "
                                         "(steps it reads substituted)", False)),
    claim("bn-gradient-mu", S_BN, r"\pd{L}{\mu_j} = \sum_{i=1}^{N}\pd{L}{\hat{x}_{ij}} \cdot "
          r"\frac{-1}{\sqrt{\sigma_j^2+\epsilon}} + \pd{L}{\sigma_j^2}\cdot\frac{-2}{N}"
          r"\sum_{i=1}^{N}(x_{ij}-\mu_j)",
          "sum_i dL/dxhat (-1/sqrt(var + eps)) + dL/dvar (-2/N) sum_i (x - mu)",
          computed(_grad_bn("grad_mu"), "batchnorm: step grad_mu of the derived backward pass "
                                        "(steps it reads substituted)", False)),
    claim("bn-gradient-x", S_BN, r"\pd{L}{x_{ij}} = \pd{L}{\hat{x}_{ij}}\cdot\frac{1}"
          r"{\sqrt{\sigma_j^2+\epsilon}} + \pd{L}{\sigma_j^2}\cdot\frac{2(x_{ij}-\mu_j)}{N} + "
          r"\pd{L}{\mu_j}\cdot\frac{1}{N}",
          "dL/dxhat/sqrt(var + eps) + dL/dvar 2(x - mu)/N + dL/dmu/N",
          computed(_grad_bn("x"), "batchnorm: fused gradient wrt x", False)),
    claim("bn-backward", S_BN, r"Total backward FLOPs: approximately $\mathbf{10Nd + "
          r"\text{lower order terms}}$", "≈10*N*d", flops("batchnorm", "backward"),
          reason=BN_BACKWARD),
    # ---- BatchNorm example ------------------------------------------------------------
    claim("bn-example-n", S_BNX, r"$N = 32 \times 56 \times 56 = 100{,}352$", "100,352",
          example_figure("batchnorm-conv", "N = B*H*W")),
    claim("bn-example-forward", S_BNX, r"Forward: $7 \times 100{,}352 \times 256 \approx "
          r"180$M FLOPs", "≈180M", flops("batchnorm", "forward", at=_BN_EXAMPLE)),
    claim("bn-example-backward", S_BNX, r"Backward: $\approx 10 \times 100{,}352 \times 256 "
          r"\approx 257$M FLOPs", "≈257M", flops("batchnorm", "backward", at=_BN_EXAMPLE),
          reason="follows the 10*N*d of the backward total; " + BN_BACKWARD),
    claim("bn-example-conv", S_BNX, r"If the preceding 3×3 conv (128→256) has ~14.8G FLOPs",
          "~14.8G", flops("conv2d-im2col", "forward", at=_CONV_EXAMPLE),
          reason="the count is 2*B*O*K*S, K = 9*C_in, at the example's 56x56 outputs; "
                 "14.8G is the count at a 28x28 output, a quarter of it"),
    claim("bn-example-overhead", S_BNX, r"BatchNorm forward adds 180M / 14.8G ≈ 1.2% "
          r"overhead", "≈1.2%",
          computed(lambda conv: sp.Float(100 * count_at("batchnorm", "forward", conv,
                                                        **_BN_EXAMPLE)
                                         / count_at("conv2d-im2col", "forward", conv,
                                                    **_CONV_EXAMPLE)),
                   "batchnorm forward over conv2d-im2col forward at the example's sizes"),
          reason="follows the 14.8G convolution figure, a quarter of the derived count"),
    claim("bn-example-parameters", S_BNX, r"Parameters: $2 \times 256 = 512$", "512",
          memory("batchnorm", "parameters", elements=True, at={"d": 256})),
    claim("bn-example-conv-parameters", S_BNX, r"the conv layer's ~295K params", "~295K",
          memory("conv2d-im2col", "parameters", elements=True,
                 at={"O": 256, "K": 128 * 3 * 3})),
    # ---- Training vs inference ------------------------------------------------------------
    claim("bn-per-element-training", S_TI, r"Compute per element | ~7 FLOPs (forward)",
          "~7", flops("batchnorm", "forward", leading=True, per="N*d")),
    claim("bn-per-element-inference", S_TI, r"Compute per element | ... | ~4 FLOPs "
          r"(normalize + scale/shift)", "~4",
          flops("batchnorm", "inference", leading=True, per="N*d")),
    claim("bn-fold-equation", S_TI, r"the entire BN operation is a linear transform: $y = "
          r"\frac{\gamma}{\sigma}x + (\beta - \frac{\gamma\mu}{\sigma})$",
          "gamma/sigma x + (beta - gamma mu/sigma)",
          computed(_bn_folded, "batchnorm: its inference pass as one expression", False)),
    claim("bn-fold-zero", S_TI, r"This can be folded into the preceding conv/FC layer's "
          r"weights and biases, making BN zero-cost at inference", "0",
          computed(_bn_fold_per_input, "batchnorm-fold: the fold pass runs once, on the weights; "
                                       "its count's derivative with respect to the batch size "
                                       "(FLOPs per inference input)")),
    # ---- LayerNorm, GroupNorm --------------------------------------------------------
    claim("ln-parameters", S_LN, r"Parameters | $2d$ ($\gamma, \beta$)", "2*d elements",
          memory("layernorm", "parameters", elements=True)),
    claim("ln-forward", S_LN, r"Forward FLOPs | $\approx 7Bd$ (same order as BatchNorm)",
          "≈7*B*d", flops("layernorm", "forward")),
    claim("ln-same-as-bn", S_LN, r"Its per-element computational cost is identical to "
          r"BatchNorm", "1",
          _ratio(flops("layernorm", "forward", leading=True, per="B*d"),
                 flops("batchnorm", "forward", leading=True, per="N*d"),
                 "layernorm over batchnorm forward FLOPs per element (leading orders)")),
    claim("ln-inference", S_LN, r"it cannot be fused at inference — it always costs ~4 "
          r"FLOPs per element", "~4", flops("layernorm", "forward", leading=True,
                                             per="B*d"),
          reason="at inference LayerNorm still computes its per-sample mean and variance "
                 "(its forward pass); 4 per element is the normalize and scale/shift alone"),
    claim("gn-parameters", S_GN, r"Parameters: $2C$ (same as BatchNorm)", "2*C elements",
          memory("groupnorm", "parameters", elements=True,
                 rename={"Cg": size_symbol("C") / size_symbol("G")})),
    claim("gn-order", S_GN, r"FLOPs: Same order as BatchNorm", "O(B*C*H*W)",
          flops("groupnorm", "forward", rename={"Cg": size_symbol("C") / size_symbol("G"),
                                                "S": size_symbol("H") * size_symbol("W")})),
    # ---- Normalization comparison table ---------------------------------------------------
    claim("cmp-bn-parameters", S_NCMP, r"BatchNorm | ... | $2C$", "2*C elements",
          memory("batchnorm", "parameters", elements=True, rename={"d": size_symbol("C")})),
    claim("cmp-bn-flops", S_NCMP, r"BatchNorm | ... | $\sim 7NdC$", "~7*N*d*C",
          flops("batchnorm", "forward"),
          reason="d is the number of channels C (the document's own definition, d = C for "
                 "a conv layer), so N*d*C counts the channels twice"),
    claim("cmp-ln-parameters", S_NCMP, r"LayerNorm | ... | $2d$", "2*d elements",
          memory("layernorm", "parameters", elements=True)),
    claim("cmp-ln-flops", S_NCMP, r"LayerNorm | ... | $\sim 7Bd$", "~7*B*d",
          flops("layernorm", "forward")),
    claim("cmp-gn-parameters", S_NCMP, r"GroupNorm | ... | $2C$", "2*C elements",
          memory("groupnorm", "parameters", elements=True,
                 rename={"Cg": size_symbol("C") / size_symbol("G")})),
    claim("cmp-gn-flops", S_NCMP, r"GroupNorm | ... | $\sim 7BCHW$", "~7*B*C*H*W",
          flops("groupnorm", "forward", rename={"Cg": size_symbol("C") / size_symbol("G"),
                                                "S": size_symbol("H") * size_symbol("W")})),
    claim("cmp-in-parameters", S_NCMP, r"InstanceNorm | ... | $2C$", "2*C elements",
          memory("instancenorm", "parameters", elements=True)),
    claim("cmp-in-flops", S_NCMP, r"InstanceNorm | ... | $\sim 7BCHW$", "~7*B*C*H*W",
          flops("instancenorm", "forward", rename={"S": size_symbol("H") * size_symbol("W")})),
]
