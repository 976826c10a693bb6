"""``symflop estimate`` on the command line: formats, and one-line errors (exit 2)."""

from __future__ import annotations

import json
import textwrap

import pytest
import sympy as sp

pytest.importorskip("torch")

from conftest import run_cli  # noqa: E402
from torch import nn  # noqa: E402

MODEL_FILE = textwrap.dedent("""
    import torch
    from torch import nn

    def make_model():
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(20, 32), nn.GELU(), nn.Linear(32, 5))

    def frozen():
        model = make_model()
        model[0].requires_grad_(False)
        return model

    def not_a_model():
        return 42

    def broken():
        raise RuntimeError("no weights here")
""")


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "mymodel.py"
    path.write_text(MODEL_FILE)
    return str(path)


run = run_cli


def test_json_matches_a_hand_count(capsys, model_file):
    code, out, err = run(capsys, "estimate", "--from", f"{model_file}:make_model",
                         "--input", "20", "--format", "json", "--optimizer", "sgd")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["symbols"] == ["B"] and doc["parameters"] == 20 * 32 + 32 + 32 * 5 + 5
    B = sp.Symbol("B")
    lines = {ln["name"]: ln for ln in doc["lines"]}
    # Linear(20, 32) on a batch that needs no gradient: y = x W^T + b, 20 products and
    # 20 additions (19 in the sum, 1 for the bias) per output; backward: the weight's
    # gradient (B products per weight, B - 1 additions) and the bias's (B - 1 additions)
    fwd = sp.sympify(lines["0"]["flops_forward"], locals={"B": B})
    bwd = sp.sympify(lines["0"]["flops_backward"], locals={"B": B})
    assert sp.expand(fwd - 2 * 20 * 32 * B) == 0
    assert sp.expand(bwd - (20 * 32 * (2 * B - 1) + 32 * (B - 1))) == 0
    assert lines["1"]["components"] == ["gelu"]
    # gelu: one erf per value, and sqrt(2), a constant, computed once
    assert sp.sympify(lines["1"]["forward"]["transcendental"], locals={"B": B}) == 32 * B + 1
    # plain SGD: theta - lr g, one multiply and one subtraction per parameter
    assert sp.sympify(lines["optimizer (sgd)"]["flops_forward"]) == 2 * doc["parameters"]
    assert doc["memory"]["state"] == "0" and doc["unknown"] == []


def test_the_fma_convention_counts_and_renders(capsys, model_file):
    """Under fma, each of Linear(20, 32)'s outputs is 20 products summed by 19 additions
    (19 fused multiply-adds of 1 FLOP, and the product left over) plus the bias's
    addition: 21 FLOPs; the text table renders the new kind (it raised KeyError: 'fma'
    when grouping lines by module)."""
    argv = ("estimate", "--from", f"{model_file}:make_model", "--input", "20",
            "--optimizer", "sgd", "--convention", "fma")
    code, out, err = run(capsys, *argv, "--format", "json")
    assert code == 0, err
    B = sp.Symbol("B")
    lines = {ln["name"]: ln for ln in json.loads(out)["lines"]}
    assert sp.expand(sp.sympify(lines["0"]["flops_forward"], locals={"B": B})
                     - (19 + 1 + 1) * 32 * B) == 0
    code, out, err = run(capsys, *argv, "--depth", "1")
    assert code == 0 and "under the fma convention" in out, err


