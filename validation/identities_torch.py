"""Numeric checks, with torch, of the identities in derivations/identities/.

``numeric_check(name)`` runs the check of one identity and returns a ``NumericResult``:
torch's own optimizers and modules (torch.optim.SGD/Adam/AdamW, nn.BatchNorm1d/2d in
eval mode, F.gaussian_nll_loss, F.binary_cross_entropy_with_logits, autograd) against
plain torch recursions written from the catalogue's equations.  Every run is float64 on
the CPU with a fixed seed.  A result passes when the numbers bear the verdict out:
the two sides of an identity that holds agree (relative tolerance TOL), and the two
sides of one that does not hold differ by far more than rounding.  Agreements are
reported as "agree within TOL", never as a rounding-level number, so that the text is
the same on every machine.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F  # noqa: N812 - torch's customary name

from symflop.report.identities import NumericResult

DTYPE = torch.float64
TOL = 1e-12          # relative to max(1, |expected|) unless stated
GAP = 1e-8           # two sides "differ" when they differ by more than this
P = 5                # parameters of the test problem
STEPS = 20


class _Checks:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.ok = True

    def _add(self, ok: bool, line: str) -> None:
        self.ok &= ok
        self.lines.append(line if ok else f"{line}   <-- FAILS")

    def same(self, label: str, a, b, tol: float = TOL, relative: bool = False) -> None:
        a, b = _stack(a), _stack(b)
        err = float((a - b).abs().max())
        scale = float(b.abs().max()) if relative else max(1.0, float(b.abs().max()))
        ok = err <= tol * scale
        kind = "relative " if relative else ""
        self._add(ok, f"{label}: agree within {kind}{tol:g}" if ok else
                  f"{label}: differ by {err:.3g} (tolerance {kind}{tol:g})")

    def differ(self, label: str, a, b, gap: float = GAP) -> None:
        a, b = _stack(a), _stack(b)
        if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
            self._add(True, f"{label}: differ (non-finite values: a recursion diverges)")
            return
        err = float((a - b).abs().max())
        self._add(err > gap, f"{label}: differ, largest difference {err:.3g}")

    def holds(self, ok: bool, line: str) -> None:
        self._add(bool(ok), line)

    def result(self, summary: str) -> NumericResult:
        return NumericResult(self.ok, summary, tuple(self.lines))


def _stack(x) -> torch.Tensor:
    if isinstance(x, (list, tuple)):
        return torch.stack([torch.as_tensor(v, dtype=DTYPE) for v in x])
    return torch.as_tensor(x, dtype=DTYPE)


def _problem(seed: int = 0):
    """A small non-quadratic loss: logistic regression plus a quartic term; theta_0."""
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(16, P, generator=gen, dtype=DTYPE)
    sign = torch.where(torch.rand(16, generator=gen, dtype=DTYPE) < 0.5, -1.0, 1.0)
    theta0 = torch.randn(P, generator=gen, dtype=DTYPE)

    def loss(theta):  # logistic loss on labels +-1 (BCE with logits), plus 0.05*theta**4
        return F.softplus(-sign * (X @ theta)).mean() + 0.05 * (theta ** 4).sum()
    return loss, theta0


def _grad(loss, theta: torch.Tensor) -> torch.Tensor:
    t = theta.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(loss(t), t)
    return g


def _torch_run(make, loss, theta0, steps: int = STEPS, state_key: str | None = None):
    """Step the torch optimizer ``make([p])`` on ``loss``: the parameters after each step
    and, if ``state_key`` is given, that entry of the optimizer's state after each step."""
    p = torch.nn.Parameter(theta0.clone())
    opt = make([p])
    path, states = [], []
    for _ in range(steps):
        opt.zero_grad()
        loss(p).backward()
        opt.step()
        path.append(p.detach().clone())
        if state_key is not None:
            states.append(opt.state[p][state_key].clone())
    return path, states


def _l2(loss, lam: float):
    return lambda theta: loss(theta) + lam / 2 * (theta ** 2).sum()


# -- the checks --------------------------------------------------------------------------

