"""Tensor and sequence parallelism (symflop.estimate.tensor_parallel), the program a GPU
runs (symflop.estimate.gpu), and Korthikanti et al.'s Table 2 derived from a traced
layer (validation.megatron)."""

import json
from collections import Counter

import pytest
import sympy as sp
import torch

from symflop.errors import UsageError
from symflop.estimate.step import estimate
from symflop.estimate.tensor_parallel import layout, local_model
from validation import megatron as mg

H, A = 64, 8
KW = dict(loss="mse", input_dtype="bfloat16", flop_counter=False, use_cache=False)


@pytest.fixture(scope="module")
def layer():
    return mg.OneLayer(H, A).to(torch.bfloat16)


def _tp(model, t, sequence=False, implementation="torch"):
    return layout(model, t, mg.TP_PLAN, sequence=sequence, sequence_dim=0,
                  implementation=implementation)


def test_cpu_dropout_keeps_a_mask_of_the_input_type_and_cuda_one_byte(layer):
    cpu = estimate(layer, ("s", "b", H), target="cpu", **KW)
    cuda = estimate(layer, ("s", "b", H), target="cuda", **KW)
    s, b = cpu.symbols["s"], cpu.symbols["b"]
    # three dropouts: after the attention probabilities (a s^2 b values) and after each
    # block (s b h values each); a bfloat16 mask is 2 bytes, CUDA's bool mask 1; and
    # CUDA's two LayerNorms keep their mean and 1/std in float32, 2 bytes more a token each
    assert sp.expand(cpu.activation_bytes - cuda.activation_bytes) \
        == A * s**2 * b + 2 * s * b * H - 2 * 2 * 2 * s * b
    # CUDA's kernel multiplies by the mask and by 1/(1-p) in the backward pass too (the
    # CPU's multiplies by the mask it scaled in the forward pass): one more a value
    assert sp.expand(cuda.flops("backward") - cpu.flops("backward")) \
        == A * s**2 * b + 2 * s * b * H
    assert sp.expand(cuda.flops("forward") - cpu.flops("forward")) == 0
    assert any("CUDA" in n for n in cuda.notes)
    ops = {c for ln in cuda.lines for c in ln.components}
    assert "times the mask" in ops


def test_one_device_of_a_tensor_parallel_layer(layer):
    whole = estimate(layer, ("s", "b", H), target="cuda", **KW)
    est = estimate(layer, ("s", "b", H), target="cuda", tensor_parallel=_tp(layer, 4), **KW)
    s, b = est.symbols["s"], est.symbols["b"]
    # hand count of the parameters one of 4 devices holds: qkv and fc1 by output rows,
    # proj and fc2 by input columns (their biases whole), the norms whole
    hand = (H * 3 * H + 3 * H) // 4 + (H * H) // 4 + H + (H * 4 * H + 4 * H) // 4 \
        + (4 * H * H) // 4 + H + 4 * H
    assert est.parameters == hand
    # attention's products and softmax over a/4 heads: the s^2 terms a quarter
    assert sp.Poly(est.flops("step"), s).coeff_monomial(s**2) \
        == sp.Poly(whole.flops("step"), s).coeff_monomial(s**2) / 4
    # Table 2's tensor-parallel row at t = 4, with the two LayerNorms' statistics
    assert sp.expand(est.activation_bytes) == sp.expand(
        s * b * H * (10 + sp.Rational(24, 4)) + 5 * A * s**2 * b / 4 + 16 * s * b)
    # collectives: each column-parallel input's gradient, each row-parallel output
    got = Counter((c.module, c.phase, c.kind, sp.expand(c.bytes)) for c in est.communication)
    x = s * b * H * 2
    assert got == Counter({("layer.attn.qkv", "backward", "all-reduce", x): 1,
                           ("layer.attn.proj", "forward", "all-reduce", x): 1,
                           ("layer.fc1", "backward", "all-reduce", x): 1,
                           ("layer.fc2", "forward", "all-reduce", x): 1})