def test_one_and_three_dimensional_convolutions_are_counted(capsys, tmp_path):
    """Conv1d and Conv3d had no rule (their work was '+ unknown'). Hand counts: an output
    is a dot product of K = C_in * taps terms (K products, K - 1 additions) plus the bias;
    the weight gradient sums B * S products per weight; the input needs no gradient."""
    path = tmp_path / "convs.py"
    path.write_text(textwrap.dedent("""
        from torch import nn
        def one():
            return nn.Sequential(nn.Conv1d(4, 16, 3, padding=1), nn.Flatten(),
                                 nn.Linear(16 * 32, 3))
        def three():
            return nn.Sequential(nn.Conv3d(2, 4, 3, padding=1, bias=False), nn.Flatten(),
                                 nn.Linear(4 * 125, 3))
    """))
    B = sp.Symbol("B")
    for factory, shape, out, S, K, bias in (("one", "4x32", 16, 32, 4 * 3, True),
                                            ("three", "2x5x5x5", 4, 125, 2 * 27, False)):
        code, out_text, err = run(capsys, "estimate", "--from", f"{path}:{factory}",
                                  "--input", shape, "--format", "json", "--strict")
        assert code == 0, err
        conv = {ln["name"]: ln for ln in json.loads(out_text)["lines"]}["0"]
        forward = out * S * B * (2 * K - 1 + (1 if bias else 0))
        backward = out * K * (2 * S * B - 1) + (out * (S * B - 1) if bias else 0)
        assert sp.expand(sp.sympify(conv["flops_forward"], locals={"B": B}) - forward) == 0
        assert sp.expand(sp.sympify(conv["flops_backward"], locals={"B": B}) - backward) == 0


@pytest.mark.parametrize("fmt,marker", [("text", "training step"), ("markdown", "| layer |"),
                                        ("latex", "\\begin{table")])
def test_formats(capsys, model_file, fmt, marker):
    code, out, err = run(capsys, "estimate", "--from", f"{model_file}:make_model",
                         "--input", "20", "--format", fmt, "--no-flop-counter")
    assert code == 0, err
    assert marker in out and "FlopCounterMode" not in out


def test_latex_standalone_compiles(capsys, model_file, tmp_path):
    import shutil
    import subprocess
    code, out, err = run(capsys, "estimate", "--from", f"{model_file}:make_model",
                         "--input", "20", "--format", "latex", "--standalone")
    assert code == 0, err
    assert out.startswith("\\documentclass") and out.count("\\begin{table") == 3
    if shutil.which("pdflatex") is None:
        pytest.skip("pdflatex is not installed: the document was not compiled")
    (tmp_path / "estimate.tex").write_text(out)
    r = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error",
                        "estimate.tex"], cwd=tmp_path, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stdout[-2000:]
    code, _, err = run(capsys, "estimate", "--from", f"{model_file}:make_model",
                       "--input", "20", "--standalone")
    assert code == 2 and "--standalone goes with --format latex" in err


def test_module_factory_and_depth(capsys):
    code, out, err = run(capsys, "estimate", "validation.resnet50:resnet50", "--input",
                         "3x224x224", "--depth", "1", "--format", "json", "--at", "B=4")
    assert code == 0, err
    doc = json.loads(out)
    assert [ln["name"] for ln in doc["lines"]][:6] == ["conv1", "bn1", "relu", "maxpool",
                                                        "layer1", "layer2"]
    assert doc["hints"] == {"B": 4} and doc["parameters"] == 25_557_032
    assert doc["unknown"] == [] and doc["unknown_count"] == 0
    maxpool = next(ln for ln in doc["lines"] if ln["name"] == "maxpool")
    # its backward adds each of the B 64 56 56 output gradients at its argmax
    assert maxpool["backward"]["add"] == str(64 * 56 * 56) + "*B"


