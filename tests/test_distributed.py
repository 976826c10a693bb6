"""Distributed training: the derived collectives, DDP and ZeRO figures, against hand
counts, the ZeRO paper and real gloo runs (2 and 4 processes on this CPU)."""

from __future__ import annotations

import pytest
import sympy as sp

from derivations import distributed as dist_model
from symflop import derive
from symflop.cost.collectives import repeat

Psi, N, K, M = dist_model.Psi, dist_model.N, dist_model.K, dist_model.M


def test_ring_collectives_by_hand():
    # reduce-scatter: N - 1 rounds, each one chunk of Psi/N out, one in, one chunk added
    rs = dist_model.ring_reduce_scatter()
    assert sp.simplify(rs.sent - (N - 1) * Psi / N) == 0
    assert sp.simplify(rs.additions - (N - 1) * Psi / N) == 0 and rs.rounds == N - 1
    # all-reduce = reduce-scatter + all-gather: 2 (N - 1)/N Psi each way, 2 (N - 1) rounds
    ar = dist_model.ring_all_reduce()
    assert sp.simplify(ar.sent - 2 * (N - 1) * Psi / N) == 0
    assert sp.simplify(ar.received - ar.sent) == 0 and sp.expand(ar.rounds) == 2 * N - 2
    # alpha-beta time at N = 4, 1000 float32 values: 6 rounds, 1500 values sent
    a, b = sp.symbols("alpha beta", positive=True)
    assert ar.at(Psi=1000, N=4).time(a, b, 4) == 6 * a + 6000 * b
    # tree broadcast: ceil(log2 N) rounds of everything from the root
    assert dist_model.tree_broadcast().at(Psi=10, N=5).rounds == 3


def test_alpha_beta_fit_recovers_a_known_model():
    """Times made from alpha = 50 us and 2 GB/s, at N = 2 and 8: the fit gives them back
    with no error; one time 10 % slow shows as that point's error; the committed gloo
    measurement (the report's figure) fits with every point's error under 100 %."""
    from symflop.cost.collectives import fit_alpha_beta
    alpha, beta = 50e-6, 1 / 2e9
    measured = []
    for n in (2, 8):
        for elements in (256, 65536, 1 << 22):
            # by hand: 2 (n - 1) rounds, 2 (n - 1)/n elements x 4 bytes each
            t = 2 * (n - 1) * alpha + 2 * (n - 1) / n * elements * 4 * beta
            measured.append((dist_model.ring_all_reduce().at(Psi=elements, N=n), 4, t))
    fit = fit_alpha_beta(measured)
    assert fit.alpha == pytest.approx(alpha, rel=1e-9)
    assert fit.bandwidth == pytest.approx(2e9, rel=1e-9)
    assert fit.max_error < 1e-9
    c, b, t = measured[4]
    assert fit.predict(c, b) == pytest.approx(t, rel=1e-9)
    slow = fit_alpha_beta(measured[:4] + [(c, b, 1.1 * t)] + measured[5:])
    assert slow.max_error == pytest.approx(abs(slow.errors[4]), rel=1e-12)
    with pytest.raises(ValueError, match="two measurements"):
        fit_alpha_beta(measured[:1])
    fits = dist_model.measured_all_reduce_fits()
    assert set(fits) == {"N = 2 alone", "N = 4 alone", "all N, one fit"}
    for fit, points in fits.values():
        assert len(fit.errors) == len(points) >= 8 and fit.alpha > 0 and fit.beta > 0
        assert fit.max_error < 1.0


def test_ddp_buckets_and_micro_batches():
    sync = dist_model.ddp_gradient_sync()
    assert sp.expand(sync.rounds - 2 * K * (N - 1)) == 0      # one all-reduce per bucket
    assert sp.simplify(sync.sent - 2 * (N - 1) * Psi / N) == 0  # ... the same bytes
    no = dist_model.ddp_gradient_sync(no_sync=False)                    # once per micro-batch
    assert sp.simplify(no.sent - M * sync.sent) == 0
    assert repeat(dist_model.ring_all_reduce(), 3).at(Psi=6, N=3).sent == 3 * 8


