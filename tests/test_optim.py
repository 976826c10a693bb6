"""The generated optimizer step standing in for torch.optim: trajectories, per-tensor
state, the multi-tensor run, the flat buffers, the thread choice, bad input."""

from __future__ import annotations

import copy

import pytest

torch = pytest.importorskip("torch")

from symflop.api import derivation  # noqa: E402
from symflop.errors import InputError, UsageError  # noqa: E402
from symflop.lower import threads  # noqa: E402
from symflop.lower.multi import PACK_BELOW, MultiTensorPass  # noqa: E402
from symflop.optim import Optimizer  # noqa: E402

# (component, its hyperparameters, torch's optimizer, torch's hyperparameters)
CASES = [
    ("adam", {"lr": 1e-2}, torch.optim.Adam, {"lr": 1e-2}),
    ("adamw", {"lr": 1e-2, "lam": 0.1}, torch.optim.AdamW, {"lr": 1e-2, "weight_decay": 0.1}),
    ("sgd", {"lr": 0.05}, torch.optim.SGD, {"lr": 0.05}),
    ("momentum", {"lr": 0.01, "mu": 0.9}, torch.optim.SGD, {"lr": 0.01, "momentum": 0.9}),
    ("nesterov", {"lr": 0.01, "mu": 0.9}, torch.optim.SGD,
     {"lr": 0.01, "momentum": 0.9, "nesterov": True}),
    ("rmsprop", {"lr": 1e-2}, torch.optim.RMSprop, {"lr": 1e-2}),
    ("adagrad", {"lr": 0.1}, torch.optim.Adagrad, {"lr": 0.1}),
]


def _model():
    """A weight of 131,072 values (run alone) and small tensors (packed together)."""
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Linear(256, 512), torch.nn.LayerNorm(512),
                            torch.nn.ReLU(), torch.nn.Linear(512, 10), torch.nn.Linear(10, 10))
    return m.double()


def _train(model, opt, steps: int = 20, skip_last_every: int = 0):
    g = torch.Generator().manual_seed(1)
    for step in range(steps):
        x = torch.randn(32, 256, dtype=torch.float64, generator=g)
        y = torch.randn(32, 10, dtype=torch.float64, generator=g)
        opt.zero_grad()
        # on some steps the last layer takes no part: its gradient stays None
        skip = skip_last_every and step % skip_last_every == skip_last_every - 1
        out = model[:4](x) if skip else model(x)
        torch.nn.functional.mse_loss(out, y).backward()
        opt.step()


@pytest.mark.parametrize("flat", [True, False], ids=["flat", "lists"])
@pytest.mark.parametrize("name,ours,theirs,their_hp", CASES, ids=[c[0] for c in CASES])
def test_twenty_steps_reach_torchs_weights(name, ours, theirs, their_hp, flat):
    start = _model()
    a, b = copy.deepcopy(start), copy.deepcopy(start)
    opt = Optimizer(a.parameters(), name, flat=flat, **ours)
    _train(a, opt, skip_last_every=4)
    _train(b, theirs(b.parameters(), **their_hp), skip_last_every=4)
    for p, q, p0 in zip(a.parameters(), b.parameters(), start.parameters()):
        assert float((q - p0).detach().abs().max()) > 1e-4  # the weights moved
        assert float((p - q).detach().abs().max()) <= 1e-12
    assert (len(opt._layouts) == 1) == flat


def test_state_is_per_tensor_as_torch_keeps_it():
    start = _model()
    a, b = copy.deepcopy(start), copy.deepcopy(start)
    ours, theirs = Optimizer(a.parameters(), "adam", lr=1e-2), torch.optim.Adam(
        b.parameters(), lr=1e-2)
    _train(a, ours, steps=3)
    _train(b, theirs, steps=3)
    for p, q in zip(a.parameters(), b.parameters()):
        st, ts = ours.state[p], theirs.state[q]
        assert st["m"].shape == p.shape and st["v"].shape == p.shape and st["t"] == 3
        assert float((st["m"] - ts["exp_avg"]).abs().max()) <= 1e-15
        assert float((st["v"] - ts["exp_avg_sq"]).abs().max()) <= 1e-15


