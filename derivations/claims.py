"""The reference document's quantitative claims, as data, each with how the engine
derives the same quantity (``symflop claims``).

Every FLOP count, memory figure, worked-example number and stated gradient of the
document is one ``Claim``: its section, the text quoted, the value as the document
states it, and a function that derives the comparable quantity from the catalogue
under a counting convention.  The document's numbers are only compared here; no
derivation reads them.  The inputs of its worked examples (P = 25.6M parameters,
ResNet-50's backward of 7.6G FLOPs, B = 32, 56x56, ...) are the document's
premises and are used as such.  ``symflop.report.claims`` parses, compares and renders.

A claim's ``reason`` explains a difference (or a reconciliation) in one line; the
report shows it only when the claim does not simply agree.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import sympy as sp

from derivations import CATALOGUE, examples, resnet50
from symflop import Component, Fact, derive, total
from symflop.compose import derive_any, state_tensor_count
from symflop.cost.counting import leading_order
from symflop.report import claims as engine
from symflop.report.claims import Claim, Equation, Underivable
from symflop.rewrite.fused import inline
from symflop.rewrite.pipeline import as_written_stage

MIB, GIB = 2 ** 20, 2 ** 30
RESNET_P = 25_600_000        # the document's ResNet-50 parameter count (a premise)


# -- the catalogue, built and derived once ------------------------------------------

@cache
def _component(name: str, **options):
    build = CATALOGUE.get(name) or _AS_THE_DOCUMENT_WRITES[name]
    return build(**options) if options else build()


@cache
def _derivation(name: str, **options):
    return derive_any(_component(name, **options))


def _size(name: str) -> sp.Symbol:
    return engine.size_symbol(name)


def _dims(name: str, sizes: dict) -> dict:
    """Sizes by name -> the component's size symbols."""
    return {_size(k): v for k, v in sizes.items()}


class _Q:
    """A derivation of a claim: a function of the convention (and, with ``by_stage``, of
    the stage: the optimized program or the equations as written), with a one-line
    ``how``."""

    def __init__(self, fn, how: str, by_convention: bool = True, by_stage: bool = False):
        self.fn, self.how = fn, how
        self.by_convention, self.by_stage = by_convention, by_stage

    def __call__(self, conv: str, stage: str = "optimized"):
        return self.fn(conv, stage) if self.by_stage else self.fn(conv)


def _claim(id_: str, section: str, quote: str, claimed: str, q: _Q | None = None,
           reason: str = "", how: str = "", assumed: _Q | None = None, assumption: str = "",
           table: str = "", scope: str = "") -> Claim:
    if q is None:
        return Claim(id_, section, quote, claimed, how, None, False, reason)
    return Claim(id_, section, quote, claimed, how or q.how, q, q.by_convention, reason,
                 q.by_stage, assumed, assumption, table, scope)


def _cannot(id_: str, section: str, quote: str, claimed: str, reason: str) -> Claim:
    return _claim(id_, section, quote, claimed, None, reason)


# -- derivations of quantities --------------------------------------------------------

def _stage(name: str, pass_name: str, stage: str, **options) -> str:
    """The stage to read: as written, a derived pass is the one reverse mode derived."""
    if stage != "written":
        return stage
    d = _derivation(name, **options)
    return as_written_stage(d, pass_name) if hasattr(d, "stages") else stage


def _counts(name: str, pass_name: str, conv: str, steps: tuple[str, ...] = (),
            stage: str = "optimized", exclude: tuple[str, ...] = (), **options):
    """(total, by_kind) of a pass, or of the named steps of it (None if the stage has none
    of them: the optimized program may have inlined them), or of all but ``exclude``."""
    d = _derivation(name, **options)
    stage = _stage(name, pass_name, stage, **options)
    if not steps and not exclude:
        cnt = d.counts(pass_name, conv, stage)
        return cnt.total, dict(cnt.by_kind)
    pairs = [(st, cnt) for st, cnt in d.step_counts(pass_name, conv, stage)
             if (st.lhs in steps if steps else st.lhs not in exclude)]
    missing = set(steps) - {st.lhs for st, _ in pairs}
    if missing:
        if stage == "written" or stage == "differentiated":
            raise KeyError(f"{name}.{pass_name} has no step(s) {sorted(missing)}")
        return None
    tot = sp.expand(sp.Add(*[c.total for _, c in pairs]))
    kinds: dict = {}
    for _, c in pairs:
        for k, v in c.by_kind.items():
            kinds[k] = sp.expand(kinds.get(k, 0) + v)
    return tot, kinds


def flops(name: str, pass_name: str, steps: tuple[str, ...] = (), kinds: bool = False,
          at: dict | None = None, leading: bool = False, rename: dict | None = None,
          per: str | None = None, stage: str | None = None, exclude: tuple[str, ...] = (),
          **options) -> _Q:
    """FLOPs of ``name``'s pass (or of its ``steps``, or all but ``exclude``): total, or
    per kind with ``kinds``; at each stage, or at ``stage`` only.

    ``rename`` maps size names to the document's expressions, ``per`` divides by a
    product of sizes (a per-element figure), ``leading`` keeps the leading order,
    ``at`` evaluates at sizes."""
    def run(conv: str, at_stage: str = "optimized"):
        got = _counts(name, pass_name, conv, steps, stage or at_stage, exclude, **options)
        if got is None:
            return None
        tot, by_kind = got
        value = by_kind if kinds else tot

        def post(e):
            e = sp.sympify(e)
            if leading or rename:
                e = leading_order(e)
            if rename:
                e = sp.expand(e.xreplace({_size(k): v for k, v in rename.items()}))
            if per:
                e = sp.expand(e / engine.parse_polynomial(per))
            if at:
                e = e.xreplace(_dims(name, at))
            return e

        return {k: post(v) for k, v in value.items()} if kinds else post(value)

    where = f"steps {', '.join(steps)} of " if steps else ""
    if exclude:
        where = f"all but {', '.join(exclude)} of "
    what = "counts per kind" if kinds else ("leading order" if leading or rename else "FLOPs")
    how = f"{name}: {what} of {where}the {pass_name} pass"
    if stage:
        how += f" ({stage} stage)"
    if per:
        how += f", per element (/ {per})"
    if rename:
        how += ", with " + ", ".join(f"{k} = {v}" for k, v in rename.items())
    if at:
        how += " at " + ", ".join(f"{k}={v:,}" for k, v in at.items())
    return _Q(run, how, by_stage=stage is None)


def memory(name: str, what: str | tuple[str, ...], tensors: tuple[str, ...] = (),
           elements: bool = False, at: dict | None = None, rename: dict | None = None,
           **options) -> _Q:
    """Bytes (float32) or elements of ``what`` (parameters, gradients, state, saved); what
    is saved for backward depends on the stage, the rest does not."""
    whats = (what,) if isinstance(what, str) else what

    def run(_conv: str, stage: str = "optimized"):
        d = _derivation(name, **options)
        mem = d.memory_at("differentiated" if stage == "written" else stage) \
            if hasattr(d, "memory_at") else d.memory
        out = sp.Integer(0)
        for w in whats:
            if tensors:
                out += sum((n for t, n in getattr(mem, w) if t in tensors), sp.Integer(0))
            else:
                out += mem.elements(w)
        out = sp.expand(out if elements else 4 * out)
        if rename:
            out = sp.expand(out.xreplace({_size(k): v for k, v in rename.items()}))
        return out.xreplace(_dims(name, at)) if at else out

    unit = "elements" if elements else "bytes (float32)"
    how = f"{name}: {unit} of {' + '.join(whats)}"
    if tensors:
        how += f" ({', '.join(tensors)})"
    if at:
        how += " at " + ", ".join(f"{k}={v:,}" for k, v in at.items())
    return _Q(run, how, by_convention=False, by_stage="saved" in whats)


def _fn(fn, how: str, by_convention: bool = True) -> _Q:
    return _Q(fn, how, by_convention)


def _count_at(name: str, pass_name: str, conv: str, stage: str = "optimized",
              **sizes) -> int:
    stage = _stage(name, pass_name, stage)
    return int(_derivation(name).count_function(pass_name, conv, stage)(**sizes))


# -- stated equations -----------------------------------------------------------------

def _t(name: str, tensor: str):
    """The SymPy object standing for ``tensor`` of component ``name``."""
    return _component(name).tensors[tensor].symbol


def _base(expr: sp.Expr, name: str) -> sp.IndexedBase:
    for b in expr.atoms(sp.IndexedBase):
        if str(b.label) == name:
            return b
    raise KeyError(name)


def _fused(name: str, wrt: str):
    return _derivation(name).fused[wrt]


def _inlined(name: str, pass_name: str, target: str) -> tuple[sp.Expr, tuple]:
    """A step of a derived program with every step it reads from the same program
    substituted in: the quantity as one expression of the forward tensors."""
    d = _derivation(name)
    prog = d.stage(as_written_stage(d, pass_name)).programs[pass_name]
    defs = {st.lhs: st for st in prog.steps}
    st = defs[target]
    return inline(st.rhs(), defs, prog.tensors, exclude=target), st.idx


def _equation(derived: sp.Expr, claimed: sp.Expr, sizes: dict, **kw) -> Equation:
    return Equation(derived, claimed, sizes, **kw)


def _grad_mse(_conv):
    f = _fused("mse", "yhat")
    i, j = f.idx
    B, d = _size("B"), _size("d")
    yhat, y = _t("mse", "yhat"), _t("mse", "y")
    return _equation(f.expr, 2 / (B * d) * (yhat[i, j] - y[i, j]), {B: 2, d: 3},
                     assumptions=f.assumptions)


def _grad_mse_proportional(_conv):
    f = _fused("mse", "yhat")
    i, j = f.idx
    yhat, y = _t("mse", "yhat"), _t("mse", "y")
    return _equation(f.expr, yhat[i, j] - y[i, j], {_size("B"): 2, _size("d"): 3},
                     proportional=True)


def _sigmoid(u):
    return 1 / (1 + sp.exp(-u))


def _grad_bce(_conv):
    f = _fused("bce", "z")
    (i,) = f.idx
    z, y = _t("bce", "z"), _t("bce", "y")
    B = _size("B")
    return _equation(f.expr, (_sigmoid(z[i]) - y[i]) / B, {B: 3}, assumptions=f.assumptions)


def _softmax(z, i, k, classes):
    c = sp.Idx("c", classes)
    return sp.exp(z[i, k]) / sp.Sum(sp.exp(z[i, c]), (c, 0, classes - 1))