def check_nesterov_lookahead() -> NumericResult:
    loss, theta0 = _problem()
    lr, mu = 0.1, 0.9
    c = _Checks()
    path, bufs = _torch_run(lambda ps: torch.optim.SGD(ps, lr=lr, momentum=mu, nesterov=True),
                            loss, theta0, state_key="momentum_buffer")
    # the look-ahead form (component nesterov-lookahead), gradient at the look-ahead point
    theta, v, ahead = theta0.clone(), torch.zeros(P, dtype=DTYPE), theta0.clone()
    aheads, vs, thetas = [], [], []
    for _ in range(STEPS):
        g = _grad(loss, ahead)
        v = mu * v + g
        theta = theta - lr * v
        ahead = theta - lr * mu * v
        aheads.append(ahead)
        vs.append(v)
        thetas.append(theta)
    c.same(f"torch SGD(nesterov=True) parameters vs look-ahead points theta - lr*mu*v, "
           f"{STEPS} steps", path, aheads)
    c.same("torch momentum buffer vs look-ahead v", bufs, vs)
    c.differ("torch parameters vs the look-ahead form's theta itself", path, thetas)
    # the document's literal point theta + mu*v
    theta, v = theta0.clone(), torch.zeros(P, dtype=DTYPE)
    points = []
    for _ in range(STEPS):
        g = _grad(loss, theta + mu * v)
        v = mu * v + g
        theta = theta - lr * v
        points.append(theta + mu * v)
    c.differ("torch parameters vs the document's look-ahead points theta + mu*v, first 3 "
             "steps", path[:3], points[:3])
    gone = next((t for t, x in enumerate(points, 1)
                 if not bool(torch.isfinite(x).all()) or float(x.abs().max()) > 1e3), None)
    c.holds(gone is not None and float(path[-1].abs().max()) < 1e3,
            f"  the document's literal recursion diverges: |theta| passes 1000 at step "
            f"{gone}; "
            "torch's stays bounded" if gone is not None else
            "  the document's literal recursion stays bounded")
    return c.result(f"torch.optim.SGD(momentum={mu}, nesterov=True) against the look-ahead "
                    f"recursion on a logistic-regression loss, lr={lr}, float64")


def check_l2_weight_decay_sgd() -> NumericResult:
    loss, theta0 = _problem()
    lr, lam = 0.1, 0.05
    c = _Checks()
    wd, _ = _torch_run(lambda ps: torch.optim.SGD(ps, lr=lr, weight_decay=lam), loss, theta0)
    l2, _ = _torch_run(lambda ps: torch.optim.SGD(ps, lr=lr), _l2(loss, lam), theta0)
    theta, dec = theta0.clone(), []
    for _ in range(STEPS):
        theta = theta * (1 - lr * lam) - lr * _grad(loss, theta)
        dec.append(theta)
    c.same(f"torch SGD(weight_decay={lam}) vs SGD on L + lam/2*||theta||^2, {STEPS} steps",
           wd, l2)
    c.same("torch SGD(weight_decay) vs theta*(1 - lr*lam) - lr*gradL", wd, dec)
    return c.result(f"torch.optim.SGD, lr={lr}, lam={lam}, float64")


def check_l2_weight_decay_momentum() -> NumericResult:
    loss, theta0 = _problem()
    lr, mu, lam = 0.1, 0.9, 0.05
    c = _Checks()
    wd, _ = _torch_run(lambda ps: torch.optim.SGD(ps, lr=lr, momentum=mu, weight_decay=lam),
                       loss, theta0)
    l2, _ = _torch_run(lambda ps: torch.optim.SGD(ps, lr=lr, momentum=mu), _l2(loss, lam),
                       theta0)
    theta, v, dec = theta0.clone(), torch.zeros(P, dtype=DTYPE), []
    for _ in range(STEPS):
        v = mu * v + _grad(loss, theta)
        theta = theta - lr * v - lr * lam * theta
        dec.append(theta)
    c.same(f"torch SGD(momentum={mu}, weight_decay={lam}) vs momentum SGD on "
           "L + lam/2*||theta||^2", wd, l2)
    c.same("first step: torch (L2) vs decoupled (SGDW)", wd[0], dec[0])
    c.same("second step: torch (L2) minus decoupled vs -lr*lam*mu*theta_0",
           wd[1] - dec[1], -lr * lam * mu * theta0)
    c.differ(f"torch (L2) vs decoupled (SGDW), {STEPS} steps", wd, dec)
    return c.result(f"torch.optim.SGD with momentum against SGDW written out, lr={lr}, "
                    "float64")