@pytest.mark.parametrize("argv,message", [
    (("--input", "3x0"), "each size is a positive integer or a name"),
    (("--input", "3xa-b"), "each size is a positive integer or a name"),
    (("--input", "LxL"), "appears twice"),
    (("--input", "30"), "the model failed on an input of shape (B, 30)"),
    (("--input", "20", "--at", "B=1"), "trace at 2 or more"),
    (("--input", "20", "--at", "Q=4"), "not a size of --input"),
    (("--input", "20", "--at", "B=4", "--at", "B=5"), "--at B: given twice (B=4, B=5)"),
    (("--input", "Lx20", "--at", "L=4", "--at", "B=1"), "trace at 2 or more"),
    (("--input", "20", "--loss", "cross-entropyy"), "loss: unknown component"),
    (("--input", "20", "--optimizer", "adamx"), "optimizer: unknown component"),
    (("--input", "20", "--optimizer", "mse"), "is not an optimizer"),
    (("--input", "20", "--depth", "0"), "--depth must be 1 or more"),
])
def test_bad_input_is_one_line(capsys, model_file, argv, message):
    code, out, err = run(capsys, "estimate", "--from", f"{model_file}:make_model", *argv)
    assert code == 2 and out == ""
    assert message in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("spec,message", [
    (":not_a_model", "gave int, not a torch.nn.Module"),
    (":broken", "RuntimeError: no weights here"),
    (":nothing", "defines no 'nothing'"),
])
def test_bad_model_is_one_line(capsys, model_file, spec, message):
    code, out, err = run(capsys, "estimate", "--from", model_file + spec, "--input", "20")
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_at_repeated_gives_every_size(capsys, model_file):
    """--at B=3 --at L=5 sets both (the last one alone was kept before)."""
    code, out, err = run(capsys, "estimate", "--from", f"{model_file}:make_model", "--input",
                         "Lx20", "--at", "B=3", "--at", "L=5", "--format", "json",
                         "--no-flop-counter")
    assert code == 0, err
    assert json.loads(out)["hints"] == {"B": 3, "L": 5}


def test_model_given_once(capsys, model_file):
    for argv in ((), ("validation.resnet50:resnet50", "--from", f"{model_file}:make_model")):
        code, _, err = run(capsys, "estimate", *argv, "--input", "20")
        assert code == 2 and "one of the two" in err


@pytest.mark.parametrize("shape,hints,message", [
    (("B", 0), None, "neither a positive integer nor a name"),
    (("B", 2.5), None, "neither a positive integer nor a name"),
    ((), None, "a tuple of sizes"),
    (("B", "B"), None, "appears twice"),
    (("B", 20), {"L": 4}, "is not a size of the shape"),
    (("B", 20), {"B": 1}, "2 or more"),
])
def test_api_refuses_bad_shapes(shape, hints, message):
    import torch

    from symflop.errors import UsageError
    from symflop.estimate import estimate
    with pytest.raises(UsageError, match=message):
        estimate(torch.nn.Linear(20, 5), shape, hints=hints, use_cache=False)
    with pytest.raises(UsageError, match="needs a torch.nn.Module"):
        estimate("model", ("B", 20))


def test_devices_joins_the_distributed_step(capsys, model_file):
    """--devices 4: the distributed-step table with this model's sizes.  By hand for DDP
    on an H100: the network's FLOPs at B = 8 (its lines' forward + backward), Adam's step
    and the unscale (5 Psi + 16) on all Psi = 837 parameters, the ring all-reduce's
    (N - 1)/N Psi additions; memory 16 bytes a parameter and A b bytes of activations;
    bytes sent 2 (N - 1)/N Psi x 2."""
    code, out, err = run(capsys, "estimate", "--from", f"{model_file}:make_model",
                         "--input", "20", "--format", "json", "--devices", "4",
                         "--no-flop-counter")
    assert code == 0, err
    doc = json.loads(out)
    B = sp.Symbol("B")
    network = sum(sp.sympify(ln["flops_forward"], locals={"B": B})
                  + sp.sympify(ln["flops_backward"], locals={"B": B})
                  for ln in doc["lines"] if ln["type"] not in ("loss", "optimizer"))
    psi = doc["parameters"]
    from conftest import derived
    adam = derived("adam")[1].counts("step").total
    adam = adam.subs(next(iter(adam.free_symbols)), psi)
    flops = network.subs(B, 8) + adam + 5 * psi + 16 + sp.Rational(3, 4) * psi
    table = doc["distributed-step"]
    ddp = next(r for r in table["rows"] if r[:2] == ["DDP", "h100"])
    assert ddp[2] == pytest.approx(float(flops) / 1e12, rel=1e-12)
    assert ddp[3] == pytest.approx(2 * 3 / 4 * psi * 2 / 1e9, rel=1e-12)
    saved = sp.sympify(doc["memory"]["saved"], locals={"B": B}).subs(B, 8)
    assert ddp[4] == pytest.approx((16 * psi + float(saved)) / 1e9, rel=1e-12)
    assert "make_model at B=8" in table["notes"][0]
    # --alpha-ns: the DDP all-reduce's 2 (N - 1) rounds at 1 us each, the bytes at 450 GB/s
    code, out, err = run(capsys, "estimate", "--from", f"{model_file}:make_model",
                         "--input", "20", "--format", "json", "--devices", "4",
                         "--alpha-ns", "1000", "--no-flop-counter")
    ddp = next(r for r in json.loads(out)["distributed-step"]["rows"]
               if r[:2] == ["DDP", "h100"])
    assert ddp[7] == pytest.approx(6 * 1e-6 + 2 * 3 / 4 * psi * 2 / 450e9, rel=1e-12)
    for argv, message in ((("--devices", "0"), "positive number of devices"),
                          (("--devices", "4", "--optimizer", "sgd"), "not sgd"),
                          (("--alpha-ns", "1000",), "go with --devices")):
        code, _, err = run(capsys, "estimate", "--from", f"{model_file}:make_model",
                           "--input", "20", "--no-flop-counter", *argv)
        assert code == 2 and message in err, err
    code, _, err = run(capsys, "estimate", "--from", f"{model_file}:frozen", "--input", "20",
                       "--devices", "4", "--no-flop-counter")
    assert code == 2 and "frozen parameters" in err