def _grad_ce(_conv):
    f = _fused("cross-entropy", "z")
    i, k = f.idx
    z, y = _t("cross-entropy", "z"), _t("cross-entropy", "y")
    B, C = _size("B"), _size("C")
    return _equation(f.expr, (_softmax(z, i, k, C) - y[i, k]) / B, {B: 2, C: 3},
                     assumptions=f.assumptions)


def _one_for(base: str):
    def values(v: dict) -> dict:
        return {leaf: (1.0 if isinstance(leaf, sp.Indexed) and str(leaf.base) == base else x)
                for leaf, x in v.items()}
    return values


def _grad_ce_true_class(_conv):
    """One sample (B = 1) whose true class is k: dL/dz_k = yhat_k - 1."""
    f = _fused("cross-entropy", "z")
    i, k = f.idx
    z = _t("cross-entropy", "z")
    B, C = _size("B"), _size("C")
    return _equation(f.expr, _softmax(z, i, k, C) - 1, {B: 1, C: 3}, at=({i: 0, k: 1},),
                     values=_one_for("y"),
                     assumptions=f.assumptions + ("B = 1, y one-hot at the true class k",))


def _one_hot_rows(v: dict) -> dict:
    """y[i, k] = 1 for k = i mod C, else 0: a one-hot label per sample."""
    width = 1 + max(int(leaf.indices[1]) for leaf in v
                    if isinstance(leaf, sp.Indexed) and str(leaf.base) == "y")
    return {leaf: (float(int(leaf.indices[1]) == int(leaf.indices[0]) % width)
                   if isinstance(leaf, sp.Indexed) and str(leaf.base) == "y" else x)
            for leaf, x in v.items()}


def _ce_one_hot_loss(_conv):
    """The forward pass as one expression against -1/B sum_i log(yhat_{i, k_i})."""
    expr, _ = _inlined("cross-entropy", "forward", "L")
    z, y = _t("cross-entropy", "z"), _t("cross-entropy", "y")
    B, C = _size("B"), _size("C")
    i, k = sp.Idx("i", B), sp.Idx("k", C)
    claimed = -sp.Sum(y[i, k] * sp.log(_softmax(z, i, k, C)), (i, 0, B - 1), (k, 0, C - 1)) / B
    return _equation(expr, claimed, {B: 2, C: 3}, values=_one_hot_rows,
                     assumptions=("y one-hot: y[i, k_i] = 1, the log picks yhat[i, k_i]",))


def _bn_folded(_conv):
    """BatchNorm's inference pass against gamma/sigma x + (beta - gamma mu/sigma)."""
    expr, (i, j) = _inlined("batchnorm", "inference", "y_inf")
    x, gamma, beta = (_t("batchnorm", n) for n in ("x", "gamma", "beta"))
    mu, var = _t("batchnorm", "running_mean"), _t("batchnorm", "running_var")
    sigma = sp.sqrt(var[j] + sp.Symbol("epsilon", positive=True))
    claimed = gamma[j] / sigma * x[i, j] + (beta[j] - gamma[j] * mu[j] / sigma)
    return _equation(expr, claimed, _BN_SIZES,
                     assumptions=("sigma = sqrt(running_var + epsilon)",))


def _mse_on_sigmoid() -> Component:
    """MSE on a sigmoid output, L = 1/B sum_i (sigma(z_i) - y_i)^2: the document's
    "MSE gradient ... must pass through sigma'(z_k)" (Goodfellow et al. 2016, 6.2.2.2)."""
    c = Component("mse-on-sigmoid", "Losses", "MSE on a sigmoid output")
    B = c.dim("B")
    i = c.index(i=B)
    z, y = c.input("z", (B,)), c.target("y", (B,))
    L = c.output("L")
    c.assign("forward", L, total((_sigmoid(z[i]) - y[i]) ** 2, i) / B)
    c.set_gradient(L, (z,))
    return c


def _grad_mse_sigmoid(_conv):
    c = _mse_on_sigmoid()
    f = derive(c).fused["z"]
    (i,) = f.idx
    yhat = _sigmoid(c.tensors["z"].symbol[i])
    return _equation(f.expr, (yhat - 1) * yhat * (1 - yhat), {_size("B"): 3},
                     proportional=True, values=_one_for("y"),
                     assumptions=("y = 1 (the true class)",))


def _grad_dropout(_conv):
    f = _fused("dropout", "a")
    i, j = f.idx
    gy, mask = _base(f.expr, "grad_y"), _t("dropout", "mask")
    p = sp.Symbol("p", positive=True)
    return _equation(f.expr, gy[i, j] * mask[i, j] / (1 - p), {_size("B"): 2, _size("n"): 3})


def _grad_penalty(name: str, term):
    def run(_conv):
        f = _fused(name, "w")
        (p,) = f.idx
        w, lam = _t(name, "w"), sp.Symbol("lam", positive=True)
        return _equation(f.expr, term(lam, w[p]), {_size("P"): 3})
    return run


def _weight_decay_equivalence(_conv):
    """SGD on the loss plus the L2 penalty: theta - lr*(g + grad of the penalty)."""
    sgd = _component("sgd")
    step = sgd.passes["step"].assignments[-1]
    (p,) = step.idx
    theta, g = _t("sgd", "theta"), _t("sgd", "g")
    f = _fused("l2", "w")
    penalty = f.expr.xreplace({_t("l2", "w")[f.idx]: theta[p]})
    update = step.rhs.xreplace({g[p]: g[p] + penalty})
    lr, lam = sp.Symbol("lr", positive=True), sp.Symbol("lam", positive=True)
    return _equation(update, theta[p] * (1 - lr * lam) - lr * g[p], {_size("P"): 3})


def _sgd_weight_decay() -> Component:
    """SGD with L2 as weight decay, written as the document writes it:
    w <- w (1 - lr*lam) - lr*g."""
    c = Component("sgd-weight-decay", "Optimizers", "SGD step with weight decay")
    P = c.dim("P")
    p = c.index(p=P)
    theta, g = c.parameter("theta", (P,)), c.input("g", (P,))
    lr, lam = c.hyper("lr lam")
    c.assign("step", theta[p], theta[p] * (1 - lr * lam) - lr * g[p])
    return c


def _weight_decay_extra(conv):
    wd = derive(_sgd_weight_decay()).counts("step", conv).by_kind
    sgd = _derivation("sgd").counts("step", conv).by_kind
    return {k: sp.expand(wd.get(k, 0) - sgd.get(k, 0)) for k in set(wd) | set(sgd)}


def _bn_names():
    f = _fused("batchnorm", "x")
    names = {n: _t("batchnorm", n) for n in ("x", "mu", "var", "gamma", "xhat")}
    names["grad_y"] = _base(f.expr, "grad_y")
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


_BN_SIZES = {_size("N"): 3, _size("d"): 2}
_BN_ASSUMES = ("mu, var: the batch mean and variance of x",)


def _bn_doc_adjoints(i, j):
    """The document's backward equations for BatchNorm, as written there."""
    n = _bn_names()
    x, mu, var, gamma, gy, eps = (n[k] for k in ("x", "mu", "var", "gamma", "grad_y", "eps"))
    N = _size("N")
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
            f = _fused("batchnorm", "x")
            i, j = f.idx
            return _equation(f.expr, _bn_doc_adjoints(i, j)[2], _BN_SIZES,
                             values=_batch_statistics, assumptions=_BN_ASSUMES)
        if which in ("gamma", "beta"):
            f = _fused("batchnorm", which)
            (j,) = f.idx
            n = _bn_names()
            k = sp.Idx("k", _size("N"))
            body = n["grad_y"][k, j] * (n["xhat"][k, j] if which == "gamma" else 1)
            return _equation(f.expr, sp.Sum(body, (k, 0, _size("N") - 1)), _BN_SIZES)
        expr, (j,) = _inlined("batchnorm", "backward", which)
        i = sp.Idx("i", _size("N"))
        dvar, dmu, _ = _bn_doc_adjoints(i, j)
        return _equation(expr, dvar if which == "grad_var" else dmu, _BN_SIZES,
                         values=_batch_statistics, assumptions=_BN_ASSUMES)
    return run


# -- Adam's first step, evaluated from its equations ----------------------------------

@cache
def _adam_first_step() -> dict:
    """Adam's step equations at t = 0 -> 1 from zero moments, one parameter, with the
    catalogue's beta1, beta2 (exact rationals) and a gradient g > 0."""
    c = _component("adam")
    g = sp.Symbol("g", positive=True)
    env: dict = {"m": sp.Integer(0), "v": sp.Integer(0), "t": sp.Integer(0), "g": g,
                 "theta": sp.Symbol("theta")}
    hyper = {k: sp.Rational(repr(c.defaults[k])) for k in ("beta1", "beta2")}
    for a in c.passes["step"].assignments:
        rhs = a.rhs.xreplace({x: env[str(x.base)] for x in a.rhs.atoms(sp.Indexed)})
        rhs = rhs.xreplace({s: env.get(s.name, hyper.get(s.name, s))
                            for s in rhs.atoms(sp.Symbol) if not isinstance(s, sp.Idx)})
        env[a.lhs.name] = sp.simplify(rhs)
    return env


def _adam_number(expr_of_env, how: str) -> _Q:
    def run(_conv):
        env = _adam_first_step()
        return sp.nsimplify(expr_of_env(env, env["g"]))
    return _Q(run, "adam: its step equations evaluated at t = 1 from m = v = 0 "
              f"(beta1, beta2 the catalogue's defaults): {how}", by_convention=False)


# -- figures of the worked examples ---------------------------------------------------

def _example_row(example: str, label: str) -> float:
    ex = examples.EXAMPLES[example]()
    for r in ex.rows:
        if r.label == label:
            return r.value
    raise KeyError(f"{example} has no row {label!r}")


def _example(example: str, label: str, scale: float = 1.0) -> _Q:
    return _Q(lambda _c: sp.Float(_example_row(example, label) * scale),
              f"example {example}: {label}", by_convention=False)


_RESNET_P_ROUNDED = (f"P = {RESNET_P / 1e6:g}M, as the document rounds ResNet-50's "
                     f"{resnet50.parameters():,} parameters")

def _resnet_backward_reason() -> str:
    macs = [resnet50.at(resnet50.network(f"macs_{p}"), 1) / 1e9 for p in ("forward", "backward")]
    return ("the document's figure is twice the ResNet paper's 3.8G forward, which counts "
            "multiply-adds (and is of ResNet v1, the stride on the first 1x1 convolution); "
            "a multiply-add is two FLOPs here, and the ResNet-50 this project ships (v1.5, "
            f"torchvision's) runs {macs[0]:.3g}G multiply-adds forward and {macs[1]:.3g}G "
            "backward per image in its products and convolutions; the table's percentages "
            "use 7.6G as the document gives it")


