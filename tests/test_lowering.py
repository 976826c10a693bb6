"""The lowered stage: what a pass returns, fusion, blocks, in-place updates, bytes moved,
the roofline, and the backends that run it (blocked eager, NumPy, torch.compile)."""

import json
import shutil

import numpy as np
import pytest
import sympy as sp
import torch
from checks import inputs
from conftest import derived

import symflop.lower.backend as backend_module
import symflop.lower.backends as backends
from symflop.cli import main
from validation.executed import compare_passes
from validation.harness import run_passes
from validation.references import REFERENCES

P, N, d = sp.symbols("P N d", integer=True, positive=True)


def test_batchnorm_lowered_recomputes_xhat_and_returns_what_backward_reads():
    _, dv = derived("batchnorm")
    fired = {(r, p) for r, p, _ in dv.stage("lowered").fired}
    assert {("recompute-forward", "backward"), ("fuse-elementwise", "forward"),
            ("fuse-loops", "backward"), ("in-place-update", "forward")} <= fired
    # Hand count of what the forward returns: y, the running statistics, and the mean
    # and variance the backward reads; xhat and x - mu are computed inside kernels.
    assert dv.sources["forward"][1].outputs == ("mu", "var", "y", "running_mean",
                                                "running_var")
    assert [n for n, _ in dv.memory_at("code").saved] == ["var", "mu", "x"]
    # Bytes moved (elements), by hand: forward reads x for the mean, again for the
    # variance, again for y, and writes y (4Nd); backward reads x and grad_y once for
    # both sums (one loop), both again for grad_x, and writes it (5Nd).
    moved = dict(dv.memory_at("code").moved)
    assert sp.Poly(moved["forward"], N, d).coeff_monomial(N * d) == 4
    assert sp.Poly(moved["backward"], N, d).coeff_monomial(N * d) == 5


def test_adam_moves_seven_words_per_parameter():
    _, dv = derived("adam")
    # read g, m, v, theta; write m, v, theta (one loop); t read and written by the
    # scalar step and read by the loop: 3.
    assert dict(dv.memory_at("code").moved)["step"] == 7 * P + 3
    assert dv.lowered["step"].loops == ((0,), (1, 2, 3))


@pytest.mark.parametrize("name", ["batchnorm", "layernorm", "cross-entropy", "adam",
                                  "groupnorm", "focal", "dropout", "linear",
                                  "conv2d-im2col", "nesterov-lookahead"])
@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_many_small_blocks_give_the_one_block_results_and_counts(monkeypatch, name, backend):
    """Blocks of 3 elements (so several blocks, the last one short) against blocks that
    hold everything: the same results, and the executed counts of the blocked torch
    code are the lowered stage's."""
    c, dv = derived(name)
    sizes = {k: v + 2 for k, v in REFERENCES[name].sizes.items()}
    values = inputs(name, sizes, seed=3)
    monkeypatch.setattr(backend_module, "BLOCK_ELEMENTS", 1 << 30)
    whole = run_passes(dv, values, backend=backend, seed=5)
    monkeypatch.setattr(backend_module, "BLOCK_ELEMENTS", 3)
    assert backends.NumpyBackend.rows(10, 1) == 3
    blocked = run_passes(dv, values, backend=backend, seed=5)
    assert whole.keys() == blocked.keys()
    for k in whole:
        np.testing.assert_allclose(np.asarray(blocked[k]), np.asarray(whole[k]),
                                   rtol=1e-12, atol=1e-14, err_msg=k)
    if backend == "torch":
        for row in compare_passes(dv, values, sizes, seed=5):
            assert row.matches, (row.pass_name, row.notes, row.unknown)