def test_sequence_parallel_cuts_the_rest_along_the_sequence(layer):
    tp = estimate(layer, ("s", "b", H), target="cuda", tensor_parallel=_tp(layer, 2), **KW)
    sq = estimate(layer, ("s", "b", H), target="cuda",
                  tensor_parallel=_tp(layer, 2, True, "megatron"), **KW)
    s, b = sq.symbols["s"], sq.symbols["b"]
    # the whole layer's work outside the two products' shards is halved: the s^1 terms
    # of tensor + sequence parallel are half the unparallel layer's
    whole = estimate(layer, ("s", "b", H), target="cuda", **KW)
    assert sp.Poly(sq.flops("forward"), s).coeff_monomial(s) \
        == sp.Poly(whole.flops("forward"), s).coeff_monomial(s) / 2
    assert sp.Poly(tp.flops("forward"), s).coeff_monomial(s) \
        > sp.Poly(whole.flops("forward"), s).coeff_monomial(s) / 2
    x = s * b * H * 2
    got = Counter((c.module, c.phase, c.kind, sp.expand(c.bytes)) for c in sq.communication)
    expected = Counter()
    for m in ("layer.attn.qkv", "layer.fc1"):
        expected[(m, "forward", "all-gather", x)] += 1
        expected[(m, "backward", "all-gather", x)] += 1       # its kept shard gathered again
        expected[(m, "backward", "reduce-scatter", x)] += 1
    for m in ("layer.attn.proj", "layer.fc2"):
        expected[(m, "forward", "reduce-scatter", x)] += 1
        expected[(m, "backward", "all-gather", x)] += 1
    for ln in ("layer.ln1", "layer.ln2"):
        expected[(ln, "backward", "all-reduce", H * 2)] += 2   # weight and bias
    assert got == expected


def test_torch_keeps_the_gathered_input_megatron_the_shard(layer):
    torch_sp = estimate(layer, ("s", "b", H), target="cuda",
                        tensor_parallel=_tp(layer, 2, True, "torch"), **KW)
    megatron = estimate(layer, ("s", "b", H), target="cuda",
                        tensor_parallel=_tp(layer, 2, True, "megatron"), **KW)
    s, b = megatron.symbols["s"], megatron.symbols["b"]
    # qkv's and fc1's inputs: s b h bfloat16 values gathered, against half of them
    assert sp.expand(torch_sp.activation_bytes - megatron.activation_bytes) \
        == 2 * (s * b * H * 2 - s * b * H)
    assert {c.phase for c in torch_sp.communication if "ln" in c.module} == {"optimizer"}


def test_the_model_is_restored_after_the_local_trace(layer):
    before = [(n, tuple(p.shape)) for n, p in layer.named_parameters()]
    tp = _tp(layer, 2)
    with pytest.raises(RuntimeError), local_model(layer, tp):
        assert layer.layer.fc1.out_features == 2 * H
        raise RuntimeError("a failure inside")
    assert [(n, tuple(p.shape)) for n, p in layer.named_parameters()] == before


def test_bad_layouts_are_refused_with_the_reason(layer):
    with pytest.raises(UsageError, match="matches no module"):
        layout(layer, 2, {"layer.nope": "colwise"})
    with pytest.raises(UsageError, match="unknown style"):
        layout(layer, 2, {"layer.fc1": "diagonal"})
    with pytest.raises(UsageError, match="positive number"):
        layout(layer, 0, mg.TP_PLAN)
    with pytest.raises(UsageError, match="do not split over 3 devices"):
        estimate(layer, ("s", "b", H), tensor_parallel=layout(layer, 3, mg.TP_PLAN), **KW)
    with pytest.raises(UsageError, match="shards nn.Linear modules, not LayerNorm"):
        estimate(layer, ("s", "b", H), tensor_parallel=layout(layer, 2, {"layer.ln1":
                                                                        "colwise"}), **KW)
    with pytest.raises(UsageError, match="unknown target"):
        estimate(layer, ("s", "b", H), target="tpu", **KW)


def test_default_plan_finds_the_usual_projections(layer):
    tp = layout(layer, 2)
    assert dict(tp.plan) == {"layer.attn.qkv": "colwise", "layer.attn.proj": "rowwise",
                             "layer.fc1": "colwise", "layer.fc2": "rowwise"}
    with pytest.raises(UsageError, match="no default tensor-parallel plan"):
        layout(torch.nn.Sequential(torch.nn.Linear(4, 4)), 2)


def test_torch_style_objects_are_read_as_plans(layer):
    from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel
    tp = layout(layer, 2, {"layer.fc1": ColwiseParallel(), "layer.fc2": RowwiseParallel()})
    assert dict(tp.plan) == {"layer.fc1": "colwise", "layer.fc2": "rowwise"}