_BN_EXAMPLE = {"N": 32 * 56 * 56, "d": 256}
_CONV_EXAMPLE = {"B": 32, "O": 256, "K": 128 * 3 * 3, "S": 56 * 56}


def _resnet_percent(name: str) -> _Q:
    return _Q(lambda conv, stage: sp.Float(100 * _count_at(name, "step", conv, stage,
                                                           P=RESNET_P)
                                           / resnet50.backward_one_image()),
              f"{name}: step FLOPs at P = 25.6M over ResNet-50's backward FLOPs of one "
              "image (symflop estimate)", by_stage=True)


_SHARE_REASON = ("the document divides by its 7.6G backward (resnet-backward), a count of "
                 "multiply-adds, while the optimizer's step is counted in FLOPs: two bases")


def _hyper(name: str, keys: tuple[str, ...], what: str) -> _Q:
    def run(_conv):
        c = _component(name)
        shown = ", ".join(f"{k} = {c.defaults[k]:g}" for k in keys)
        return Underivable(f"{what} is a choice, not a consequence of the equations "
                           f"(the catalogue's {name} defaults: {shown})")
    return _Q(run, "", by_convention=False)


def _ratio(num: _Q, den: _Q, how: str) -> _Q:
    def run(conv, stage="optimized"):
        a, b = num(conv, stage), den(conv, stage)
        return None if a is None or b is None else sp.nsimplify(sp.sympify(a) / sp.sympify(b))
    return _Q(run, how, by_stage=num.by_stage or den.by_stage)




def _backward_factor(conv) -> sp.Expr:
    """k in backward = k * forward, from the derived linear layer (leading orders)."""
    fwd = leading_order(_derivation("linear").counts("forward", conv).total)
    bwd = leading_order(_derivation("linear").counts("backward", conv).total)
    return sp.nsimplify(bwd / fwd)


def _largest_memory(_conv) -> str:
    ex = examples.EXAMPLES["resnet50-memory"]()
    sizes = {r.label: r.value * (GIB if r.unit == "GiB" else MIB)
             for r in ex.rows if r.label != "total"}
    return max(sizes, key=lambda k: sizes[k])


def _m_opt(_conv) -> str:
    P = _size("P")
    return ", ".join(str(state_tensor_count(_component(n), P))
                     for n in ("sgd", "momentum", "adam"))


def _lowest(_conv) -> str:
    from derivations import optimizers
    rows = []
    for name in optimizers.COMPONENTS:
        d = _derivation(name)
        rows.append((leading_order(d.counts("step").total).subs(_size("P"), 1),
                     d.memory.elements("state").subs(_size("P"), 1), name))
    low_flops = min(r[0] for r in rows)
    low_state = min(r[1] for r in rows)
    return ", ".join(r[2] for r in rows if r[0] == low_flops and r[1] == low_state)


def _schedules_order(_conv):
    from derivations import schedules
    return sp.Add(*[_derivation(n).counts("schedule").total for n in schedules.COMPONENTS])


def _bn_fold_per_input(conv):
    """FLOPs of the fold per inference input: its count's change with the batch size."""
    tot = _derivation("batchnorm-fold").counts("fold", conv).total
    return sp.expand(sum((sp.diff(tot, _size(n)) for n in ("N", "B")), sp.Integer(0)))


def _difference(a: _Q, b: _Q, how: str, by_convention: bool = True) -> _Q:
    def run(conv, stage="optimized"):
        x, y = a(conv, stage), b(conv, stage)
        return None if x is None or y is None else sp.expand(sp.sympify(x) - sp.sympify(y))
    return _Q(run, how, by_convention, by_stage=a.by_stage or b.by_stage)


# -- the quantities as the document states them (its assumptions) -------------------------

def _ce_from_probabilities(fact: Fact) -> Callable[[], Component]:
    """Cross-entropy from the probabilities p, given (the document's tables count from
    yhat): L = -1/B sum_ik y log p."""
    def build() -> Component:
        c = Component("ce-from-probabilities", "Losses", "cross-entropy of given probabilities")
        B, C = c.dim("B C")
        i, k = c.index(i=B, k=C)
        p, y = c.input("p", (B, C)), c.target("y", (B, C), facts=(fact,))
        L = c.output("L")
        c.assign("forward", L, -total(y[i, k] * sp.log(p[i, k]), i, k) / B)
        return c
    return build


def _softmax_kept(fact: Fact) -> Callable[[], Component]:
    """The cross-entropy gradient with the softmax p kept from the forward pass: (p - y)/B."""
    def build() -> Component:
        c = Component("ce-gradient-from-softmax", "Losses", "(p - y)/B, p given")
        B, C = c.dim("B C")
        i, k = c.index(i=B, k=C)
        p, y = c.input("p", (B, C)), c.target("y", (B, C), facts=(fact,))
        g = c.output("g", (B, C))
        c.assign("softmax-kept", g[i, k], (p[i, k] - y[i, k]) / B)
        return c
    return build


def _focal_from_pt() -> Component:
    """The document's focal formula with p_t and alpha_t given: -alpha_t (1 - p_t)^gamma
    log p_t, averaged over the B*C elements."""
    c = Component("focal-from-pt", "Losses", "focal loss of given p_t and alpha_t")
    B, C = c.dim("B C")
    i, k = c.index(i=B, k=C)
    pt, at = c.input("p_t", (B, C)), c.input("alpha_t", (B, C))
    gamma = c.hyper("gamma")
    L = c.output("L")
    c.assign("forward", L, -total(at[i, k] * (1 - pt[i, k]) ** gamma * sp.log(pt[i, k]),
                                  i, k) / (B * C))
    return c


def _kl_from_probabilities() -> Component:
    """KL(p || q) with q given as probabilities: sum p (log p - log q), batch mean."""
    c = Component("kl-from-probabilities", "Losses", "KL divergence of given q")
    B, C = c.dim("B C")
    i, k = c.index(i=B, k=C)
    p = c.target("p", (B, C), facts=(Fact.ROWS_SUM_TO_ONE,))
    q = c.input("q", (B, C))
    L = c.output("L")
    c.assign("forward", L, total(p[i, k] * (sp.log(p[i, k]) - sp.log(q[i, k])), i, k) / B)
    return c


_AS_THE_DOCUMENT_WRITES = {
    "ce-from-probabilities": _ce_from_probabilities(Fact.ONE_HOT),
    "ce-soft-from-probabilities": _ce_from_probabilities(Fact.ROWS_SUM_TO_ONE),
    "ce-gradient-from-softmax": _softmax_kept(Fact.ONE_HOT),
    "ce-soft-gradient-from-softmax": _softmax_kept(Fact.ROWS_SUM_TO_ONE),
    "focal-from-pt": _focal_from_pt,
    "kl-from-probabilities": _kl_from_probabilities,
}


def _plus_data_gradient(name: str) -> _Q:
    """The penalty's gradient plus its addition to the data gradient (P additions)."""
    def run(conv, stage="optimized"):
        return sp.expand(flops(name, "gradient")(conv, stage) + _size("P"))
    return _Q(run, f"{name}: gradient FLOPs plus P additions to the data gradient",
              by_stage=True)


def _elements_of(name: str, tensors: tuple[str, ...], unit: int = 1) -> _Q:
    c = _component(name)
    total_ = sp.Add(*[sp.Mul(*c.tensors[n].shape) for n in tensors])
    return _Q(lambda _conv: sp.expand(unit * total_), f"{name}: elements of "
              f"{', '.join(tensors)}", by_convention=False)


# -- the claims -----------------------------------------------------------------------

_WITH_DATA_GRADIENT = ("the total includes adding the penalty's gradient to the data "
                       "gradient (P additions), as the document's sum does; the component "
                       "is the penalty's gradient alone")
_BN_CACHE = ("caching xhat, mu and var, as the document does (the optimized backward reads "
             "xhat and var only)")
_BN_BACKWARD = ("as written, the document's own backward equations (dL/dgamma and dL/dbeta "
                "included) keep the sum of (x - mu), which is zero, and compute x - mu again; "
                "optimized, that sum is gone (centered-sum), x - mu is read as "
                "xhat*sqrt(var + eps) and the sums of dL/dgamma and dL/dbeta serve dL/dx "
                "too; the document's figure is neither")
_BIAS_POWER = ("1 - beta^t is a power and a subtraction; the document leaves the power out, "
               "which only XLA's convention does, and under it the other rows of Adam's table "
               "(the total) no longer hold")
_PCT = ("a share of the whole training step needs the network's own forward and backward "
        "FLOPs (F, kF), which the engine takes as given, not derived, and the document "
        "names no configuration for this column")

S_MSE = "Losses: mean squared error"
S_CE = "Losses: cross-entropy"
S_LOSS = "Losses: other losses"
S_SGD = "Optimizers: SGD"
S_MOM = "Optimizers: momentum"
S_NAG = "Optimizers: Nesterov"
S_ADAG = "Optimizers: AdaGrad"
S_RMS = "Optimizers: RMSProp"
S_ADAM = "Optimizers: Adam"
S_BIAS = "Optimizers: Adam bias correction example"
S_ADAMW = "Optimizers: AdamW"
S_CMP = "Optimizers: comparison table"
S_25M = "Optimizers: 25.6M-parameter table"
S_L1 = "Regularization: L1"
S_L2 = "Regularization: L2"
S_DROP = "Regularization: dropout"
S_AUG = "Regularization: data augmentation"
S_BN = "Normalization: BatchNorm"
S_BNX = "Normalization: BatchNorm example"
S_TI = "Normalization: training vs inference"
S_LN = "Normalization: LayerNorm"
S_GN = "Normalization: GroupNorm"
S_NCMP = "Normalization: comparison table"
S_LR = "Learning-rate schedules"
S_SUM = "Summary table"
S_MEM = "Memory total"