def test_flat_buffers_follow_a_moved_model_and_a_loaded_state():
    """``p.data`` replaced (as module.to does) and the state replaced (load_state_dict):
    the next step lays the buffers out again and still agrees with torch."""
    start = _model()
    a, b = copy.deepcopy(start), copy.deepcopy(start)
    ours = Optimizer(a.parameters(), "adam", lr=1e-2)
    theirs = torch.optim.Adam(b.parameters(), lr=1e-2)
    _train(a, ours, steps=2)
    _train(b, theirs, steps=2)
    first = ours._layouts[0]
    for p in a.parameters():
        p.data = p.data.clone()
    ours.load_state_dict(copy.deepcopy(ours.state_dict()))
    _train(a, ours, steps=2)
    _train(b, theirs, steps=2)
    assert ours._layouts[0] is not first
    for p, q in zip(a.parameters(), b.parameters()):
        assert float((p - q).detach().abs().max()) <= 1e-12


def test_the_multi_tensor_run_equals_one_call_per_tensor():
    d = derivation("adam")
    step = d.compiled("step")
    multi = MultiTensorPass(step)
    torch.manual_seed(3)
    shapes = [(PACK_BELOW + 5,), (3, 7), (PACK_BELOW * 2,), (11,), (2, 2, 2)]
    lists = {n: [torch.randn(s, dtype=torch.float64) for s in shapes]
             for n in ("g", "theta")}
    lists.update({n: [torch.rand(s, dtype=torch.float64) for s in shapes] for n in ("m", "v")})
    hyper = {"beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8, "lr": 1e-3}
    one = [step(backend="torch", t=4, **{n: lists[n][i].reshape(-1) for n in lists}, **hyper)
           for i in range(len(shapes))]
    given = {n: [a.clone() for a in ts] for n, ts in lists.items()}
    out = multi(backend="torch", t=4, **given, **hyper)
    assert out["t"] == 5
    for n in ("m", "v", "theta"):
        assert all(a is b for a, b in zip(out[n], given[n]))  # updated in place
        for i, shape in enumerate(shapes):
            assert out[n][i].shape == shape
            assert torch.equal(out[n][i].reshape(-1), one[i][n])
    kept = {n: [a.clone() for a in ts] for n, ts in lists.items()}
    new = multi(backend="torch", inplace=False, t=4, **kept, **hyper)
    assert all(torch.equal(a, b) for a, b in zip(kept["theta"], lists["theta"]))
    assert all(torch.equal(a, b) for a, b in zip(new["theta"], out["theta"]))


def test_bad_input_is_refused_before_anything_is_written():
    multi = MultiTensorPass(derivation("adam").compiled("step"))
    t = [torch.ones(3), torch.ones(4)]
    good = {"g": t, "m": [torch.zeros(3), torch.zeros(4)], "v": [torch.zeros(3), torch.zeros(4)],
            "theta": [torch.ones(3), torch.ones(4)], "t": 0, "beta1": 0.9, "beta2": 0.999,
            "epsilon": 1e-8, "lr": 1e-3}
    nan = [torch.ones(3), torch.tensor([1.0, float("nan"), 1.0, 1.0])]
    with pytest.raises(InputError, match=r"g\[1\] contains NaN"):
        multi(**{**good, "g": nan})
    assert all(torch.equal(a, torch.ones_like(a)) for a in good["theta"])
    with pytest.raises(InputError, match="differ in length"):
        multi(**{**good, "m": good["m"][:1]})
    with pytest.raises(InputError, match=r"m\[1\] is \(5,\)"):
        multi(**{**good, "m": [torch.zeros(3), torch.zeros(5)]})
    with pytest.raises(InputError, match="lr must be a number"):
        multi(**{**good, "lr": "fast"})
    with pytest.raises(InputError, match="missing input"):
        multi(**{k: v for k, v in good.items() if k != "v"})
    with pytest.raises(UsageError, match="elementwise over one size"):
        MultiTensorPass(derivation("cross-entropy").compiled("forward"))
    with pytest.raises(UsageError, match="not an optimizer"):
        Optimizer(_model().parameters(), "mse")
    with pytest.raises(UsageError, match="no hyperparameter 'momentum'"):
        Optimizer(_model().parameters(), "adam", momentum=0.9)
    with pytest.raises(UsageError, match="give the hyperparameter"):
        Optimizer(_model().parameters(), _decayed())
    with pytest.raises(UsageError, match="finite number"):
        Optimizer(_model().parameters(), "adam", lr=float("nan"))


def _decayed():
    """A user's optimizer, no engine change: s <- rho*s (s starts at 1), theta <- theta -
    lr*s*g; no customary values."""
    from symflop.core.model import Component
    c = Component("decayed", "Optimizers", "a decaying step")
    P = c.dim("P")
    p = c.index(p=P)
    theta, g = c.parameter("theta", (P,)), c.input("g", (P,))
    s = c.state("s", (P,), initial=1.0)
    lr, rho = c.hyper("lr rho")
    c.assign("step", s[p], rho * s[p])
    c.assign("step", theta[p], theta[p] - lr * s[p] * g[p])
    return c


def test_a_users_optimizer_starts_its_state_where_it_says():
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    opt = Optimizer([w], _decayed(), lr=0.5, rho=0.25)
    for _ in range(2):
        w.grad = torch.tensor([4.0, 8.0], dtype=torch.float64)
        opt.step()
    # by hand: s = 0.25 then 0.0625; w = w0 - 0.5*0.25*g - 0.5*0.0625*g
    assert w.detach().tolist() == [1.0 - 0.5 - 0.125, -2.0 - 1.0 - 0.25]
    assert opt.state[w]["s"].tolist() == [0.0625, 0.0625]


def test_a_large_call_takes_the_cores_other_work_leaves(monkeypatch):
    monkeypatch.setattr(threads, "_LAST", [0])
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        monkeypatch.setattr(threads, "cores", lambda: 2)
        monkeypatch.setattr(threads, "others_running", lambda: 2)
        with threads.threads_for(torch, threads.LOOK_ABOVE) as n:
            assert n == 2  # busy once only: a passing task, not lasting work
        for busy, expected in ((0, 2), (1, 2), (1, 1), (2, 1), (5, 1), (None, 2)):
            monkeypatch.setattr(threads, "others_running", lambda busy=busy: busy)
            with threads.threads_for(torch, threads.LOOK_ABOVE) as n:
                assert n == expected == torch.get_num_threads()
                with threads.threads_for(torch, threads.LOOK_ABOVE) as inner:
                    assert inner == expected  # decided once, outside
            assert torch.get_num_threads() == 2
        monkeypatch.setattr(threads, "others_running", lambda: 2)
        with threads.threads_for(torch, threads.LOOK_ABOVE - 1) as n:  # small: not looked at
            assert n == 2
    finally:
        torch.set_num_threads(before)


def test_others_running_reads_this_machine():
    busy = threads.others_running()
    assert busy is None or busy >= 0


def test_a_compiled_multi_tensor_run_returns_numbers_it_can_take_back():
    """torch.compile returns the step count as a 0-dimensional tensor; the run gives it
    back as a number, so the next call takes it (it refused it before)."""
    multi = MultiTensorPass(derivation("adam").compiled("step"))
    lists = {n: [torch.zeros(3), torch.zeros(5)] for n in ("m", "v")}
    lists.update({n: [torch.ones(3), torch.ones(5)] for n in ("g", "theta")})
    t = 0
    for _ in range(2):
        t = multi(backend="torch-compiled", t=t, **lists, beta1=0.9, beta2=0.999,
                  epsilon=1e-8, lr=1e-3)["t"]
        assert isinstance(t, float)
    assert t == 2
    assert float((lists["theta"][1] - (1 - 2e-3)).abs().max()) < 1e-6  # two steps of lr