def check_l2_weight_decay_adam() -> NumericResult:
    loss, theta0 = _problem()
    lr, lam, b1, b2, eps = 1e-2, 0.1, 0.9, 0.999, 1e-8
    c = _Checks()
    adam_wd, _ = _torch_run(lambda ps: torch.optim.Adam(ps, lr=lr, weight_decay=lam),
                            loss, theta0)
    adam_l2, _ = _torch_run(lambda ps: torch.optim.Adam(ps, lr=lr), _l2(loss, lam), theta0)
    adamw, _ = _torch_run(lambda ps: torch.optim.AdamW(ps, lr=lr, weight_decay=lam),
                          loss, theta0)
    # component adamw's equations written out
    theta, m, v, path = theta0.clone(), torch.zeros(P, dtype=DTYPE), \
        torch.zeros(P, dtype=DTYPE), []
    for t in range(1, STEPS + 1):
        g = _grad(loss, theta)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g ** 2
        mhat, vhat = m / (1 - b1 ** t), v / (1 - b2 ** t)
        theta = theta - lr * (mhat / (vhat.sqrt() + eps) + lam * theta)
        path.append(theta)
    c.same(f"torch Adam(weight_decay={lam}) vs Adam on L + lam/2*||theta||^2, {STEPS} steps",
           adam_wd, adam_l2)
    c.same("torch AdamW(weight_decay) vs theta - lr*(mhat/(sqrt(vhat) + eps) + lam*theta)",
           adamw, path)
    c.differ("torch Adam(weight_decay) vs AdamW(weight_decay)", adam_wd, adamw)
    # the symbolic counterexample: g = 1, theta = 1, lam = 1/100, lr = 1/1000, eps = 1e-8
    g1, th, lam1, lr1 = 1.0, 1.0, 0.01, 1e-3
    ends = []
    for make in (lambda ps: torch.optim.Adam(ps, lr=lr1, weight_decay=lam1, eps=eps),
                 lambda ps: torch.optim.AdamW(ps, lr=lr1, weight_decay=lam1, eps=eps)):
        p = torch.nn.Parameter(torch.tensor([th], dtype=DTYPE))
        opt = make([p])
        p.grad = torch.tensor([g1], dtype=DTYPE)
        opt.step()
        ends.append(float(p.detach()[0]))
    want = lr1 * (g1 / (abs(g1) + eps) + lam1 * th) - lr1 * (g1 + lam1 * th) / (
        abs(g1 + lam1 * th) + eps)
    c.same("counterexample, one step: torch Adam(wd) minus AdamW(wd) vs the symbolic "
           "difference",
           ends[0] - ends[1], want, tol=1e-9, relative=True)
    c.holds(abs(ends[0] - ends[1]) > 1e-6,
            f"  that difference is {ends[0] - ends[1]:.4g}")
    return c.result(f"torch.optim.Adam/AdamW, lr={lr}, lam={lam}, betas=({b1}, {b2}), "
                    "float64")


def check_batchnorm_fold() -> NumericResult:
    gen = torch.Generator().manual_seed(0)
    c = _Checks()

    def stats(bn):
        n = bn.num_features
        with torch.no_grad():
            bn.weight.copy_(torch.randn(n, generator=gen, dtype=DTYPE))
            bn.bias.copy_(torch.randn(n, generator=gen, dtype=DTYPE))
            bn.running_mean.copy_(torch.randn(n, generator=gen, dtype=DTYPE))
            bn.running_var.copy_(torch.rand(n, generator=gen, dtype=DTYPE) + 0.5)
        return bn.eval()

    def fold(weight, bias, bn, sigma=None):
        """Component batchnorm-fold: s = gamma/sqrt(running_var + eps)."""
        sd = (bn.running_var + bn.eps).sqrt() if sigma is None else sigma
        s = bn.weight / sd
        shape = (-1,) + (1,) * (weight.dim() - 1)
        b = torch.zeros_like(bn.running_mean) if bias is None else bias
        return weight * s.reshape(shape), s * (b - bn.running_mean) + bn.bias

    with torch.no_grad():
        lin = torch.nn.Linear(6, 4, dtype=DTYPE)
        bn1 = stats(torch.nn.BatchNorm1d(4, dtype=DTYPE))
        x = torch.randn(8, 6, generator=gen, dtype=DTYPE)
        want = bn1(lin(x))
        w_f, b_f = fold(lin.weight, lin.bias, bn1)
        c.same("Linear(6, 4) + BatchNorm1d(4).eval() vs the folded Linear",
               F.linear(x, w_f, b_f), want)
        fused = torch.nn.utils.fusion.fuse_linear_bn_eval(lin.eval(), bn1)
        c.same("  folded weight and bias vs torch.nn.utils.fusion.fuse_linear_bn_eval",
               torch.cat([w_f.flatten(), b_f]),
               torch.cat([fused.weight.flatten(), fused.bias]))
        conv = torch.nn.Conv2d(3, 4, 3, padding=1, bias=False, dtype=DTYPE)
        bn2 = stats(torch.nn.BatchNorm2d(4, dtype=DTYPE))
        xi = torch.randn(2, 3, 7, 7, generator=gen, dtype=DTYPE)
        want = bn2(conv(xi))
        w_f, b_f = fold(conv.weight, None, bn2)
        c.same("Conv2d(3, 4, 3x3, bias=False) + BatchNorm2d(4).eval() vs the folded conv "
               "(which gains a bias)", F.conv2d(xi, w_f, b_f, padding=1), want)
        fused = torch.nn.utils.fusion.fuse_conv_bn_eval(conv.eval(), bn2)
        c.same("  folded weight and bias vs torch.nn.utils.fusion.fuse_conv_bn_eval",
               torch.cat([w_f.flatten(), b_f]),
               torch.cat([fused.weight.flatten(), fused.bias]))
        w_n, b_n = fold(conv.weight, None, bn2, sigma=bn2.running_var.sqrt())
        c.differ("  the same fold with sigma = sqrt(running_var) (eps left out)",
                 F.conv2d(xi, w_n, b_n, padding=1), want, gap=1e-7)
    return c.result("torch.nn BatchNorm in eval mode with random running statistics, "
                    "float64")