def test_zero_paper_figures():
    """Rajbhandari et al. (2020), Figure 1: 7.5B parameters, 64 devices, mixed-precision
    Adam (K = 12): 120 GB (DDP), 31.4 GB (stage 1), 16.6 GB (stage 2), 1.9 GB (stage 3)."""
    assert dist_model.bytes_per_parameter("adam") == {"parameters": 2, "gradients": 2,
                                             "optimizer state": 12}
    at = {Psi: 7_500_000_000, N: 64}
    gb = {s: round(float(sum(dist_model.per_device_memory(s).values()).xreplace(at)) / 1e9, 1)
          for s in dist_model.STAGES}
    assert gb == {"DDP": 120.0, "ZeRO-1": 31.4, "ZeRO-2": 16.6, "ZeRO-3": 1.9}
    # Section 7: stages 1 and 2 move what DDP moves; stage 3 1.5 times as much
    ddp = dist_model.step_communication("DDP").sent
    assert all(sp.simplify(dist_model.step_communication(s).sent - ddp) == 0
               for s in ("ZeRO-1", "ZeRO-2"))
    assert sp.simplify(dist_model.step_communication("ZeRO-3").sent / ddp) == sp.Rational(3, 2)
    # plain SGD keeps no state: float32 master copy only
    assert dist_model.bytes_per_parameter("sgd")["optimizer state"] == 4


def test_distributed_table_from_the_command_line(capsys):
    from conftest import run_cli
    code, out, err = run_cli(capsys, "table", "distributed-memory", "--dims",
                             "Psi=1.5e9,N=8", "--format", "csv")
    assert code == 0, err
    rows = {r.split(",")[0]: r for r in out.splitlines()[1:]}
    assert rows["ZeRO-3"].split(",")[5] == "3.0"   # 16 x 1.5e9 / 8 bytes = 3.0 GB
    code, _, err = run_cli(capsys, "table", "distributed-memory", "--dims", "Psi=-3")
    assert code == 2 and "POSITIVE_INTEGER" in err
    # `symflop table distributed` (the name) is the same table
    code, alias, err = run_cli(capsys, "table", "distributed", "--dims", "Psi=1.5e9,N=8",
                               "--format", "csv")
    assert code == 0 and alias == out, err


@pytest.fixture(scope="module", params=[2, 4])
def gloo_run(request):
    pytest.importorskip("torch")
    from validation.distributed_checks import run
    return request.param, run(request.param, caps=(25.0, 0.01, 0.004))


def test_ddp_bytes_to_the_all_reduce_equal_the_derived(gloo_run):
    import torch

    from validation.distributed_checks import model
    world, ranks = gloo_run
    numels = [p.numel() for p in model().parameters()]
    psi_bytes = sum(numels) * 4
    derived = dist_model.ddp_gradient_sync(buckets=1, micro_batches=1).at(Psi=sum(numels), N=world)
    assert derived.elements * 4 == psi_bytes
    ready = list(reversed(numels))  # a chain of layers: gradients ready last layer first
    for r in ranks:
        for cap, (first, second) in r["ddp"].items():
            assert first == [psi_bytes]          # the first step: one bucket of all
            cap_bytes = int(float(cap) * 2 ** 20)
            first_cap = r["first_bucket_bytes"] if cap_bytes == 25 * 2 ** 20 else cap_bytes
            assert cap == "25.0" or first_cap == cap_bytes
            expected = dist_model.ddp_buckets(ready, 4, cap_bytes, cap_bytes)
            assert second == expected, cap
            assert sum(second) == psi_bytes
    assert len(ranks[0]["ddp"]["0.004"][1]) > 1  # small caps do cut the gradients
    assert torch.distributed.is_available()


def test_zero_redundancy_optimizer_state_per_rank(gloo_run):
    from derivations import optimizers
    from validation.distributed_checks import model
    world, ranks = gloo_run
    numels = [p.numel() for p in model().parameters()]
    shares = dist_model.zero_partition(numels, world)
    adam = optimizers.COMPONENTS["adam"]()
    state = derive(adam).memory.elements("state")
    for r, share in zip(ranks, shares, strict=True):
        assert sorted(r["zero"]["owned"]) == sorted(share)
        derived = sum(state.xreplace({adam.dims["P"]: n}) * 4 for n in share)
        assert r["zero"]["state_bytes"] == derived
    # all ranks together hold Adam's state once: 8 bytes a parameter, 4 per tensor
    assert sum(r["zero"]["state_bytes"] for r in ranks) == 8 * sum(numels) + 4 * len(numels)