def test_korthikanti_table_2_from_the_traced_layer():
    """Every row of Table 2 derived (fitted over a, d = h/a and 1/t, checked off the
    grid): the published polynomial plus the LayerNorms' per-token statistics, which
    the paper leaves out."""
    derived = mg.table2()
    for name, (tensor, sequence, checkpoint) in mg.ROWS.items():
        extra = mg.layernorm_statistics(tensor, sequence, checkpoint)
        assert sp.expand(derived[name] - mg.TABLE2[name] - extra) == 0, name


@pytest.fixture(scope="module", params=[2, 4])
def measured(request):
    from validation.tensor_parallel_checks import run
    return request.param, run(request.param)


def _derived(world: int, sequence: bool):
    from validation import tensor_parallel_checks as tc
    model = mg.OneLayer(tc.HIDDEN, tc.HEADS)
    tp = layout(model, world, mg.TP_PLAN, sequence=sequence, sequence_dim=0)
    return estimate(model, ("s", "b", tc.HIDDEN), loss="mse", flop_counter=False,
                    use_cache=False, tensor_parallel=tp), tc.SEQ, tc.BATCH


@pytest.mark.parametrize("sequence", [False, True], ids=["tp", "tp+sp"])
def test_dtensor_on_gloo_runs_the_derived_collectives(measured, sequence):
    """parallelize_module on 2 and 4 gloo processes: each rank's parameter shard and
    every collective of its forward and backward passes (CommDebugMode, with the bytes
    of each) are the derived ones."""
    world, ranks = measured
    est, seq, batch = _derived(world, sequence)
    at = {est.symbols["s"]: seq, est.symbols["b"]: batch}
    derived = Counter((c.module, c.phase, c.kind, int(c.elements.xreplace(at)), c.itemsize)
                      for c in est.communication if c.phase != "optimizer")
    for rank in ranks:
        got = rank["sp" if sequence else "tp"]
        assert got["parameters"] == est.parameters
        measured_ = Counter((m.removeprefix("OneLayer."), phase, kind, n, size)
                            for m, phase, kind, n, size in got["collectives"])
        assert measured_ == derived
        assert sum(measured_.values()) == sum(got["counts"].values())


@pytest.mark.parametrize("sequence", [False, True], ids=["tp", "tp+sp"])
def test_the_peak_of_a_device_is_memtrackers(measured, sequence):
    """Each rank's peak of a first and a later step (MemTracker, over DTensor's local
    tensors) against the replayed timeline of one device's share: with sequence
    parallelism the norms' tensors at 1/t, and a row-parallel layer's output whole
    around its collectives (the partial sums before the reduce-scatter, the gradient
    after the all-gather).  Measured: 8 bytes apart on 2 and 4 ranks (torch's loss
    scalar), on a peak of 0.5 to 1 MB."""
    from validation import tensor_parallel_checks as tc
    world, ranks = measured
    model = mg.OneLayer(tc.HIDDEN, tc.HEADS)
    tp = layout(model, world, mg.TP_PLAN, sequence=sequence, sequence_dim=0)
    est = estimate(model, ("s", "b", tc.HIDDEN), flop_counter=False, use_cache=False,
                   tensor_parallel=tp, hints={"s": tc.PEAK_SEQ, "b": tc.PEAK_BATCH},
                   optimizer="adam", optimizer_impl="for-loop")
    derived = [est.at(est.first_step_peak.total), est.at(est.peak.total)]
    for rank in ranks:
        for ours, theirs in zip(derived, rank["peak sp" if sequence else "peak tp"]):
            assert abs(ours - theirs) <= 0.005 * theirs, (derived, rank)


def test_torch_reduces_partial_norm_gradients_at_each_read_of_the_step(measured):
    """Under torch's sequence parallelism the norms' gradients stay partial; a for-loop
    Adam step reads each gradient three times (exp_avg.lerp_(g), then
    exp_avg_sq.addcmul_(g, g)): three all-reduces of each, none of any other gradient."""
    world, ranks = measured
    est, _, _ = _derived(world, True)
    derived = Counter((c.kind, int(c.elements), c.itemsize) for c in est.communication
                      if c.phase == "optimizer")
    assert sum(derived.values()) == 4          # ln1 and ln2, weight and bias
    for rank in ranks:
        got = Counter((kind, n, size) for _m, _p, kind, n, size in rank["sp"]["step"])
        assert got == Counter({k: 3 * v for k, v in derived.items()})
        assert rank["tp"]["step"] == []


def test_narayanan_flops_are_the_derived_products():
    """Narayanan et al. (2021) eq. (3), 96 b s l h^2 (1 + s/(6h) + V/(16 l h)), is the
    derived FLOPs of the GPT's products (2 a multiply-add, every layer recomputed, the
    output projection not), as a polynomial identity in b, s, l, h and V."""
    assert sp.expand(mg.product_flops() - mg.NARAYANAN) == 0