def check_adam_bias_correction() -> NumericResult:
    gen = torch.Generator().manual_seed(0)
    lr, eps = 1e-3, 1e-8
    c = _Checks()
    theta0 = torch.randn(P, generator=gen, dtype=DTYPE)
    g = torch.randn(P, generator=gen, dtype=DTYPE)
    for b1, b2 in ((0.9, 0.999), (0.5, 0.6), (0.99, 0.9999)):
        p = torch.nn.Parameter(theta0.clone())
        opt = torch.optim.Adam([p], lr=lr, betas=(b1, b2), eps=eps)
        p.grad = g.clone()
        opt.step()
        s = opt.state[p]
        c.same(f"betas ({b1}, {b2}), t = 1: exp_avg/(1 - beta1) vs g_1",
               s["exp_avg"] / (1 - b1), g)
        c.same("  exp_avg_sq/(1 - beta2) vs g_1**2", s["exp_avg_sq"] / (1 - b2), g ** 2)
        c.same("  theta_1 vs theta_0 - lr*g_1/(|g_1| + eps)", p.detach(),
               theta0 - lr * g / (g.abs() + eps))
        for _ in range(2, 11):
            p.grad = g.clone()
            opt.step()
        c.same("  constant gradient, t = 10: exp_avg/(1 - beta1**t) vs g",
               s["exp_avg"] / (1 - b1 ** 10), g)
        c.same("  exp_avg_sq/(1 - beta2**t) vs g**2", s["exp_avg_sq"] / (1 - b2 ** 10),
               g ** 2)
    raw = 0.1 / math.sqrt(0.001)
    c.holds(abs(raw - math.sqrt(10)) < 1e-12,
            f"uncorrected first step m_1/sqrt(v_1) at betas (0.9, 0.999): {raw:.4g} * sign(g)")
    return c.result("torch.optim.Adam stepped from a fresh state, float64")


def check_mse_gaussian_nll() -> NumericResult:
    gen = torch.Generator().manual_seed(0)
    B, d = 4, 3
    yhat = torch.randn(B, d, generator=gen, dtype=DTYPE)
    y = torch.randn(B, d, generator=gen, dtype=DTYPE)
    c = _Checks()
    for sigma2 in (0.25, 1.0, 3.0):
        var = torch.full((B, d), sigma2, dtype=DTYPE)
        a = yhat.clone().requires_grad_(True)
        nll = F.gaussian_nll_loss(a, y, var, full=True, reduction="sum")
        (g_nll,) = torch.autograd.grad(nll, a)
        b = yhat.clone().requires_grad_(True)
        mse = F.mse_loss(b, y)
        (g_mse,) = torch.autograd.grad(mse, b)
        scale = B * d / (2 * sigma2)
        const = B * d / 2 * math.log(2 * math.pi * sigma2)
        c.same(f"sigma^2 = {sigma2}: gaussian_nll_loss(sum, full) vs B*d/(2*sigma^2)*MSE + "
               "B*d/2*log(2*pi*sigma^2)", nll.detach(), scale * mse.detach() + const)
        c.same("  gradients: dNLL/dyhat vs B*d/(2*sigma^2) * dMSE/dyhat", g_nll, scale * g_mse)
        mean = F.gaussian_nll_loss(yhat, y, var, full=True)
        c.same("  gaussian_nll_loss(mean, full) vs MSE/(2*sigma^2) + log(2*pi*sigma^2)/2",
               mean, mse.detach() / (2 * sigma2) + math.log(2 * math.pi * sigma2) / 2)
    return c.result(f"F.gaussian_nll_loss against F.mse_loss, B={B}, d={d}, float64")


