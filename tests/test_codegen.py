"""Code generation beyond the catalogue: axis alignment, reductions, stability rewrites."""

import numpy as np
import pytest
import sympy as sp
import torch

from symflop import Component, InputError, derive, total
from validation.harness import run_passes


def _bce() -> Component:
    """Binary cross-entropy through a sigmoid, written naively as log(1/(1+exp(-z)))."""
    c = Component("bce-test", "Test", "bce")
    B = c.dim("B")
    i = c.index(i=B)
    z, y = c.input("z", (B,)), c.target("y", (B,))
    L = c.output("L")
    p = 1 / (1 + sp.exp(-z[i]))
    c.assign("forward", L, -total(y[i] * sp.log(p) + (1 - y[i]) * sp.log(1 - p), i) / B)
    c.set_gradient(L, (z,))
    return c


def test_log_sigmoid_is_lowered_to_softplus_and_stays_finite():
    d = derive(_bce(), use_cache=False)
    src = d.sources["forward"][0]
    assert "xp.softplus" in src and "xp.log(" not in src
    z = torch.tensor([-1e4, -30.0, 0.0, 30.0, 1e4], dtype=torch.float32)
    y = torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0])
    ours = run_passes(d, {"z": z, "y": y}, backend="torch")
    want = torch.nn.functional.binary_cross_entropy_with_logits(z.double(), y.double())
    assert torch.isfinite(ours["L"])
    torch.testing.assert_close(ours["L"].double(), want, rtol=1e-5, atol=1e-3)
    zz = z.double().requires_grad_()
    torch.nn.functional.binary_cross_entropy_with_logits(zz, y.double()).backward()
    assert torch.isfinite(ours["grad_z"]).all()
    torch.testing.assert_close(ours["grad_z"].double(), zz.grad, rtol=1e-4, atol=1e-6)


def test_log_of_one_plus_is_lowered_to_log1p():
    c = Component("log1p-test", "Test", "log1p")
    n = c.dim("n")
    i = c.index(i=n)
    x, out = c.input("x", (n,)), c.output("out", (n,))
    c.assign("forward", out[i], sp.log(1 + x[i] ** 2))
    d = derive(c, use_cache=False)
    assert "xp.log1p(" in d.sources["forward"][0]
    x = np.array([1e-10, 1e-3, 2.0])
    got = d.compiled("forward")(x=x)["out"]
    np.testing.assert_allclose(got, np.log1p(x ** 2), rtol=1e-15)
    assert got[0] == pytest.approx(1e-20, rel=1e-12)  # log(1 + 1e-20) would give 0


def _transposed_contraction() -> Component:
    """out[b] = sum_k sum_j W[j, k] * x[b, j] * v[k]: permuted axes, two reduced indices."""
    c = Component("contract-test", "Test", "contraction")
    B, J, K = c.dim("B J K")
    b, j, k = c.index(b=B, j=J, k=K)
    W, x, v = c.parameter("W", (J, K)), c.input("x", (B, J)), c.input("v", (K,))
    out = c.output("out", (B,))
    L = c.output("L")
    c.assign("forward", out[b], total(W[j, k] * x[b, j] * v[k], k, j))
    c.assign("forward", L, total(sp.tanh(out[b]) ** 2, b))
    c.set_gradient(L, (W, x, v))
    return c


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_permuted_axes_and_multi_index_reductions_match_torch(backend):
    d = derive(_transposed_contraction(), use_cache=False)
    rng = np.random.default_rng(0)
    vals = {"W": rng.standard_normal((3, 4)), "x": rng.standard_normal((5, 3)),
            "v": rng.standard_normal(4)}
    tv = {k: torch.tensor(v, requires_grad=True) for k, v in vals.items()}
    L = (torch.tanh(torch.einsum("jk,bj,k->b", tv["W"], tv["x"], tv["v"])) ** 2).sum()
    L.backward()
    inputs = vals if backend == "numpy" else {k: torch.tensor(v) for k, v in vals.items()}
    ours = run_passes(d, inputs, backend=backend)
    for name in ("W", "x", "v"):
        got = ours[f"grad_{name}"]
        got = got.numpy() if isinstance(got, torch.Tensor) else got
        np.testing.assert_allclose(got, tv[name].grad.numpy(), rtol=1e-10, atol=1e-12)
    fused = run_passes(d, inputs, backend=backend, passes=("forward", "gradient"))
    got = fused["grad_W"]
    got = got.numpy() if isinstance(got, torch.Tensor) else got
    np.testing.assert_allclose(got, tv["W"].grad.numpy(), rtol=1e-10, atol=1e-12)


def test_a_sum_over_an_unused_index_multiplies_by_its_size():
    c = Component("bcast-test", "Test", "broadcast sum")
    n, m = c.dim("n m")
    i, j = c.index(i=n, j=m)
    a, out = c.input("a", (m,)), c.output("out", (m,))
    c.assign("forward", out[j], total(a[j] * 3, i))
    d = derive(c, use_cache=False)
    # The body does not use i: the sum is n copies. 3*n once, then a[j]*(3n): m + 1 FLOPs.
    assert d.counts("forward").total == sp.Symbol("m", integer=True, positive=True) + 1
    fwd = d.compiled("forward")
    with pytest.raises(InputError, match="cannot tell the size"):
        fwd(a=np.array([1.0, 2.0]))
    got = fwd(a=np.array([1.0, 2.0]), sizes={"n": 4})
    np.testing.assert_allclose(got["out"], 3 * np.array([1.0, 2.0]) * 4)


def test_generated_source_loops_only_over_blocks_of_rows():
    """The only Python loops run over blocks of rows, each as large as the backend asks
    (xp.rows), never over elements."""
    import re

    from derivations import CATALOGUE
    loop = re.compile(r"^ *for __s in range\(0, [^,]+, __r\):$")
    for build in CATALOGUE.values():
        c = build()
        if not isinstance(c, Component):
            continue  # a composite has no code of its own
        d = derive(c)
        for src, _, _ in d.sources.values():
            assert "while " not in src
            lines = src.splitlines()
            for n, line in enumerate(lines):
                if "for " in line:
                    assert loop.match(line), line
                    assert any(ln.strip().startswith("__r = xp.rows(") for ln in lines[:n])


def test_numpy_fused_forms_with_a_buffer_they_read():
    """a + s*x/y written into y's (or x's, a's) own buffer, as the generated code may
    offer a dying operand's buffer: the quotient must not overwrite y before reading it."""
    from symflop.lower.backends import get_backend
    xp = get_backend("numpy")

    def fresh():
        return np.ones(4), np.full(4, 2.0), np.full(4, 4.0)

    for which in range(3):
        a, x, y = fresh()
        buf = (a, x, y)[which]
        assert xp.addcdiv(a, x, y, 3.0, reuse=buf).tolist() == [2.5] * 4  # 1 + 3*2/4
        a, x, y = fresh()
        buf = (a, x, y)[which]
        assert xp.addcmul(a, x, y, 3.0, sub=True, reuse=buf).tolist() == [-23.0] * 4
    a, x, _ = fresh()
    assert xp.axpy(a, x, 3.0, reuse=x).tolist() == [7.0] * 4