def test_what_narayanan_leaves_out():
    """The rest of the step, fitted in b, s, l and V at two widths h: the work on the
    a s^2 attention probabilities (scale, softmax, dropout, forward twice and backward)
    does not grow with h; and a product over K values costs K multiplications and
    K - 1 additions, 2K - 1 FLOPs, not 2K: the output projection's b s V outputs and
    its h V weight gradients each cost one FLOP less than eq. (3) counts."""
    rest = {hh: mg.other_flops(hh) for hh in (256, 512)}
    for hh, poly in rest.items():
        per_layer = sp.Poly(sp.expand(poly), mg.L, mg.V)
        assert per_layer.coeff_monomial(mg.V) == -(mg.b * mg.s + hh)
    squared = [sp.Poly(sp.Poly(sp.expand(p), mg.L).coeff_monomial(mg.L), mg.s)
               .coeff_monomial(mg.s**2) for p in rest.values()]
    assert squared[0] == squared[1] != 0


@pytest.mark.parametrize("world", [2, 4])
def test_fsdp2_gathers_the_derived_units(world):
    """fully_shard on gloo: each rank all-gathers every unit whole in the forward pass
    and every block again in the backward pass (the root stays gathered); the elements
    of each gather (padded to whole rows) are the derived ones."""
    from derivations.parallel3d import fsdp_gathers
    from validation import fsdp_checks as fc
    est = estimate(fc.build(), ("b", "s"), input_dtype="int64", flop_counter=False,
                   use_cache=False, by_block=True)
    derived = fsdp_gathers(est, world)
    for rank in fc.run(world):
        for phase in ("forward", "backward"):
            got = sorted(n for _m, p, n in rank["gathers"] if p == phase)
            assert got == sorted(derived[phase]), phase


# -- the command line ---------------------------------------------------------------------
LAYER = "validation.megatron:OneLayerSmall"


@pytest.mark.parametrize("argv,message", [
    (("--sequence-parallel",), "--sequence-parallel goes with --tensor-parallel"),
    (("--tensor-parallel", "0"), "--tensor-parallel must be 1 or more"),
    (("--pipeline-parallel", "2"), "go with --devices N"),
    (("--tensor-parallel", "2", "--devices", "6", "--micro-batches", "2",
      "--pipeline-parallel", "2"), "not a multiple of tensor x pipeline"),
    (("--tensor-parallel", "2", "--devices", "4", "--micro-batches", "2",
      "--zero", "ZeRO-9"), "--zero 'ZeRO-9': known"),
    (("--tensor-parallel", "2", "--devices", "4", "--micro-batches", "3",
      "--pipeline-parallel", "2", "--pipeline-schedule", "interleaved-1f1b", "--chunks",
      "2"), "whole groups"),
    (("--tensor-parallel", "3"), "do not split over 3 devices"),
    (("--tensor-parallel", "2", "--tp-plan", "/nonexistent.json"), "--tp-plan"),
])
def test_parallel_options_refused_in_one_line(capsys, argv, message):
    from conftest import run_cli
    code, out, err = run_cli(capsys, "estimate", LAYER, "--input", "sx64", "--at", "s=4",
                             "--loss", "mse", *argv)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_the_3d_table_and_the_collectives_from_the_command_line(capsys):
    from conftest import run_cli
    code, out, err = run_cli(capsys, "estimate", "validation.megatron:TwoLayerGPT",
                             "--input", "s", "--input-dtype", "int64", "--at", "B=2,s=8",
                             "--tensor-parallel", "2", "--sequence-parallel",
                             "--devices", "8", "--pipeline-parallel", "2",
                             "--micro-batches", "4", "--micro-batch-size", "1",
                             "--target", "cuda", "--precision", "bf16-mixed",
                             "--format", "json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["per_device"].startswith("tensor parallel over t = 2")
    kinds = Counter(c["kind"] for c in doc["communication"] if c["phase"] != "optimizer")
    # two layers, each: qkv and fc1 gather their input, proj and fc2 reduce-scatter
    # their output, and the backward the other way round
    assert kinds == Counter({"all-gather": 8, "reduce-scatter": 8})
    row = doc["parallel-3d"]["rows"][0]
    assert row[0].startswith("d = 2, t = 2, P = 2, M = 4 (1f1b), ZeRO-1, bf16-mixed")
