"""BatchNorm and LayerNorm in ``symflop estimate``: counted as torch's CPU kernels run
them (``derivations.norm_kernels``), against what a real training step executes
(``validation.step_count``, which costs the same kernels loop by loop on real tensors,
per-thread partial sums included)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from derivations.norm_kernels import welford_row  # noqa: E402
from symflop.core.ops import KINDS  # noqa: E402
from symflop.estimate import estimate  # noqa: E402
from validation.norm_kernel_count import rowwise_moments  # noqa: E402
from validation.step_count import step_counts  # noqa: E402

B = 6


class Residual(nn.Module):
    """LayerNorm on a residual stream: h is read by the norm and by the addition."""

    def __init__(self, affine: bool = True):
        super().__init__()
        self.a = nn.Linear(24, 32)
        self.ln = nn.LayerNorm(32, elementwise_affine=affine)
        self.b = nn.Linear(32, 10)

    def forward(self, x):
        h = self.a(x)
        return self.b(h + self.ln(h))


def _conv_bn(**bn) -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8, **bn), nn.ReLU(),
                         nn.Flatten(), nn.Linear(8 * 6 * 6, 10))


# name: (model, input shape, the norm's module, threads' partial sums in the backward
# (forward) per thread: a column of LayerNorm's weight gradients, a channel of a
# channels-last BatchNorm, two sums each)
CASES = {
    "layernorm": (lambda: Residual(), ("B", 24), "ln", 2 * 32, 0),
    "layernorm-no-affine": (lambda: Residual(False), ("B", 24), "ln", 0, 0),
    "batchnorm2d": (lambda: _conv_bn(), ("B", 3, 8, 8), "1", 0, 0),
    "batchnorm2d-no-affine": (lambda: _conv_bn(affine=False), ("B", 3, 8, 8), "1", 0, 0),
    "batchnorm2d-no-running-stats": (lambda: _conv_bn(track_running_stats=False),
                                     ("B", 3, 8, 8), "1", 0, 0),
    # (N, C): torch's channels-last kernels, k recomputed for every value
    "batchnorm1d": (lambda: nn.Sequential(nn.Linear(24, 32), nn.BatchNorm1d(32),
                                          nn.ReLU(), nn.Linear(32, 10)),
                    ("B", 24), "1", 2 * 32, 2 * 32),
}


@pytest.mark.parametrize("name", list(CASES))
def test_norm_line_equals_the_kernels_executed_operations(name):
    factory, shape, module, threads_bwd, threads_fwd = CASES[name]
    torch.manual_seed(0)
    model = factory()
    est = estimate(model, shape, use_cache=False, flop_counter=False)
    x = torch.randn(B, *(s for s in shape if s != "B"))
    counters = step_counts(model, x)
    line = next(ln for ln in est.lines if ln.name == module)
    T = torch.get_num_threads()
    for phase, threads in (("forward", threads_fwd), ("backward", threads_bwd)):
        executed = dict.fromkeys(KINDS, 0)
        for r in counters[phase].records:
            if r.op.startswith(("aten.native_batch_norm", "aten.native_layer_norm")):
                for k, v in r.counts.items():
                    executed[k] += v
        ours = {k: est.at(getattr(line, phase)[k], B=B) for k in KINDS}
        executed["add"] -= threads * T   # the partial sums of T threads, left out
        assert ours == executed, phase
        assert sum(ours.values()) > 0


def test_layernorm_on_a_residual_stream_has_its_gradients_added():
    """h feeds the LayerNorm and the addition: its two gradients are added, once per
    value (the norm's work is counted by kind, its gradient still flows to h)."""
    est = estimate(Residual(), ("B", 24), use_cache=False, flop_counter=False)
    sums = next(ln for ln in est.lines if ln.name == "(gradient sums)")
    assert est.at(sums.backward["add"], B=B) == B * 32


@pytest.mark.parametrize("width", [8, 16])
def test_welford_closed_form_equals_the_kernels_loops(width):
    """The estimate's closed form of RowwiseMoments' merges against validation's
    simulation of its loops, over row lengths from 1 to past a cascade of depth 5."""
    for n in list(range(1, 300)) + [1000, 1024, 3000, 4096, 5000, 8192, 11008, 16384]:
        assert welford_row(n, width) == {k: v for k, v in rowwise_moments(n, width).items()
                                         if k in ("add", "mul", "div")}, n
        assert all(v == 0 for k, v in rowwise_moments(n, width).items()
                   if k not in ("add", "mul", "div"))


def test_welford_merges_by_hand():
    """n = 64 on 16-float vectors: 4 vectors, one chunk, one merge into the cascade and 16
    lane merges: 4 64 + 4 16 + 4 16 additions, 2 64 + 4 16 + 4 16 multiplications, 1 +
    16 + 1 divisions (the last: m2 / n)."""
    assert welford_row(64, 16) == {"add": 384, "mul": 256, "div": 18}
