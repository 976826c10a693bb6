"""One quantity, one value: every place of the report that shows a quantity (tables,
worked examples, claims, figures) shows the same value for it.

Each place is read the way a reader meets it (a table's cells, an example's rows, a
claim's verdict text, the numbers a figure draws); the values are gathered by quantity,
and a quantity shown with two values fails, naming both places."""

import re
from collections import defaultdict

import pytest
import sympy as sp

from derivations import examples, plots, resnet50
from derivations.claims import CLAIMS
from derivations.tables import build_table
from symflop.report.claims import judge_all

MIB, GIB = 2 ** 20, 2 ** 30
# The claim that states each ResNet-50 memory term
CLAIM_OF = {"parameters": "memory-parameters", "gradients": "memory-gradients",
            "Adam state": "memory-adam-state", "saved for backward": "memory-activations",
            "total": "memory-total"}


def _bytes_in(text: str) -> int:
    """The exact byte count a claim prints: "2.561 GiB (2,749,444,864 bytes)"."""
    return int(re.search(r"\(([\d,]+) bytes\)", text).group(1).replace(",", ""))


def _from_memory_table(shown):
    t = build_table("memory-total")
    saved = 0.0
    for label, _bytes, mib in t.rows:
        if label.startswith("saved: "):
            saved += mib.value * MIB
        else:
            shown[f"ResNet-50 {label.lower()} bytes"].append(("Table memory-total",
                                                              mib.value * MIB))
    shown["ResNet-50 saved for backward bytes"].append(("Table memory-total", saved))
    for count in re.findall(r"\(([\d,]+) parameters\)", t.caption):
        shown["ResNet-50 parameter count"].append(("Table memory-total", int(
            count.replace(",", ""))))


def _from_example(shown):
    ex = examples.EXAMPLES["resnet50-memory"]()
    names = {"activations": "saved for backward"}
    for r in ex.rows:
        scale = {"MiB": MIB, "GiB": GIB}[r.unit]
        shown[f"ResNet-50 {names.get(r.label, r.label).lower()} bytes"].append(
            ("example resnet50-memory", r.value * scale))
    shown["ResNet-50 parameter count"].append(("example resnet50-memory", ex.inputs["P"]))


def _from_claims(shown):
    verdicts = {v.claim.id: v for v in judge_all([c for c in CLAIMS
                                                  if c.id.startswith("memory-")])}
    for name, cid in CLAIM_OF.items():
        v = verdicts[cid]
        # Under the document's assumption (P = 25.6M) the verdict shows that figure and
        # gives ResNet-50's own after "without it:".
        text = v.detail.split("without it:")[1] if "without it:" in v.detail else v.derived
        shown[f"ResNet-50 {name.lower()} bytes"].append((f"claim {cid}", _bytes_in(text)))


def _from_figure(shown):
    for name, gib in plots.training_step_memory():
        shown[f"ResNet-50 {name.lower()} bytes"].append(("Fig. training-step-resnet50",
                                                         gib * GIB))
    shown["ResNet-50 total bytes"].append(("Fig. training-step-resnet50", sum(
        gib for _, gib in plots.training_step_memory()) * GIB))
    step = sum(f + b for _, f, b in plots.training_step_parts()) * 1e9
    shown["ResNet-50 step FLOPs"].append(("Fig. training-step-resnet50", step))
    title = plots.CAPTIONS["training-step-resnet50"]
    assert "symflop estimate" in title


def _from_optimizers(shown):
    P = sp.Symbol("P", integer=True, positive=True)
    t = build_table("optimizer-comparison")
    cols = list(t.columns)
    for r in t.rows:
        name = r[0]
        shown[f"{name} step FLOPs per parameter"].append((
            "Table optimizer-comparison",
            float(sp.sympify(r[cols.index("Per-step FLOPs")]).coeff(P))))
        shown[f"{name} state bytes per parameter"].append((
            "Table optimizer-comparison",
            float(sp.sympify(r[cols.index("Extra memory (bytes, float32)")]).coeff(P))))
    for name, flops, state in plots.optimizer_costs():
        shown[f"{name} step FLOPs per parameter"].append(("Fig. optimizers", flops))
        shown[f"{name} state bytes per parameter"].append(("Fig. optimizers", state))


@pytest.fixture(scope="module")
def shown() -> dict:
    out: dict = defaultdict(list)
    for gather in (_from_memory_table, _from_example, _from_claims, _from_figure,
                   _from_optimizers):
        gather(out)
    return out


def test_every_quantity_has_one_value(shown):
    differ = []
    for quantity, places in shown.items():
        first_place, first = places[0]
        for place, value in places[1:]:
            if value != pytest.approx(first, rel=1e-9):
                differ.append(f"{quantity}: {first_place} {first} but {place} {value}")
    assert not differ, "\n".join(differ)


def test_each_resnet50_quantity_is_shown_in_several_places(shown):
    """The gathering reads what it should: a renamed row would drop out silently."""
    for name, cid in CLAIM_OF.items():
        places = {p for p, _ in shown[f"ResNet-50 {name.lower()} bytes"]}
        assert places == {"Table memory-total", "example resnet50-memory", f"claim {cid}",
                          "Fig. training-step-resnet50"}, name
    assert len(shown["ResNet-50 parameter count"]) == 2
    assert len(shown["adam step FLOPs per parameter"]) == 2


def test_the_resnet50_values_are_the_estimates(shown):
    """...and that one value is the committed estimate's, at the example's batch."""
    mem = dict(resnet50.memory())
    total = resnet50.at(sp.Add(*mem.values()))
    assert shown["ResNet-50 total bytes"][0][1] == pytest.approx(total, rel=1e-12)
    assert shown["ResNet-50 parameter count"][0][1] == resnet50.parameters()
    step = resnet50.at(resnet50.flops("forward") + resnet50.flops("backward"))
    assert shown["ResNet-50 step FLOPs"][0][1] == pytest.approx(step, rel=1e-12)


def test_a_second_value_is_caught(shown):
    """The check fails when one place says otherwise (the test can fail)."""
    planted = dict(shown)
    planted["ResNet-50 total bytes"] = shown["ResNet-50 total bytes"] + [("planted", 1.0)]
    with pytest.raises(AssertionError, match="planted"):
        test_every_quantity_has_one_value(planted)