CLAIMS: list[Claim] = [
    # ---- Losses: MSE -------------------------------------------------------------
    _claim("mse-gradient", S_MSE,
           r"\pd{L}{\hat{y}_{ij}} = \frac{2}{Bd}(\hat{y}_{ij} - y_{ij})",
           "2/(B d) (yhat - y)", _fn(_grad_mse, "mse: fused gradient wrt yhat", False)),
    _claim("mse-forward-sub-and-sum", S_MSE,
           r"Difference: $\hat{y}_{ij} - y_{ij}$ | $Bd$ subtractions; "
           r"Sum over $d$ and $B$ | $Bd - 1$ additions",
           "add: B*d + B*d - 1", flops("mse", "forward", ("L_sum",), kinds=True),
           how="mse: additions and subtractions (one kind, add) of the summed step L_sum"),
    _claim("mse-forward-square", S_MSE, r"Square: $(\cdot)^2$ | $Bd$ multiplications",
           "mul: B*d", flops("mse", "forward", ("L_sum",), kinds=True)),
    _claim("mse-forward-division", S_MSE, r"Division by $Bd$ | 1 division",
           "div: 1", flops("mse", "forward", ("L",), kinds=True)),
    _claim("mse-forward-total", S_MSE, r"Total forward | $\approx 3Bd$ FLOPs", "≈3*B*d",
           flops("mse", "forward")),
    _claim("mse-gradient-flops", S_MSE,
           r"Gradient computation | $Bd$ subtractions + $Bd$ multiplications = $2Bd$ FLOPs",
           "add: B*d, mul: B*d", flops("mse", "gradient", kinds=True)),
    _claim("mse-gradient-linear", S_MSE,
           r"The gradient $\propto (\hat{y} - y)$ pushes predictions toward targets linearly",
           "∝ (yhat - y)", _fn(_grad_mse_proportional, "mse: fused gradient wrt yhat", False)),
    # ---- Losses: cross-entropy ---------------------------------------------------------
    _claim("bce-gradient", S_CE,
           r"Gradient w.r.t. logit $z_i$ (fused with sigmoid); "
           r"\pd{L}{z_i} = \frac{1}{B}(\hat{y}_i - y_i)",
           "(sigmoid(z) - y)/B", _fn(_grad_bce, "bce: fused gradient wrt z", False)),
    _claim("ce-gradient", S_CE,
           r"Gradient w.r.t. logits (fused with softmax); "
           r"\pd{L}{\bm{z}_i} = \frac{1}{B}(\hat{\bm{y}}_i - \bm{y}_i)",
           "(softmax(z) - y)/B", _fn(_grad_ce, "cross-entropy: fused gradient wrt z", False)),
    _claim("ce-one-hot-loss", S_CE,
           r"For one-hot labels (standard case): $L_{\text{CE}} = -\frac{1}{B}\sum_{i=1}^{B}"
           r"\log(\hat{y}_{i,k_i})$", "-1/B sum_i log(yhat_{i,k_i})",
           _fn(_ce_one_hot_loss, "cross-entropy: its forward pass as one expression "
                                 "(log-sum-exp substituted)", False)),
    _claim("bce-forward", S_CE, r"BCE (one-hot) | $\approx 4B$ (2 logs, 2 mults, sum)",
           "≈4*B", flops("bce", "forward")),
    _claim("bce-gradient-flops", S_CE, r"BCE (one-hot) | ... | $B$ (subtraction)", "B",
           flops("bce", "gradient"),
           reason="the optimized gradient from the logits is (sigmoid(z) - y)/B: a sigmoid, a "
                  "subtraction and the division by B per sample; the document counts the "
                  "subtraction alone, with yhat given and the 1/B left out"),
    _claim("ce-forward", S_CE, r"CE, one-hot labels | $\approx 2B$ (1 log per sample + sum)",
           "≈2*B", flops("cross-entropy", "forward"),
           assumed=flops("ce-from-probabilities", "forward"),
           assumption="the probabilities yhat given, as the document's table counts (from "
                      "the logits the log-sum-exp comes first)"),
    _claim("ce-gradient-flops", S_CE, r"CE, one-hot labels | ... | $BC$ (subtraction)", "B*C",
           flops("cross-entropy", "gradient"),
           assumed=flops("ce-gradient-from-softmax", "softmax-kept"),
           assumption="the softmax yhat kept from the forward pass; (yhat - y)/B with "
                      "one-hot y subtracts at the labels only"),
    _claim("ce-soft-forward", S_CE, r"CE, soft labels | $\approx 3BC$ (C logs per sample)",
           "≈3*B*C", flops("cross-entropy-soft", "forward"),
           assumed=flops("ce-soft-from-probabilities", "forward"),
           assumption="the probabilities yhat given, as the document's table counts"),
    _claim("ce-soft-gradient-flops", S_CE, r"CE, soft labels | ... | $BC$ (subtraction)",
           "B*C", flops("cross-entropy-soft", "gradient"),
           assumed=flops("ce-soft-gradient-from-softmax", "softmax-kept"),
           assumption="the softmax yhat kept from the forward pass",
           reason="even with the softmax kept, (yhat - y)/B is a subtraction and a division "
                  "by B per element with soft targets; the document counts the subtraction "
                  "alone"),
    _claim("ce-logsumexp", S_CE,
           r"This log-sum-exp trick costs $\approx 3C$ FLOPs per sample "
           r"(max + shift + sum of exp + log)", "≈3*C",
           flops("cross-entropy", "forward", ("lse_sum_max", "lse_sum_shifted"),
                 stage="code", per="B"),
           reason="the code stage computes the max, the shift, the exponentials and their "
                  "sum (the log is taken once per sample, in the loss's sum over the batch; "
                  "the backward reads the max and the sum, not a log-sum-exp); the document "
                  "counts the sum of exponentials as one operation per class"),
    _claim("ce-gradient-wrong-prediction", S_CE,
           r"CE gradient: $\pd{L}{z_k} \approx \hat{y}_k - 1 \approx -1$",
           "yhat_k - 1", _fn(_grad_ce_true_class, "cross-entropy: fused gradient wrt z, "
                                                  "one sample, true class k", False)),
    _claim("mse-gradient-through-sigmoid", S_CE,
           r"MSE gradient: $\pd{L}{\hat{y}_k} \propto \hat{y}_k - 1 \approx -1$, but this "
           r"must pass through $\sigma'(z_k)$",
           "∝ (yhat_k - 1) sigmoid'(z_k)",
           _fn(_grad_mse_sigmoid, "MSE on a sigmoid output (written here): fused gradient "
                                  "wrt the logit", False)),
    _cannot("ce-faster-convergence", S_CE,
            r"Cross-entropy's gradient is stronger when predictions are badly wrong, which "
            r"leads to faster convergence and therefore fewer total training FLOPs",
            "fewer training FLOPs",
            "the number of steps to a given accuracy is an empirical outcome of training, "
            "not a consequence of one step's equations"),
    # ---- Losses: other losses ----------------------------------------------------------
    _claim("hinge-forward", S_LOSS, r"Hinge | $\max(0, 1 - y \cdot \hat{y})$ | $3B$ "
           r"(mult, sub, max)", "mul: B, add: B, compare: B", flops("hinge", "forward",
                                                                   kinds=True),
           scope="the document counts the per-sample loss max(0, 1 - y yhat); the tool "
                 "counts the batch's loss, its mean included (B - 1 additions, a division)"),
    _claim("huber-forward", S_LOSS, r"Huber | ... | $\approx 4Bd$", "≈4*B*d",
           flops("huber", "forward"),
           reason="vectorized code evaluates both branches of the Piecewise per element "
                  "(yhat - y, (yhat - y)^2/2, |yhat - y|, delta*|yhat - y| - delta^2/2), "
                  "the comparison with delta "
                  "and the select, then the mean; the document counts one branch"),
    _claim("focal-forward", S_LOSS, r"Focal | $-\alpha_t(1-\hat{y}_t)^\gamma "
           r"\log(\hat{y}_t)$ | $\approx 6BC$", "≈6*B*C", flops("focal", "forward"),
           assumed=flops("focal-from-pt", "forward"),
           assumption="p_t and alpha_t given, as the document's formula reads (from the "
                      "logits, as torchvision defines it, the sigmoid, both logs and the "
                      "blends come first)"),
    _claim("kl-forward", S_LOSS, r"KL Divergence | $\sum p(x)\log\frac{p(x)}{q(x)}$ | "
           r"$\approx 5BC$", "≈5*B*C", flops("kl-div", "forward"),
           assumed=flops("kl-from-probabilities", "forward"),
           assumption="q given as probabilities and its log taken (torch's kl_div takes "
                      "log q, one log fewer per element)"),
    # ---- Optimizers ---------------------------------------------------------------------
    _claim("sgd-state", S_SGD, r"Extra state memory | 0", "0", memory("sgd", "state")),
    _claim("sgd-flops", S_SGD, r"Per-step FLOPs | $P$ multiplications (scaling) + $P$ "
           r"subtractions = $2P$", "mul: P, add: P", flops("sgd", "step", kinds=True)),
    _claim("sgd-lowest", S_SGD, r"SGD is the simplest optimizer with the lowest memory "
           r"footprint and per-step cost", "sgd",
           _fn(_lowest, "every optimizer of the catalogue: the one(s) with both the least "
                        "state and the fewest step FLOPs (leading order)", False)),
    _cannot("sgd-more-iterations", S_SGD, r"it typically requires many more iterations to "
            r"converge", "more iterations", "convergence speed is an empirical outcome of "
            "training, not a consequence of one step's equations"),
    _claim("momentum-state", S_MOM, r"Extra state memory | $\bm{v} \in \R^P$ → $4P$ bytes "
           r"(float32)", "4*P bytes", memory("momentum", "state")),
    _claim("momentum-flops", S_MOM, r"Per-step FLOPs | $P$ (scale $v$) + $P$ (add $g$) + $P$ "
           r"(scale $v$) + $P$ (update $\theta$) = $4P$", "P + P + P + P",
           flops("momentum", "step")),
    _cannot("momentum-convergence", S_MOM, r"momentum improves convergence from $O(1/t)$ to "
            r"$O(1/t^2)$ for convex quadratics, which can translate to $\sqrt{\kappa}$ fewer "
            r"iterations", "O(1/t^2); sqrt(kappa)", "a convergence rate is a property of the "
            "optimization problem and its analysis, not of one step's cost"),
    _claim("nesterov-state", S_NAG, r"Extra state memory | Same as momentum: $4P$ bytes",
           "4*P bytes", memory("nesterov-lookahead", "state")),
    _claim("nesterov-flops", S_NAG, r"Per-step FLOPs | Same as momentum: $4P$ (plus $P$ for "
           r"the look-ahead position computation)", "4*P + P",
           flops("nesterov-lookahead", "step"),
           reason="the look-ahead point theta - lr*mu*v is a multiplication and a "
                  "subtraction per parameter (lr*mu once), not one operation; torch's form "
                  "(nesterov) costs as much"),
    _claim("adagrad-state", S_ADAG, r"Extra state memory | $\bm{G} \in \R^P$ → $4P$ bytes",
           "4*P bytes", memory("adagrad-eps-inside", "state")),
    _claim("adagrad-flops", S_ADAG, r"Per-step FLOPs | $P$ (square) + $P$ (accumulate) + $P$ "
           r"(sqrt) + $P$ (add $\epsilon$) + $P$ (divide) + $P$ (scale) + $P$ (update) = "
           r"$\approx 7P$", "≈7*P", flops("adagrad-eps-inside", "step")),
    _cannot("adagrad-decay", S_ADAG, r"the effective learning rate $\eta/\sqrt{G_t}$ "
            r"monotonically decreases, eventually reaching zero", "-> 0",
            "a statement about the run of gradients over training, not about one step"),
    _claim("rmsprop-state", S_RMS, r"Extra state memory | $\bm{v} \in \R^P$ → $4P$ bytes",
           "4*P bytes", memory("rmsprop-eps-inside", "state")),
    _claim("rmsprop-flops", S_RMS, r"Per-step FLOPs | $\approx 8P$", "≈8*P",
           flops("rmsprop-eps-inside", "step"),
           reason="counted one by one, AdaGrad's seven operations plus the two scalings of "
                  "the moving average make 9P; 8P with a multiply-add fused (fma) or without "
                  "the square root as a FLOP (xla), but the comparison table repeats this "
                  "count, and neither convention fits its other rows"),
    # Adam's per-operation table, row by row (rows of one step and one kind together).
    _claim("adam-m-scalings", S_ADAM, r"Scale $m_{t-1}$ | $\beta_1 \bm{m}_{t-1}$ | $P$; "
           r"Scale gradient | $(1-\beta_1)\bm{g}_t$ | $P$",
           "mul: P + P", flops("adam", "step", ("m",), kinds=True)),
    _claim("adam-m-add", S_ADAM, r"Add for $\bm{m}_t$ | $+$ | $P$", "add: P",
           flops("adam", "step", ("m",), kinds=True)),
    _claim("adam-v-products", S_ADAM, r"Square gradient | $\bm{g}_t \odot \bm{g}_t$ | $P$; "
           r"Scale $v_{t-1}$ | $\beta_2 \bm{v}_{t-1}$ | $P$; "
           r"Scale squared gradient | $(1-\beta_2)\bm{g}_t^2$ | $P$", "mul: P + P + P",
           flops("adam", "step", ("v",), kinds=True)),
    _claim("adam-v-add", S_ADAM, r"Add for $\bm{v}_t$ | $+$ | $P$", "add: P",
           flops("adam", "step", ("v",), kinds=True)),
    _claim("adam-bias-m", S_ADAM, r"Bias correct $\hat{m}$ | $\bm{m}_t / (1-\beta_1^t)$ | "
           r"$P + 1$", "P + 1", flops("adam", "step", ("mhat",)),
           reason=_BIAS_POWER),
    _claim("adam-bias-v", S_ADAM, r"Bias correct $\hat{v}$ | $\bm{v}_t / (1-\beta_2^t)$ | "
           r"$P + 1$", "P + 1", flops("adam", "step", ("vhat",)),
           reason=_BIAS_POWER),
    _claim("adam-sqrt", S_ADAM, r"Square root | $\sqrt{\hat{\bm{v}}_t}$ | $P$",
           "transcendental: P", flops("adam", "step", ("theta",), kinds=True)),
    _claim("adam-eps-and-update", S_ADAM,
           r"Add epsilon | $\sqrt{\hat{\bm{v}}_t} + \epsilon$ | $P$; "
           r"Update params | $\bm{\theta}_t -$ | $P$", "add: P + P",
           flops("adam", "step", ("theta",), kinds=True)),
    _claim("adam-division", S_ADAM, r"Division | $\hat{\bm{m}}_t / (\sqrt{\hat{\bm{v}}_t} + "
           r"\epsilon)$ | $P$", "div: P", flops("adam", "step", ("theta",), kinds=True)),
    _claim("adam-lr", S_ADAM, r"Scale by LR | $\times \eta$ | $P$", "mul: P",
           flops("adam", "step", ("theta",), kinds=True)),
    _claim("adam-total", S_ADAM, r"Total per step | $\approx 14P$ FLOPs", "≈14*P",
           flops("adam", "step")),
    _claim("adam-state", S_ADAM, r"Memory: $2 \times 4P = 8P$ bytes extra (for $\bm{m}$ and "
           r"$\bm{v}$)", "8*P bytes", memory("adam", "state", ("m", "v"))),
    _claim("adam-total-memory", S_ADAM, r"Including parameters and gradients: "
           r"$\mathbf{16P}$ bytes total", "16*P bytes",
           memory("training-step", ("parameters", "gradients", "state"), optimizer="adam")),
    _claim("adam-bias-cost", S_ADAM, r"Bias correction costs $2P + 2$ FLOPs (negligible)",
           "2*P + 2", flops("adam", "step", ("mhat", "vhat")),
           reason=_BIAS_POWER),
    _claim("adam-hyperparameters", S_ADAM, r"Default hyperparameters: $\beta_1 = 0.9$, "
           r"$\beta_2 = 0.999$, $\epsilon = 10^{-8}$, $\eta$ (problem-dependent, often "
           r"$10^{-3}$)", "0.9, 0.999, 1e-8, 1e-3",
           _hyper("adam", ("beta1", "beta2", "epsilon", "lr"), "a default hyperparameter")),
    # The bias-correction example (t = 1).
    _claim("bias-m1", S_BIAS, r"$\bm{m}_1 = (1-\beta_1)\bm{g}_1$ ... $(1-0.9)\bm{g}_1 = "
           r"0.1\bm{g}_1$", "0.1", _adam_number(lambda e, g: e["m"] / g, "m_1 / g")),
    _claim("bias-m1-factor", S_BIAS, r"biased toward zero by a factor of 10", "10",
           _adam_number(lambda e, g: g / e["m"], "g / m_1")),
    _claim("bias-m1-divisor", S_BIAS, r"The correction divides by $(1-0.9^1) = 0.1$", "0.1",
           _adam_number(lambda e, g: e["m"] / e["mhat"], "m_1 / mhat_1")),
    _claim("bias-mhat1", S_BIAS, r"recovering $\hat{\bm{m}}_1 = \bm{g}_1$", "1",
           _adam_number(lambda e, g: e["mhat"] / g, "mhat_1 / g")),
    _claim("bias-v1", S_BIAS, r"at $t=1$, $\bm{v}_1 = 0.001 \bm{g}_1^2$", "0.001",
           _adam_number(lambda e, g: e["v"] / g ** 2, "v_1 / g^2")),
    _claim("bias-v1-root", S_BIAS, r"$\eta / \sqrt{0.001 \bm{g}_1^2} = \eta / (0.0316 "
           r"|\bm{g}_1|)$", "0.0316", _adam_number(lambda e, g: sp.sqrt(e["v"]) / g,
                                                   "sqrt(v_1) / |g|")),
    _claim("bias-v1-too-large", S_BIAS, r"about 30× too large", "about 30",
           _adam_number(lambda e, g: sp.sqrt(e["vhat"] / e["v"]),
                        "(lr / sqrt(v_1)) / (lr / sqrt(vhat_1))")),
    _claim("bias-v1-divisor", S_BIAS, r"Correction divides by $1-0.999^1 = 0.001$", "0.001",
           _adam_number(lambda e, g: e["v"] / e["vhat"], "v_1 / vhat_1")),
    _claim("bias-vhat1", S_BIAS, r"giving $\hat{\bm{v}}_1 = \bm{g}_1^2$", "1",
           _adam_number(lambda e, g: e["vhat"] / g ** 2, "vhat_1 / g^2")),
    _claim("adamw-extra-flops", S_ADAMW, r"Extra FLOPs vs. Adam | $+2P$ (scale $\theta$ by "
           r"$\lambda$, add to update)", "+2*P",
           _difference(flops("adamw", "step"), flops("adam", "step"),
                       "adamw step FLOPs minus adam step FLOPs")),
    _claim("adamw-extra-memory", S_ADAMW, r"Extra memory vs. Adam | 0", "0",
           _difference(memory("adamw", "state"), memory("adam", "state"),
                       "adamw state bytes minus adam state bytes", by_convention=False)),
    _claim("momentum-typical", S_MOM, r"$\mu$ (momentum, typically 0.9)", "0.9",
           _hyper("momentum", ("mu",), "the momentum coefficient")),
    _claim("adagrad-epsilon", S_ADAG, r"$\epsilon$ (stability, $\sim10^{-8}$)", "~1e-8",
           _hyper("adagrad-eps-inside", ("epsilon",), "epsilon")),
    _claim("rmsprop-decay", S_RMS, r"$\beta$ (decay rate, typically 0.9)", "0.9",
           _hyper("rmsprop-eps-inside", ("alpha",), "the decay rate (the catalogue's alpha)")),
    _claim("adamw-lambda", S_ADAMW, r"$\lambda$ (weight decay, typically $10^{-2}$)", "1e-2",
           _hyper("adamw", ("lam",), "the weight decay coefficient")),
    # The comparison table (a summary: leading orders).
    *[_claim(f"table-{n}-memory", S_CMP, rf"{label} | {mem_text} | ...", mem,
             memory(comp, "state"))
      for n, label, mem_text, mem, comp in (
          ("sgd", "SGD", "0", "0", "sgd"),
          ("momentum", "SGD + Momentum", "$4P$ bytes", "4*P bytes", "momentum"),
          ("nesterov", "Nesterov", "$4P$ bytes", "4*P bytes", "nesterov-lookahead"),
          ("adagrad", "AdaGrad", "$4P$ bytes", "4*P bytes", "adagrad-eps-inside"),
          ("rmsprop", "RMSProp", "$4P$ bytes", "4*P bytes", "rmsprop-eps-inside"),
          ("adam", "Adam", r"$\mathbf{8P}$ bytes", "8*P bytes", "adam"),
          ("adamw", "AdamW", "$8P$ bytes", "8*P bytes", "adamw"))],
    *[_claim(f"table-{n}-flops", S_CMP, rf"{label} | ... | {text}", value,
             flops(comp, "step"), reason=why)
      for n, label, text, value, comp, why in (
          ("sgd", "SGD", "$2P$", "2*P", "sgd", ""),
          ("momentum", "SGD + Momentum", "$4P$", "4*P", "momentum", ""),
          ("nesterov", "Nesterov", "$5P$", "5*P", "nesterov-lookahead",
           "the look-ahead point is a multiplication and a subtraction per parameter, not "
           "one operation"),
          ("adagrad", "AdaGrad", "$7P$", "7*P", "adagrad-eps-inside", ""),
          ("rmsprop", "RMSProp", "$8P$", "8*P", "rmsprop-eps-inside",
           "counted one by one, AdaGrad's operations plus the two scalings of the moving "
           "average; fma or xla would give the document's figure, but neither fits the "
           "table's other rows"),
          ("adam", "Adam", "$14P$", "14*P", "adam", ""),
          ("adamw", "AdamW", "$16P$", "16*P", "adamw", ""))],
    # The 25.6M-parameter (ResNet-50) table.
    *[_claim(f"resnet-{n}-state", S_25M, rf"{label} | {mb} MB | ...", f"{mb} MB",
             memory(n, "state", at={"P": RESNET_P}))
      for n, label, mb in (("sgd", "SGD", "0"), ("momentum", "Momentum", "97.7"),
                           ("adam", "Adam", "195.3"))],
    *[_claim(f"resnet-{n}-flops", S_25M, rf"{label} | ... | {m}M | ...", f"{m}M",
             flops(n, "step", at={"P": RESNET_P}))
      for n, label, m in (("sgd", "SGD", "51.2"), ("momentum", "Momentum", "102.4"),
                          ("adam", "Adam", "358.4"))],
    *[_claim(f"resnet-{n}-share", S_25M, rf"{label} | ... | {pct}%", f"{pct}%",
             _resnet_percent(n), reason=_SHARE_REASON)
      for n, label, pct in (("sgd", "SGD", "0.67"), ("momentum", "Momentum", "1.35"),
                            ("adam", "Adam", "4.72"))],
    _claim("resnet-backward", S_25M, r"ResNet-50 backward pass: ~7.6G FLOPs", "~7.6G",
           _fn(lambda _c: sp.Integer(resnet50.at(resnet50.network("backward"), 1)),
               f"{resnet50.COMMAND}: the network's backward FLOPs at B = 1", False),
           reason=_resnet_backward_reason()),
    _claim("resnet-at-most", S_25M, r"The optimizer update adds at most 4.7% extra FLOPs",
           "4.7%", _Q(lambda conv, stage: max(_resnet_percent(n)(conv, stage)
                                              for n in ("sgd", "momentum", "adam")),
                      "the largest of the table's three shares (sgd, momentum, adam)",
                      by_stage=True), reason=_SHARE_REASON),
    _claim("resnet-adam-memory", S_25M, r"the extra memory (195 MB for Adam)", "195 MB",
           memory("adam", "state", at={"P": RESNET_P})),
    # ---- Regularization --------------------------------------------------------------
    _claim("l1-gradient", S_L1, r"\pd{L_{\text{reg}}}{w_i} = \pd{L_{\text{data}}}{w_i} + "
           r"\lambda \cdot \text{sign}(w_i)", "lam sign(w)",
           _fn(_grad_penalty("l1", lambda lam, w: lam * sp.sign(w)),
               "l1: fused gradient of the penalty wrt w (the data term is not the "
               "penalty's)", False)),
    _claim("l1-forward", S_L1, r"Extra forward FLOPs | $P$ (absolute values) + $P$ (sum) = "
           r"$2P$", "P + P", flops("l1", "forward")),
    _claim("l1-gradient-flops", S_L1, r"Extra gradient FLOPs | $P$ (sign) + $P$ (scale by "
           r"$\lambda$) + $P$ (add to gradient) = $3P$", "P + P + P",
           flops("l1", "gradient"), assumed=_plus_data_gradient("l1"),
           assumption=_WITH_DATA_GRADIENT),
    _claim("l1-memory", S_L1, r"Extra memory | 0", "0", memory("l1", ("state", "saved"))),
    _claim("l2-gradient", S_L2, r"\pd{L_{\text{reg}}}{w_i} = \pd{L_{\text{data}}}{w_i} + "
           r"\lambda w_i", "lam w", _fn(_grad_penalty("l2", lambda lam, w: lam * w),
                                        "l2: fused gradient of the penalty wrt w", False)),
    _claim("l2-gradient-flops", S_L2, r"Extra gradient FLOPs | $P$ (scale $w_i$ by "
           r"$\lambda$) + $P$ (add to gradient) = $2P$", "P + P", flops("l2", "gradient"),
           assumed=_plus_data_gradient("l2"), assumption=_WITH_DATA_GRADIENT),
    _claim("l2-memory", S_L2, r"Extra memory | 0 (uses existing parameter values)", "0",
           memory("l2", ("state", "saved"))),
    _claim("l2-weight-decay", S_L2, r"In SGD, L2 regularization is equivalent to weight "
           r"decay: $w_i \leftarrow w_i(1 - \eta\lambda) - \eta \pd{L}{w_i}$",
           "w (1 - lr lam) - lr g",
           _fn(_weight_decay_equivalence, "sgd's step with the l2 penalty's fused gradient "
                                          "added to g", False)),
    _claim("l2-weight-decay-cost", S_L2, r"This costs $P$ extra multiplications — "
           r"negligible.", "mul: P",
           _fn(_weight_decay_extra, "the update w(1 - lr lam) - lr g (written here) minus "
                                    "sgd's step, per kind")),
    _claim("dropout-random", S_DROP, r"Generate random mask | $Bn$ random number "
           r"generations", "random: B*n", flops("dropout", "forward", ("u",), kinds=True)),
    _claim("dropout-threshold", S_DROP, r"Threshold to binary | $Bn$ comparisons",
           "compare: B*n", flops("dropout", "forward", ("mask",), kinds=True)),
    _claim("dropout-mask-and-scale", S_DROP, r"Multiply by mask | $Bn$ multiplications; "
           r"Scale by $1/(1-p)$ | $Bn$ multiplications", "B*n + B*n",
           flops("dropout", "forward", ("y",)),
           how="dropout: FLOPs of step y = a*mask/(1 - p) (a product and a division) of the "
               "forward pass"),
    _claim("dropout-total", S_DROP, r"Total | $\approx 4Bn$ FLOPs + RNG cost", "≈4*B*n",
           flops("dropout", "forward")),
    _claim("dropout-inference", S_DROP, r"FLOPs (Inference) ... 0 (free at inference)", "0",
           flops("dropout", "inference")),
    _claim("dropout-mask-memory", S_DROP, r"Extra memory (training): $Bn$ values for the "
           r"binary mask", "B*n values", memory("dropout", "saved", elements=True)),
    _claim("dropout-gradient", S_DROP, r"\pd{L}{\bm{a}} = \pd{L}{\tilde{\bm{a}}} \odot "
           r"\frac{\text{mask}}{1-p}", "grad_y mask/(1 - p)",
           _fn(_grad_dropout, "dropout: fused gradient wrt a", False)),
    _claim("dropout-backward-flops", S_DROP, r"same element-wise operation, $2Bn$ FLOPs",
           "2*B*n", flops("dropout", "backward")),
    _claim("dropout-example-flops", S_DROP, r"$4 \times 32 \times 4096 = 524{,}288$ FLOPs",
           "524,288", flops("dropout", "forward", leading=True, at={"B": 32, "n": 4096}),
           how="dropout: the leading order 4Bn of the forward pass at B=32, n=4,096 (the "
               "exact count adds one subtraction, 1 - p)"),
    _claim("dropout-example-matmul", S_DROP, r"$2 \times 32 \times 4096 \times 4096 = "
           r"1.07$G FLOPs", "1.07G", flops("linear", "forward",
                                            at={"B": 32, "O": 4096, "I": 4096})),
    _claim("dropout-example-overhead", S_DROP, r"Dropout overhead: 0.05%", "0.05%",
           _fn(lambda conv: sp.Float(100 * _count_at("dropout", "forward", conv, B=32, n=4096)
                                     / _count_at("linear", "forward", conv, B=32, O=4096,
                                                 I=4096)),
               "dropout forward over linear forward at B=32, n=4,096")),
    _cannot("dropout-rng-bottleneck", S_DROP, r"The random number generation is typically "
            r"the bottleneck (cuRAND on GPU), not the arithmetic", "bottleneck",
            "a statement about hardware throughput; the engine counts operations (one "
            "random draw is one FLOP, or none under xla), not time"),
    _claim("dropout-free-at-inference", S_DROP, r"At inference, dropout costs exactly zero",
           "0", flops("dropout", "inference")),
    _claim("augmentation-flops", S_AUG, r"Extra GPU FLOPs | 0 (CPU preprocessing)", "0",
           flops("data-augmentation", "forward")),
    _claim("augmentation-memory", S_AUG, r"Extra GPU memory | 0", "0",
           memory("data-augmentation", ("parameters", "state", "saved"))),
    _cannot("augmentation-throughput", S_AUG, r"Training throughput impact | Typically zero "
            r"if data pipeline is not bottlenecked; Extra training data | Effectively "
            r"infinite", "0; infinite", "throughput depends on the input pipeline and the "
            "hardware, which the engine does not model"),
    # ---- Normalization: BatchNorm ------------------------------------------------------
    _claim("bn-mean", S_BN, r"1. Mean | Sum $N$ values, divide | $Nd + d \approx Nd$",
           "N*d + d", flops("batchnorm", "forward", ("mu_sum", "mu")),
           reason="a sum of N values is N - 1 additions per feature, and the division one "
                  "more: the document counts N additions and the division"),
    _claim("bn-variance", S_BN, r"2. Variance | $(x-\mu)^2$: $Nd$ subs + $Nd$ squarings; sum; "
           r"divide | $3Nd$", "3*N*d", flops("batchnorm", "forward", ("var_sum", "var"))),
    _claim("bn-normalize", S_BN, r"3. Normalize | $(x-\mu)$: already computed; "
           r"$\sqrt{\sigma^2+\epsilon}$: $d$ sqrts; divide: $Nd$ | $Nd + d$", "N*d + d",
           flops("batchnorm", "forward", ("xhat",)),
           reason="the d additions of epsilon (var + eps) are not counted; as written x - mu "
                  "is computed again here"),
    _claim("bn-scale-shift", S_BN, r"4. Scale+shift | $\gamma \hat{x} + \beta$: $Nd$ mults + "
           r"$Nd$ adds | $2Nd$", "mul: N*d, add: N*d",
           flops("batchnorm", "forward", ("y",), kinds=True)),
    _claim("bn-forward-total", S_BN, r"Total forward | $\approx 7Nd + 2d$",
           "≈7*N*d + 2*d", flops("batchnorm", "forward",
                                exclude=("running_mean", "running_var"))),
    _claim("bn-running-stats", S_BN, r"Running stats update | EMA for $\mu$, $\sigma^2$: "
           r"$2d$ mults + $2d$ adds | $4d$", "mul: 2*d, add: 2*d",
           flops("batchnorm", "forward", ("running_mean", "running_var"), kinds=True),
           reason="(1 - m) r + m s is two multiplications and an addition per feature and "
                  "statistic (the document counts one multiplication); torch's unbiased "
                  "factor N/(N - 1) for the running variance adds only scalar work"),
    _claim("bn-parameters", S_BN, r"Learnable parameters: $\gamma, \beta \in \R^C$ → $2C$ "
           r"parameters", "2*C elements",
           memory("batchnorm", "parameters", elements=True, rename={"d": _size("C")})),
    _claim("bn-running-values", S_BN, r"Running statistics (inference only): running mean + "
           r"running variance → $2C$ values", "2*C elements",
           memory("batchnorm", "state", elements=True, rename={"d": _size("C")})),
    _claim("bn-saved", S_BN, r"Memory for backprop: Must cache $\hat{\bm{x}}$ (normalized "
           r"values), $\mu$, $\sigma^2$ → $Nd + 2d$ elements", "N*d + 2*d elements",
           memory("batchnorm", "saved", elements=True),
           assumed=_elements_of("batchnorm", ("xhat", "mu", "var")), assumption=_BN_CACHE),
    _claim("bn-gradient-gamma", S_BN, r"\pd{L}{\gamma_j} = \sum_{i=1}^{N} \pd{L}{y_{ij}} "
           r"\cdot \hat{x}_{ij}", "sum_i dL/dy_ij xhat_ij",
           _fn(_grad_bn("gamma"), "batchnorm: fused gradient wrt gamma", False)),
    _claim("bn-gradient-gamma-flops", S_BN, r"FLOPs: $Nd$ multiplications + $Nd$ additions = "
           r"$2Nd$", "mul: N*d, add: N*d",
           flops("batchnorm", "backward", ("grad_gamma",), kinds=True)),
    _claim("bn-gradient-beta", S_BN, r"\pd{L}{\beta_j} = \sum_{i=1}^{N} \pd{L}{y_{ij}}",
           "sum_i dL/dy_ij", _fn(_grad_bn("beta"), "batchnorm: fused gradient wrt beta",
                                 False)),
    _claim("bn-gradient-beta-flops", S_BN, r"FLOPs: $Nd$ additions", "add: N*d",
           flops("batchnorm", "backward", ("grad_beta",), kinds=True)),
    _claim("bn-gradient-var", S_BN, r"\pd{L}{\sigma_j^2} = \sum_{i=1}^{N}\pd{L}{\hat{x}_{ij}} "
           r"\cdot (x_{ij} - \mu_j) \cdot \left(-\frac{1}{2}\right)(\sigma_j^2+\epsilon)^{-3/2}",
           "sum_i dL/dxhat (x - mu) (-1/2)(var + eps)^(-3/2)",
           _fn(_grad_bn("grad_var"), "batchnorm: step grad_var of the derived backward pass "
                                     "(steps it reads substituted)", False)),
    _claim("bn-gradient-mu", S_BN, r"\pd{L}{\mu_j} = \sum_{i=1}^{N}\pd{L}{\hat{x}_{ij}} \cdot "
           r"\frac{-1}{\sqrt{\sigma_j^2+\epsilon}} + \pd{L}{\sigma_j^2}\cdot\frac{-2}{N}"
           r"\sum_{i=1}^{N}(x_{ij}-\mu_j)",
           "sum_i dL/dxhat (-1/sqrt(var + eps)) + dL/dvar (-2/N) sum_i (x - mu)",
           _fn(_grad_bn("grad_mu"), "batchnorm: step grad_mu of the derived backward pass "
                                    "(steps it reads substituted)", False)),
    _claim("bn-gradient-x", S_BN, r"\pd{L}{x_{ij}} = \pd{L}{\hat{x}_{ij}}\cdot\frac{1}"
           r"{\sqrt{\sigma_j^2+\epsilon}} + \pd{L}{\sigma_j^2}\cdot\frac{2(x_{ij}-\mu_j)}{N} + "
           r"\pd{L}{\mu_j}\cdot\frac{1}{N}",
           "dL/dxhat/sqrt(var + eps) + dL/dvar 2(x - mu)/N + dL/dmu/N",
           _fn(_grad_bn("x"), "batchnorm: fused gradient wrt x", False)),
    _claim("bn-backward", S_BN, r"Total backward FLOPs: approximately $\mathbf{10Nd + "
           r"\text{lower order terms}}$", "≈10*N*d", flops("batchnorm", "backward"),
           reason=_BN_BACKWARD),
    # ---- BatchNorm example ------------------------------------------------------------
    _claim("bn-example-n", S_BNX, r"$N = 32 \times 56 \times 56 = 100{,}352$", "100,352",
           _example("batchnorm-conv", "N = B*H*W")),
    _claim("bn-example-forward", S_BNX, r"Forward: $7 \times 100{,}352 \times 256 \approx "
           r"180$M FLOPs", "≈180M", flops("batchnorm", "forward", at=_BN_EXAMPLE)),
    _claim("bn-example-backward", S_BNX, r"Backward: $\approx 10 \times 100{,}352 \times 256 "
           r"\approx 257$M FLOPs", "≈257M", flops("batchnorm", "backward", at=_BN_EXAMPLE),
           reason="follows the 10Nd of the backward total; " + _BN_BACKWARD),
    _claim("bn-example-conv", S_BNX, r"If the preceding 3×3 conv (128→256) has ~14.8G FLOPs",
           "~14.8G", flops("conv2d-im2col", "forward", at=_CONV_EXAMPLE),
           reason="the count is 2*B*O*K*S, K = 9*C_in, at the example's 56x56 outputs; "
                  "14.8G is the count at a 28x28 output, a quarter of it"),
    _claim("bn-example-overhead", S_BNX, r"BatchNorm forward adds 180M / 14.8G ≈ 1.2% "
           r"overhead", "≈1.2%",
           _fn(lambda conv: sp.Float(100 * _count_at("batchnorm", "forward", conv,
                                                     **_BN_EXAMPLE)
                                     / _count_at("conv2d-im2col", "forward", conv,
                                                 **_CONV_EXAMPLE)),
               "batchnorm forward over conv2d-im2col forward at the example's sizes"),
           reason="follows the 14.8G convolution figure, a quarter of the derived count"),
    _claim("bn-example-parameters", S_BNX, r"Parameters: $2 \times 256 = 512$", "512",
           memory("batchnorm", "parameters", elements=True, at={"d": 256})),
    _claim("bn-example-conv-parameters", S_BNX, r"the conv layer's ~295K params", "~295K",
           memory("conv2d-im2col", "parameters", elements=True,
                  at={"O": 256, "K": 128 * 3 * 3})),
    # ---- Training vs inference ------------------------------------------------------------
    _claim("bn-per-element-training", S_TI, r"Compute per element | ~7 FLOPs (forward)",
           "~7", flops("batchnorm", "forward", leading=True, per="N*d")),
    _claim("bn-per-element-inference", S_TI, r"Compute per element | ... | ~4 FLOPs "
           r"(normalize + scale/shift)", "~4",
           flops("batchnorm", "inference", leading=True, per="N*d")),
    _claim("bn-fold-equation", S_TI, r"the entire BN operation is a linear transform: $y = "
           r"\frac{\gamma}{\sigma}x + (\beta - \frac{\gamma\mu}{\sigma})$",
           "gamma/sigma x + (beta - gamma mu/sigma)",
           _fn(_bn_folded, "batchnorm: its inference pass as one expression", False)),
    _claim("bn-fold-zero", S_TI, r"This can be folded into the preceding conv/FC layer's "
           r"weights and biases, making BN zero-cost at inference", "0",
           _fn(_bn_fold_per_input, "batchnorm-fold: the fold pass runs once, on the weights; "
                                   "its count's derivative with respect to the batch size "
                                   "(FLOPs per inference input)")),
    # ---- LayerNorm, GroupNorm --------------------------------------------------------
    _claim("ln-parameters", S_LN, r"Parameters | $2d$ ($\gamma, \beta$)", "2*d elements",
           memory("layernorm", "parameters", elements=True)),
    _claim("ln-forward", S_LN, r"Forward FLOPs | $\approx 7Bd$ (same order as BatchNorm)",
           "≈7*B*d", flops("layernorm", "forward")),
    _claim("ln-same-as-bn", S_LN, r"Its per-element computational cost is identical to "
           r"BatchNorm", "1",
           _ratio(flops("layernorm", "forward", leading=True, per="B*d"),
                  flops("batchnorm", "forward", leading=True, per="N*d"),
                  "layernorm over batchnorm forward FLOPs per element (leading orders)")),
    _claim("ln-inference", S_LN, r"it cannot be fused at inference — it always costs ~4 "
           r"FLOPs per element", "~4", flops("layernorm", "forward", leading=True,
                                              per="B*d"),
           reason="at inference LayerNorm still computes its per-sample mean and variance "
                  "(its forward pass); 4 per element is the normalize and scale/shift alone"),
    _claim("gn-parameters", S_GN, r"Parameters: $2C$ (same as BatchNorm)", "2*C elements",
           memory("groupnorm", "parameters", elements=True,
                  rename={"Cg": _size("C") / _size("G")})),
    _claim("gn-order", S_GN, r"FLOPs: Same order as BatchNorm", "O(B*C*H*W)",
           flops("groupnorm", "forward", rename={"Cg": _size("C") / _size("G"),
                                                 "S": _size("H") * _size("W")})),
    # ---- Normalization comparison table ---------------------------------------------------
    _claim("cmp-bn-parameters", S_NCMP, r"BatchNorm | ... | $2C$", "2*C elements",
           memory("batchnorm", "parameters", elements=True, rename={"d": _size("C")})),
    _claim("cmp-bn-flops", S_NCMP, r"BatchNorm | ... | $\sim 7NdC$", "~7*N*d*C",
           flops("batchnorm", "forward"),
           reason="d is the number of channels C (the document's own definition, d = C for "
                  "a conv layer), so NdC counts the channels twice"),
    _claim("cmp-ln-parameters", S_NCMP, r"LayerNorm | ... | $2d$", "2*d elements",
           memory("layernorm", "parameters", elements=True)),
    _claim("cmp-ln-flops", S_NCMP, r"LayerNorm | ... | $\sim 7Bd$", "~7*B*d",
           flops("layernorm", "forward")),
    _claim("cmp-gn-parameters", S_NCMP, r"GroupNorm | ... | $2C$", "2*C elements",
           memory("groupnorm", "parameters", elements=True,
                  rename={"Cg": _size("C") / _size("G")})),
    _claim("cmp-gn-flops", S_NCMP, r"GroupNorm | ... | $\sim 7BCHW$", "~7*B*C*H*W",
           flops("groupnorm", "forward", rename={"Cg": _size("C") / _size("G"),
                                                 "S": _size("H") * _size("W")})),
    _claim("cmp-in-parameters", S_NCMP, r"InstanceNorm | ... | $2C$", "2*C elements",
           memory("instancenorm", "parameters", elements=True)),
    _claim("cmp-in-flops", S_NCMP, r"InstanceNorm | ... | $\sim 7BCHW$", "~7*B*C*H*W",
           flops("instancenorm", "forward", rename={"S": _size("H") * _size("W")})),
    # ---- Learning-rate schedules ---------------------------------------------------------
    _claim("schedules-negligible", S_LR, r"the per-step cost of computing a new learning "
           r"rate is negligible ($O(1)$ FLOPs)", "O(1)",
           _fn(_schedules_order, "every schedule of the catalogue: the sum of their counts",
               False)),
    _cannot("schedules-halve-epochs", S_LR, r"A good schedule can halve the number of "
            r"training epochs needed", "1/2", "the number of epochs is an empirical outcome "
            "of training, not a consequence of the schedule's equations"),
    _claim("step-decay-cost", S_LR, r"Computational cost: 1 floor division + 1 power + 1 "
           r"multiplication", "div: 1, transcendental: 1, mul: 1, other: 0",
           flops("step-decay", "schedule", kinds=True),
           reason="floor(t/S) is a division and a floor (compare/select kind); the document "
                  "counts one floor division"),
    _claim("step-decay-order", S_LR, r"= $O(1)$ per step", "O(1)",
           flops("step-decay", "schedule")),
    _claim("step-decay-typical", S_LR, r"$\gamma \in (0,1)$ is the decay factor (typically "
           r"0.1) ... Commonly: reduce LR by 10× every 30 epochs", "0.1, 30",
           _hyper("step-decay", ("gamma", "S"), "the decay factor and interval")),
    _claim("cosine-cost", S_LR, r"Computational cost: 1 cosine + 3 multiplications + 2 "
           r"additions", "transcendental: 1, mul: 3, add: 2, other: 0",
           flops("cosine", "schedule", kinds=True),
           reason="the engine also counts t/T (a division) and eta_max - eta_min (a "
                  "subtraction)"),
    _claim("cosine-order", S_LR, r"= $O(1)$", "O(1)", flops("cosine", "schedule")),
    _cannot("warmup-insurance", S_LR, r"typically 5–10 epochs out of 90+ ... $\approx$5% "
            r"extra steps to avoid $\gg$100% wasted steps from divergence", "≈5%",
            "the warmup length is a choice and divergence an empirical outcome; neither "
            "follows from the equations"),
    _claim("one-cycle-phases", S_LR, r"Phase 1 (warmup, ~30% of training) ... Phase 2 "
           r"(annealing, ~70% of training) ... to $\eta_{\text{low}}/10$", "30%, 70%",
           _hyper("one-cycle-doc", ("pct",), "the warmup fraction")),
    _cannot("one-cycle-fewer-steps", S_LR, r"training to the same accuracy in 5–10× fewer "
            r"steps than standard schedules", "5-10x", "the number of steps to an accuracy "
            "is an empirical outcome of training (super-convergence is an observation)"),
    _cannot("one-cycle-3x", S_LR, r"If one-cycle reaches target accuracy in 30 epochs "
            r"instead of 90, the total training FLOPs are reduced by 3×", "3x",
            "the epochs to an accuracy are the premise, an empirical outcome; given it, "
            "90/30 = 3 is arithmetic, not a derivation"),
    _claim("one-cycle-same-step-cost", S_LR, r"The per-step cost is identical; only the "
           r"number of steps differs", "O(1)",
           _difference(flops("one-cycle-doc", "schedule"), flops("cosine", "schedule"),
                       "one-cycle-doc schedule FLOPs minus cosine schedule FLOPs: the change "
                       "of a step's cost, without a size term")),
    # ---- Summary table -----------------------------------------------------------------
    _cannot("summary-forward", S_SUM, r"Forward pass | $F$ | Activations: $O(BL\bar{d})$",
            "F; O(B*L*dbar)", "the network's own forward FLOPs and activations are inputs "
            "of the training-step composite (F, A), not derived"),
    _claim("summary-forward-share", S_SUM, r"Forward pass | ... | ~33%", "~33%",
           _fn(lambda conv: sp.Float(100 / (1 + _backward_factor(conv))),
               "F / (F + kF) with k from the linear layer's backward/forward (leading)")),
    _claim("summary-backward", S_SUM, r"Backward pass | $\approx 2F$", "≈2*F",
           _fn(lambda conv: _backward_factor(conv) * _size("F"),
               "k*F with k = linear backward / forward FLOPs (leading orders; "
               "conv2d-im2col gives the same)")),
    _claim("summary-gradients", S_SUM, r"Backward pass | ... | Gradients: $4P$", "4*P bytes",
           memory("training-step", "gradients", optimizer="adam")),
    _claim("summary-backward-share", S_SUM, r"Backward pass | ... | ~66%", "~66%",
           _fn(lambda conv: sp.Float(100 * _backward_factor(conv)
                                     / (1 + _backward_factor(conv))),
               "kF / (F + kF) with k from the linear layer")),
    _claim("summary-loss-flops", S_SUM, r"Loss computation | $O(BC)$", "O(B*C)",
           _fn(lambda conv: sp.expand(
               _derivation("training-step", optimizer="adam").counts("loss.forward", conv).total
               + _derivation("training-step", optimizer="adam").counts("loss.backward",
                                                                       conv).total),
               "training-step: loss.forward + loss.backward (cross-entropy)")),
    _claim("summary-loss-memory", S_SUM, r"Loss computation | ... | $O(BC)$", "O(B*C)",
           memory("cross-entropy", "saved")),
    _claim("summary-sgd", S_SUM, r"Optimizer (SGD) | $2P$", "2*P", flops("sgd", "step")),
    _claim("summary-sgd-memory", S_SUM, r"Optimizer (SGD) | ... | 0", "0",
           memory("sgd", "state")),
    _claim("summary-adam", S_SUM, r"Optimizer (Adam) | $14P$", "14*P", flops("adam", "step")),
    _claim("summary-adam-memory", S_SUM, r"Optimizer (Adam) | ... | $8P$", "8*P bytes",
           memory("adam", "state")),
    _claim("summary-l2", S_SUM, r"L2 regularization | $2P$", "2*P", flops("l2", "gradient"),
           assumed=_plus_data_gradient("l2"), assumption=_WITH_DATA_GRADIENT),
    _claim("summary-l2-memory", S_SUM, r"L2 regularization | ... | 0", "0",
           memory("l2", ("state", "saved"))),
    _claim("summary-dropout", S_SUM, r"Dropout (per layer) | $\approx 4Bn$", "≈4*B*n",
           flops("dropout", "forward")),
    _claim("summary-dropout-memory", S_SUM, r"Dropout (per layer) | ... | $4Bn$ (mask)",
           "4*B*n bytes", memory("dropout", "saved")),
    _claim("summary-bn-forward", S_SUM, r"BatchNorm (per layer, fwd) | $\approx 7Nd$",
           "≈7*N*d", flops("batchnorm", "forward")),
    _claim("summary-bn-memory", S_SUM, r"BatchNorm (per layer, fwd) | ... | $4(Nd + 2d)$",
           "4*(N*d + 2*d) bytes", memory("batchnorm", "saved"),
           assumed=_elements_of("batchnorm", ("xhat", "mu", "var"), 4), assumption=_BN_CACHE),
    _claim("summary-bn-backward", S_SUM, r"BatchNorm (per layer, bwd) | $\approx 10Nd$",
           "≈10*N*d", flops("batchnorm", "backward"), reason=_BN_BACKWARD),
    _claim("summary-schedule", S_SUM, r"LR schedule | $O(1)$", "O(1)",
           flops("cosine", "schedule")),
    _claim("summary-schedule-memory", S_SUM, r"LR schedule | ... | 0", "0",
           memory("cosine", ("parameters", "state", "saved"))),
    *[_cannot(f"summary-share-{n}", S_SUM, rf"{label} | ... | {pct}", pct, _PCT)
      for n, label, pct in (("loss", "Loss computation", "<0.01%"),
                            ("sgd", "Optimizer (SGD)", "<1%"),
                            ("adam", "Optimizer (Adam)", "~2–5%"),
                            ("l2", "L2 regularization", "<0.5%"),
                            ("dropout", "Dropout (per layer)", "<0.1%"),
                            ("bn-forward", "BatchNorm (per layer, fwd)", "~1–2%"),
                            ("bn-backward", "BatchNorm (per layer, bwd)", "~2–3%"),
                            ("schedule", "LR schedule", r"$\approx 0$"))],
    _cannot("summary-network-share", S_SUM, r"account for ~95–98% of total training FLOPs. "
            r"All other components ... are collectively less than 5%", "95-98%; <5%", _PCT),
    _claim("summary-adam-binding", S_SUM, r"Adam's $8P$ extra bytes can be the difference "
           r"between fitting a model on a GPU or not", "8*P bytes", memory("adam", "state")),
    # ---- Memory total ---------------------------------------------------------------------
    _claim("memory-m-opt", S_MEM, r"$M_{\text{opt}} = 0$ (SGD), $1$ (Momentum), $2$ (Adam)",
           "0, 1, 2", _fn(_m_opt, "state tensors of P values of sgd, momentum, adam",
                          False)),
    _claim("memory-parameters", S_MEM, r"Params: 97.7 MB", "97.7 MB",
           _example("resnet50-memory", "parameters", MIB),
           assumed=memory("training-step", "parameters", at={"P": RESNET_P}, optimizer="adam"),
           assumption=_RESNET_P_ROUNDED),
    _claim("memory-gradients", S_MEM, r"Grads: 97.7 MB", "97.7 MB",
           _example("resnet50-memory", "gradients", MIB),
           assumed=memory("training-step", "gradients", at={"P": RESNET_P}, optimizer="adam"),
           assumption=_RESNET_P_ROUNDED),
    _claim("memory-adam-state", S_MEM, r"Adam state: 195.3 MB", "195.3 MB",
           _example("resnet50-memory", "Adam state", MIB),
           assumed=memory("training-step", "state", at={"P": RESNET_P}, optimizer="adam"),
           assumption=_RESNET_P_ROUNDED),
    _claim("memory-activations", S_MEM, r"Activations: ~2.5 GB", "~2.5 GB",
           _example("resnet50-memory", "activations", GIB)),
    _claim("memory-total", S_MEM, r"Total: ~2.9 GB", "~2.9 GB",
           _example("resnet50-memory", "total", GIB)),
    _claim("memory-activations-dominate", S_MEM, r"Activations dominate for this "
           r"configuration", "activations",
           _fn(_largest_memory, "example resnet50-memory: the largest term", False)),
]


def report(fmt: str = "markdown") -> str:
    """The claims report (``symflop claims --format markdown|json|latex``)."""
    return engine.report(CLAIMS, fmt)