def test_in_place_form_writes_the_state_buffers_and_the_pure_form_does_not():
    _, dv = derived("adam")
    step = dv.compiled("step")
    g = torch.randn(1000, dtype=torch.float64)
    hyp = {"beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8, "lr": 1e-3}
    state = {"m": torch.randn(1000, dtype=torch.float64),
             "v": torch.rand(1000, dtype=torch.float64),
             "theta": torch.randn(1000, dtype=torch.float64), "t": 3}
    before = {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in state.items()}
    pure = step(backend="torch", g=g, **hyp, **state)
    for k in ("m", "v", "theta"):
        assert torch.equal(state[k], before[k]) and pure[k] is not state[k]
    inplace = step(backend="torch", inplace=True, g=g, **hyp, **state)
    for k in ("m", "v", "theta"):
        assert inplace[k] is state[k]
        torch.testing.assert_close(state[k], pure[k], rtol=0, atol=0)
    assert inplace["t"] == pure["t"] == 4


def test_roofline_predicts_bytes_over_bandwidth_for_a_memory_bound_pass(capsys):
    assert main(["count", "adam", "--dims", "P=1000000", "--roofline", "1e9,1e15",
                 "--json"]) == 0
    r = json.loads(capsys.readouterr().out)["roofline"]["passes"]["step"]
    # float32: 4 bytes x (7P + 3) elements, at 1e9 bytes/s, far below the FLOP peak
    assert r["bytes"] == 4 * (7 * 10**6 + 3)
    assert all(k["bound"] == "memory" for k in r["kernels"])
    assert r["seconds"] == pytest.approx(4 * (7 * 10**6 + 3) / 1e9, rel=1e-12)
    assert main(["count", "adam", "--dims", "P=1000", "--roofline", "h100"]) == 0
    assert "H100" in capsys.readouterr().out


@pytest.mark.parametrize("bad, message", [
    (["--roofline", "fast"], "give a preset"),
    (["--roofline=-1,5"], "must be positive"),
])
def test_roofline_rejects_a_bad_machine_in_one_line(capsys, bad, message):
    assert main(["count", "adam", "--dims", "P=10", *bad]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_roofline_needs_every_size(capsys):
    assert main(["count", "batchnorm", "--dims", "N=10", "--roofline", "h100"]) == 2
    assert "needs the size(s) d" in capsys.readouterr().err


@pytest.mark.skipif(shutil.which("g++") is None and shutil.which("cc") is None,
                    reason="torch.compile's C++ backend needs a C++ compiler")
def test_compiled_backend_matches_eager_in_place_and_reports_compile_time():
    _, dv = derived("adam")
    step = dv.compiled("step")
    g = torch.randn(257, dtype=torch.float32)
    hyp = {"beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8, "lr": 1e-3}
    runs = {}
    for backend in ("torch", "torch-compiled"):
        st = {"m": torch.zeros(257), "v": torch.zeros(257), "theta": torch.ones(257),
              "t": 0}
        for _ in range(3):
            out = step(backend=backend, inplace=True, g=g, **hyp, **st)
            st["t"] = out["t"]
            assert out["theta"] is st["theta"]
        runs[backend] = st
    torch.testing.assert_close(runs["torch-compiled"]["theta"], runs["torch"]["theta"])
    assert float(runs["torch-compiled"]["t"]) == 3
    assert step.compile_seconds and all(s > 0 for s in step.compile_seconds.values())


def test_a_linear_layer_runs_as_matrix_products_counted_as_written():
    _, dv = derived("linear")
    assert "y_sum = xp.contract('oi,bi->bo', W, x)" in dv.sources["forward"][0]
    assert "grad_W = xp.contract('bo,bi->oi', grad_y, x)" in dv.sources["backward"][0]
    sizes = {"B": 3, "O": 4, "I": 5}
    values = inputs("linear", sizes, seed=2)
    rows = {r.pass_name: r for r in compare_passes(dv, values, sizes, seed=2)}
    # hand count: y_sum is B*O sums of I products (I mul, I - 1 add), y adds the bias
    assert rows["forward"].executed == {**rows["forward"].executed, "mul": 3 * 4 * 5,
                                        "add": 3 * 4 * 4 + 3 * 4}
    assert rows["forward"].matches and rows["backward"].matches
    assert any(op == "aten.mm" or op == "aten.bmm" for op, _ in rows["forward"].by_op)


def test_results_can_be_written_into_given_arrays():
    from symflop import InputError
    _, dv = derived("batchnorm")
    fwd = dv.compiled("forward")
    values = inputs("batchnorm", {"N": 9, "d": 4}, seed=1)
    args = {n: values[n] for n in fwd.signature.inputs}
    plain = fwd(backend="torch", **args)
    buf, loss = torch.zeros(9, 4, dtype=torch.float64), torch.zeros(4, dtype=torch.float64)
    got = fwd(backend="torch", into={"y": buf, "mu": loss}, **args)
    assert got["y"] is buf and got["mu"] is loss
    torch.testing.assert_close(buf, plain["y"], rtol=0, atol=0)
    torch.testing.assert_close(loss, plain["mu"], rtol=0, atol=0)
    with pytest.raises(InputError, match="no result 'xhat'"):
        fwd(backend="torch", into={"xhat": buf}, **args)
    with pytest.raises(InputError, match=r"into\['y'\] must be a torch array of shape \(9, 4\)"):
        fwd(backend="torch", into={"y": torch.zeros(4, 9, dtype=torch.float64)}, **args)


def test_full_size_temporaries_of_the_code():
    _, bn = derived("batchnorm")
    # the forward stores only the two per-feature sums it does not return
    assert dict(bn.memory_at("code").temporaries)["forward"] == 2 * d
    _, ce = derived("cross-entropy")
    B, C = sp.symbols("B C", integer=True, positive=True)
    # the backward's exp(z - lse)/B buffer becomes grad_z itself (scatter in place)
    assert dict(ce.memory_at("code").temporaries)["backward"] == 0
    assert ce.lowered["backward"].kernels[-1].reuse_base
    assert "xp.scatter_add_(grad_z_base" in ce.sources["backward"][0]


def test_backend_errors_are_one_line(capsys):
    from symflop import UsageError
    with pytest.raises(UsageError, match="known: numpy, torch, torch-compiled"):
        backends.get_backend("jax")
    assert main(["validate", "adam", "--backend", "numpy", "--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and ("numpy" in err or "CUDA" in err)


def test_numpy_in_place_form_updates_the_arrays():
    _, dv = derived("adam")
    step = dv.compiled("step")
    m, v, theta = np.zeros(7), np.zeros(7), np.ones(7)
    out = step(backend="numpy", inplace=True, g=np.full(7, 0.5), m=m, v=v, theta=theta, t=0,
               beta1=0.9, beta2=0.999, epsilon=1e-8, lr=0.1)
    assert out["theta"] is theta and out["m"] is m and out["v"] is v
    # hand value: after one step, mhat = g and vhat = g**2, so theta = 1 - lr*g/(|g| + eps)
    np.testing.assert_allclose(theta, 1 - 0.1 * 0.5 / (0.5 + 1e-8), rtol=1e-12)


def test_compiled_backend_splits_a_long_sum_into_runs():
    """The compiled backend sums a long axis as sums of 1024-value runs plus the rest:
    the same values (to rounding), kept dimensions, along either axis; short axes and
    sums over several axes as before."""
    xp = backends.get_backend("torch-compiled")
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(5000, 3, dtype=torch.float64, generator=gen)  # 4 runs and 904 left
    for axes, shape in (((0,), (1, 3)), ((-2,), (1, 3)), ((1,), (5000, 1)),
                        ((0, 1), (1, 1))):
        got = xp.sum(x, axes)
        assert got.shape == shape
        torch.testing.assert_close(got, x.sum(dim=axes, keepdim=True), rtol=1e-13, atol=0)
    t = x.t()  # a permuted view, the long axis last
    for axis in (1, -1):
        torch.testing.assert_close(xp.sum(t, (axis,)), t.sum(1, keepdim=True), rtol=1e-13,
                                   atol=0)
    exact = torch.ones(4096, 2, dtype=torch.float64)       # no remainder
    assert xp.sum(exact, (0,)).tolist() == [[4096.0, 4096.0]]


def test_row_sums_read_their_tensor_unpermuted():
    """BatchNorm's column sums (mu, var, the backward's two) are written in the memory
    order of x, summed down axis 0, so that no operand is a permuted view."""
    _c, d = derived("batchnorm")
    for name in ("forward", "backward"):
        source = d.compiled(name).source
        assert "xp.permute" not in source, name
        assert "xp.sum(" in source and ", (0,))" in source