def check_ce_vs_mse_sigmoid() -> NumericResult:
    c = _Checks()
    ce_grads, mse_grads = [], []
    for zv in (-5.0, -10.0, -20.0, -40.0):
        z = torch.tensor([zv], dtype=DTYPE, requires_grad=True)
        one = torch.ones(1, dtype=DTYPE)
        (g_ce,) = torch.autograd.grad(F.binary_cross_entropy_with_logits(z, one), z)
        z2 = z.detach().clone().requires_grad_(True)
        (g_mse,) = torch.autograd.grad(F.mse_loss(torch.sigmoid(z2), one), z2)
        s = torch.sigmoid(z.detach())
        c.same(f"z = {zv:g}: autograd CE gradient vs sigma(z) - 1", g_ce, s - 1,
               relative=True)
        c.same("  autograd MSE-through-sigmoid gradient vs 2*(sigma - 1)*sigma*(1 - sigma)",
               g_mse, 2 * (s - 1) * s * (1 - s), relative=True)
        ce_grads.append(float(g_ce[0]))
        mse_grads.append(float(g_mse[0]))
        c.lines.append(f"  CE gradient {float(g_ce[0]):.6g}, MSE gradient "
                       f"{float(g_mse[0]):.3g}")
    c.holds(all(abs(g + 1) < 0.01 for g in ce_grads),
            "CE gradients within 0.01 of -1 for z <= -5")
    c.holds(all(abs(a) > abs(b) for a, b in zip(mse_grads, mse_grads[1:])) and
            abs(mse_grads[-1]) < 1e-16, "MSE gradients shrink towards 0 (|.| < 1e-16 at -40)")
    c.same("MSE gradient / exp(z) at z = -40 vs -2", mse_grads[-1] / math.exp(-40.0), -2.0,
           tol=1e-12, relative=True)
    z = torch.tensor([-20.0, 0.0, 5.0], dtype=DTYPE, requires_grad=True)
    (g_ce,) = torch.autograd.grad(F.cross_entropy(z[None], torch.tensor([0])), z)
    z2 = z.detach().clone().requires_grad_(True)
    onehot = torch.tensor([1.0, 0.0, 0.0], dtype=DTYPE)
    (g_mse,) = torch.autograd.grad(F.mse_loss(torch.softmax(z2, 0), onehot, reduction="sum"),
                                   z2)
    c.holds(abs(float(g_ce[0]) + 1) < 1e-8 and abs(float(g_mse[0])) < 1e-8,
            f"softmax, logits (-20, 0, 5), true class 0: CE gradient wrt z_0 is "
            f"{float(g_ce[0]):.6g}, squared-error gradient wrt z_0 is {float(g_mse[0]):.3g}")
    return c.result("autograd through F.binary_cross_entropy_with_logits, F.mse_loss after "
                    "a sigmoid, F.cross_entropy and F.mse_loss after a softmax, float64")


CHECKS = {
    "nesterov-lookahead": check_nesterov_lookahead,
    "l2-weight-decay-sgd": check_l2_weight_decay_sgd,
    "l2-weight-decay-momentum": check_l2_weight_decay_momentum,
    "l2-weight-decay-adam": check_l2_weight_decay_adam,
    "batchnorm-fold": check_batchnorm_fold,
    "adam-bias-correction": check_adam_bias_correction,
    "mse-gaussian-nll": check_mse_gaussian_nll,
    "ce-vs-mse-sigmoid": check_ce_vs_mse_sigmoid,
}


def numeric_check(name: str) -> NumericResult:
    """The numeric check of identity ``name`` (see CHECKS)."""
    if name not in CHECKS:
        return NumericResult(None, f"no numeric check for {name!r}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # module initializers draw from the global generator
        return CHECKS[name]()
