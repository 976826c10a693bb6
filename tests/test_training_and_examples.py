"""The training-step composite and the worked examples."""

import json

import pytest
import sympy as sp

from derivations import CATALOGUE, optimizers
from derivations.examples import EXAMPLES
from symflop import derive
from symflop.cli import main
from symflop.compose import CompositeDerivation
from symflop.report.examples import render

P, A, F, k = sp.symbols("P A F k", integer=True, positive=True)


@pytest.mark.parametrize("name", list(optimizers.COMPONENTS))
def test_training_step_works_for_every_optimizer(capsys, name):
    assert main(["count", "training-step", "--optimizer", name, "--json",
                 "--dims", "F=100,k=2,P=10,B=2,C=3,N=4,d=5,L_bn=2,A=7"]) == 0
    report = json.loads(capsys.readouterr().out)
    step = report["passes"]["step"]
    # The step is the network's F + k*F plus every derived part, each at its own sizes.
    parts = sum(e["value"] for n, e in report["passes"].items() if n != "step")
    assert step["value"] == 100 + 2 * 100 + parts
    opt = derive(optimizers.COMPONENTS[name]())
    assert report["passes"]["optimizer.step"]["value"] == opt.count_function("step")(P=10)


@pytest.mark.parametrize("name, m_opt", [("sgd", 0), ("momentum", 1), ("adam", 2),
                                         ("adagrad", 1), ("rmsprop", 1), ("adamw", 2)])
def test_training_step_memory_is_the_standard_formula(name, m_opt):
    d = CompositeDerivation(CATALOGUE["training-step"](name))
    total = sum((d.memory.bytes(w) for w in ("parameters", "gradients", "state", "saved")),
                sp.Integer(0))
    scalars = 4 if name in ("adam", "adamw") else 0  # their step count t, one float32
    assert sp.expand(total - ((2 + m_opt) * 4 * P + 4 * A + scalars)) == 0
    assert any(f"M_opt = {m_opt}" in n for n in d.composite.notes)


def test_unknown_optimizer_is_one_line(capsys):
    assert main(["count", "training-step", "--optimizer", "adm"]) == 2
    assert "unknown optimizer 'adm'; did you mean adam" in capsys.readouterr().err
    assert main(["count", "mse", "--optimizer", "adam"]) == 2
    assert "mse takes no option 'optimizer'" in capsys.readouterr().err


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_every_example_prints_every_figure_with_a_verdict(capsys, name):
    assert main(["example", name]) == 0
    out = capsys.readouterr().out
    ex = EXAMPLES[name]()
    assert len(ex.rows) >= 5
    for row in ex.rows:
        assert row.label in out
    assert out.count("document:") == sum(r.claimed is not None for r in ex.rows)


def test_examples_agree_and_differ_where_they_should():
    rows = {r.label: r for name in EXAMPLES for r in EXAMPLES[name]().rows}
    # Hand-checked: 25.6M * 4 bytes = 97.66 MiB; 14 * 25.6M + 7 = 358,400,007.
    assert rows["momentum state memory"].value == pytest.approx(25.6e6 * 4 / 2 ** 20)
    assert rows["adam step FLOPs"].value == 14 * 25_600_000 + 7
    assert "agrees" in rows["adam step FLOPs"].verdict()
    # 2 * 32 * 256 * (128 * 9) * (56 * 56) FLOPs for the 3x3 convolution, 4x the document's.
    assert rows["3x3 conv forward FLOPs"].value == 2 * 32 * 256 * 128 * 9 * 56 * 56
    assert "DIFFERS" in rows["3x3 conv forward FLOPs"].verdict()
    assert rows["N = B*H*W"].value == 32 * 56 * 56
    assert rows["BatchNorm parameters"].value == 2 * 256
    assert rows["4096x4096 linear forward FLOPs"].value == 2 * 32 * 4096 * 4096
    out = render(EXAMPLES["batchnorm-conv"]())
    assert "figure(s) differ from the document" in out


def test_unknown_example_is_one_line(capsys):
    assert main(["example", "resnet"]) == 2
    assert "unknown example 'resnet'" in capsys.readouterr().err


def test_layer_hand_counts():
    # linear, B=2, O=3, I=4: each of the 6 outputs is 4 products, 3 additions, + bias.
    assert derive(CATALOGUE["linear"]()).count_function("forward")(B=2, O=3, I=4) == 6 * 8
    # conv as im2col, B=1, O=2, K=3, S=5: each of the 10 outputs is 3 products, 2 adds, + bias.
    conv = derive(CATALOGUE["conv2d-im2col"]())
    assert conv.count_function("forward")(B=1, O=2, K=3, S=5) == 10 * 6