def test_input_dtype_the_model_cannot_run_is_refused(capsys, model_file):
    """torch refuses a float16 input into a float32 Linear; so does the estimate (its fake
    tensors' meta kernels do not check dtypes)."""
    code, out, err = run(capsys, "estimate", "--from", f"{model_file}:make_model",
                         "--input", "20", "--input-dtype", "float16")
    assert code == 2 and out == ""
    assert "addmm: operands of dtypes float16 and float32" in err
    assert len(err.strip().splitlines()) == 1, err


def test_floats_into_an_embedding_say_which_input_dtype(capsys, tmp_path):
    path = tmp_path / "emb.py"
    path.write_text("from torch import nn\n\ndef make():\n"
                    "    return nn.Sequential(nn.Embedding(100, 16), nn.Linear(16, 4))\n")
    code, out, err = run(capsys, "estimate", "--from", f"{path}:make", "--input", "L")
    assert code == 2 and out == ""
    assert err.rstrip().endswith("(the model reads token ids: give --input-dtype int64)")
    assert len(err.strip().splitlines()) == 1, err


def test_a_shape_mistake_prints_one_line_only(model_file):
    """torch's fake tensors log their own traceback before raising; none of it reaches
    the terminal (a subprocess: the logging handler writes to the real stderr)."""
    import subprocess
    import sys
    r = subprocess.run([sys.executable, "-m", "symflop", "estimate", "--from",
                        f"{model_file}:make_model", "--input", "30", "--no-flop-counter"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip().splitlines() == [
        "symflop: error: the model failed on an input of shape (B, 30): RuntimeError: a "
        "and b must have same reduction dim, but got [s26, 30] X [20, 32]."], r.stderr


def test_a_cache_payload_of_the_wrong_type_is_a_miss(tmp_path, monkeypatch):
    """An entry under the estimate's key that holds something else is derived again
    (and replaced), never returned or crashed on."""
    from symflop import cache
    from symflop.estimate import cached, estimate
    monkeypatch.setenv("SYMFLOP_CACHE_DIR", str(tmp_path / "cache"))
    stored = {}
    real_store = cached.store

    def remember(digest, est):
        stored["digest"] = digest
        real_store(digest, est)
    monkeypatch.setattr(cached, "store", remember)
    model = nn.Sequential(nn.Linear(6, 3))
    first = estimate(model, ("B", 6), flop_counter=False)
    digest = stored.pop("digest")
    cache.store(f"estimate-{digest[:40]}", digest, {"not": "an estimate"})
    again = estimate(model, ("B", 6), flop_counter=False)
    assert again.flops("step") == first.flops("step")
    assert stored["digest"] == digest    # derived again and stored over the bad entry
    assert isinstance(cached.load(digest), type(first))