def test_fsdp_shards_per_rank(gloo_run):
    """Both of torch's FSDPs run on CPU with gloo: ZeRO-3's Psi/N per device, as each
    cuts (FSDP1 pads one flat tensor; fully_shard cuts each parameter's rows)."""
    from validation.distributed_checks import model
    world, ranks = gloo_run
    params = list(model().parameters())
    numels = [p.numel() for p in params]
    for rank, r in enumerate(ranks):
        assert r["fsdp"]["fsdp1"] == [dist_model.fsdp_flat_shard(numels, world)]
        assert sum(r["fsdp"]["fsdp2"].values()) == dist_model.fsdp_per_parameter_shard(
            [tuple(p.shape) for p in params], world, rank)
    assert sum(sum(r["fsdp"]["fsdp2"].values()) for r in ranks) == sum(numels)


def test_distributed_step_time_by_hand(capsys):
    """DDP on H100s, by hand: the network at 989.4 TFLOP/s, Adam's generated step moving
    7 float32 values a parameter (and 3 scalars) and the loss scaling's unscale moving 2
    float16 values a parameter (gradient in, unscaled out; and 14 scalars) at 3.35 TB/s;
    FLOPs, counted as written (--stage written): 3 F b, Adam's 14 Psi + 7 (test_optimizers'
    hand count, 147 at P = 10), the unscale's 5 Psi + 16 (test_precision's), the
    all-reduce's (N - 1)/N Psi additions; a ring all-reduce of half-precision gradients:
    2 (N - 1) rounds of alpha, 2 (N - 1)/N Psi x 2 bytes at
    450 GB/s."""
    import csv
    import io

    from conftest import run_cli
    Psi_, N_, b_, F_, alpha_ns = 1_000_000_000, 8, 2, 10 ** 12, 1000
    code, out, err = run_cli(capsys, "table", "distributed-step", "--format", "csv",
                             "--dims", f"Psi={Psi_},N={N_},b={b_},F={F_},"
                                       f"alpha_ns={alpha_ns}")
    assert code == 0, err
    rows = list(csv.reader(io.StringIO(out)))
    ddp = next(r for r in rows if r[:2] == ["DDP", "h100"])
    network = 3 * F_ * b_ / 989.4e12
    optimizer = ((7 * Psi_ + 3) * 4 + (2 * Psi_ + 14) * 2) / 3.35e12
    communicate = 2 * (N_ - 1) * alpha_ns * 1e-9 + 2 * (N_ - 1) / N_ * Psi_ * 2 / 450e9
    got = [float(x) for x in ddp[5:10]]
    want = [network, optimizer, communicate, network + optimizer + communicate,
            max(network, communicate) + optimizer]
    assert got == pytest.approx(want, rel=1e-12)
    assert float(ddp[4]) == 16 * Psi_ / 1e9  # 2 + 2 + 12 bytes a parameter, unsharded
    code, out, err = run_cli(capsys, "table", "distributed-step", "--format", "csv",
                             "--stage", "written", "--dims", f"Psi={Psi_},N={N_},b={b_},"
                                                             f"F={F_}")
    assert code == 0, err
    ddp = next(r for r in csv.reader(io.StringIO(out)) if r[:2] == ["DDP", "h100"])
    flops = 3 * F_ * b_ + 14 * Psi_ + 7 + 5 * Psi_ + 16 + (N_ - 1) * Psi_ // N_
    assert float(ddp[2]) == pytest.approx(flops / 1e12, rel=1e-15)
    code, _, err = run_cli(capsys, "table", "distributed-step", "--dims", "Q=1")
    assert code == 2 and "has no size Q" in err


def test_a_noisy_collectives_fit_never_replaces_a_saved_measurement(tmp_path):
    """bench/collectives.py --save once overwrote the committed measurement with a fit
    whose median error was 42.6 % (a busy machine), without a word."""
    import importlib.util
    import json
    import random
    from pathlib import Path
    root = Path(__file__).resolve().parent.parent
    spec = importlib.util.spec_from_file_location("bench_collectives",
                                                  root / "bench" / "collectives.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    saved = root / "derivations" / "measured" / "gloo-all-reduce.json"
    good = json.loads(saved.read_text())
    assert bench.refusal(good, str(saved)) is None    # as good as itself: may replace it
    rng = random.Random(0)
    noisy = {**good, "points": [{**p, "seconds": p["seconds"] * rng.choice((0.3, 1, 3))}
                                for p in good["points"]]}
    assert bench.worst_median_error(noisy) > bench.QUIET_ERROR
    why = bench.refusal(noisy, str(saved))
    assert why.startswith(f"not saved to {saved}: the fit's median error is ")
    assert "or give --force" in why
    assert bench.refusal(noisy, str(tmp_path / "new.json")).startswith("not saved")
