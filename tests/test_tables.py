"""Tables of the reference document: rendered from the engine's results, deterministically."""

import csv
import io
import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import sympy as sp

from derivations import losses, optimizers
from derivations.tables import TABLE_NAMES, TABLES, build_table, render_table
from symflop import Component, UsageError, derive, total
from symflop.compose import CompositeDerivation
from symflop.cost.conventions import CONVENTIONS
from symflop.report.tables import (
    FORMATS,
    LONG_TABLE_ROWS,
    Num,
    Seq,
    Table,
    latex_document,
    latex_escape,
    render,
)

P, B, d, N = sp.symbols("P B d N", integer=True, positive=True)

# One table (or family of tables) per table of the reference document.
DOCUMENT_TABLES = [
    "loss-mse", "loss-cross-entropy", "loss-others",
    "optimizer-sgd", "optimizer-momentum", "optimizer-nesterov-lookahead",
    "optimizer-adagrad-eps-inside", "optimizer-rmsprop-eps-inside", "optimizer-adam",
    "optimizer-adamw", "optimizer-adam-operations", "optimizer-comparison", "optimizer-25.6m",
    "regularization-l1", "regularization-l2", "regularization-dropout",
    "regularization-data-augmentation", "batchnorm-steps", "batchnorm-train-vs-inference",
    "normalization-layernorm", "normalization-comparison", "training-step-summary",
    "memory-total",
]


def rows(t: Table) -> dict:
    """First cell (text) -> the whole row."""
    return {r[0]: r for r in t.rows}


def col(t: Table, header: str) -> int:
    return list(t.columns).index(header)


def outside_math(line: str) -> str:
    """The text of a LaTeX line outside $...$ (unescaped dollars)."""
    parts = re.split(r"(?<!\\)\$", line)
    return "".join(parts[::2])


def check_latex(t: Table, text: str) -> None:
    lines = text.splitlines()
    # a fragment says what it needs: the packages, as a comment above it
    assert lines[0].startswith(f"% symflop table {t.name}: ") and "tabularx" in lines[0]
    lines = [ln for ln in lines if not ln.startswith("%")]
    text = "\n".join(lines)
    if len(t.rows) > LONG_TABLE_ROWS:  # a longtable: breaks across pages, header repeated
        assert lines[0] == r"\begingroup\small" and lines[-1] == r"\endgroup"
        assert lines[1].startswith(r"\begin{longtable}{")
        end = lines.index(r"\end{longtable}")
        first, head = lines.index(r"\endfirsthead"), lines.index(r"\endhead")
        header = lines[first - 3:first]
        assert header == lines[head - 3:head] and header[0] == r"\toprule"
        assert lines[head + 1:head + 3] == [r"\bottomrule", r"\endlastfoot"]
        body = header[1:2] + lines[head + 3:end]
    else:
        assert lines[0] == r"\begin{table}[htbp]" and lines[-1] == r"\end{table}"
        for cmd in (r"\toprule", r"\midrule", r"\bottomrule"):
            assert lines.count(cmd) == 1
        assert lines.count(r"\end{tabular}") + lines.count(r"\end{tabularx}") == 1
        assert r"\resizebox" not in text  # a table wraps its columns, never shrinks
        body = lines[lines.index(r"\toprule") + 1:lines.index(r"\bottomrule")]
        body = [ln for ln in body if ln != r"\midrule"]
    assert f"\\label{{tab:{t.name}}}" in text and "\\caption{" in text
    unescaped = re.sub(r"\\[{}]", "", text)
    depth = 0
    for ch in unescaped:
        depth += {"{": 1, "}": -1}.get(ch, 0)
        assert depth >= 0
    assert depth == 0
    assert text.count("$") % 2 == 0
    assert len(body) == len(t.rows) + 1
    for ln in body:
        ln = ln.removesuffix(r" \addlinespace[5pt]")  # space below a tall formula
        assert ln.endswith(r" \\")
        # Column separators outside math (a cases environment has its own '&').
        assert len(re.findall(r"(?<!\\)&", outside_math(ln))) == len(t.columns) - 1


def check_markdown(t: Table, text: str) -> None:
    lines = [ln for ln in text.splitlines() if ln.startswith("|")]
    assert len(lines) == len(t.rows) + 2
    for ln in lines:
        assert len(re.findall(r"(?<!\\)\|", ln)) == len(t.columns) + 1


def check_csv(t: Table, text: str) -> None:
    got = list(csv.reader(io.StringIO(text)))
    assert len(got) == len(t.rows) + 1
    assert all(len(r) == len(t.columns) for r in got)


def check_json(t: Table, text: str) -> None:
    doc = json.loads(text)
    assert text == json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=True) + "\n"
    assert doc["name"] == t.name and len(doc["columns"]) == len(t.columns)
    assert len(doc["rows"]) == len(t.rows)


CHECKS = {"latex": check_latex, "markdown": check_markdown, "csv": check_csv,
          "json": check_json}


def test_every_table_of_the_document_is_there():
    assert set(DOCUMENT_TABLES) <= set(TABLE_NAMES)
    # every table is in the report once; `distributed` is another name for one of them
    assert [n for n in TABLES if n != "distributed"] == TABLE_NAMES
    assert TABLES["distributed"] is TABLES["distributed-memory"]


@pytest.mark.parametrize("name", TABLE_NAMES)
def test_every_table_renders_in_every_format_under_every_convention(name):
    for conv in CONVENTIONS:
        for exact in (False, True):
            t = build_table(name, conv, "float32", exact)
            # memory-total's bytes are always exact (a model's memory has no lower order)
            assert t.rows and t.options == {"convention": conv, "dtype": "float32",
                                            "exact": exact or name == "memory-total",
                                            "stage": "reused"}
            for fmt in FORMATS:
                CHECKS[fmt](t, render(t, fmt))
    t = build_table(name, "default", "float32", False, "written")
    assert t.options["stage"] == "written" and "as written" in t.caption
    for fmt in FORMATS:
        CHECKS[fmt](t, render(t, fmt))
        assert render_table(name, fmt, "fma", "float64", True, "written") == \
            render(build_table(name, "fma", "float64", True, "written"), fmt)


# -- the entries are the engine's ----------------------------------------------------------

def test_entries_are_the_engines_counts_and_bytes():
    adam = derive(optimizers.adam())
    t = rows(build_table("optimizer-adam", exact=True))
    assert t["Per-step FLOPs"][1] == adam.counts("step").total  # the optimized program
    written = rows(build_table("optimizer-adam", exact=True, stage="written"))
    assert written["Per-step FLOPs"][1] == 14 * P + 7  # the document's equations
    assert t["Extra state memory (bytes, float32)"][1] == 8 * P + 4
    assert rows(build_table("optimizer-adam", stage="written"))["Per-step FLOPs"][1] == \
        14 * P  # leading
    # dtype chooses the bytes: float64 doubles them.
    t64 = rows(build_table("optimizer-adam", dtype="float64", exact=True))
    assert t64["Extra state memory (bytes, float64)"][1] == adam.memory.bytes("state", "float64")
    assert t64["Extra state memory (bytes, float64)"][1] == 16 * P + 8
    # The convention chooses the counts: under fma the multiply-adds count once.
    tf = rows(build_table("optimizer-adam", "fma", exact=True))
    assert tf["Per-step FLOPs"][1] == adam.counts("step", "fma").total != 14 * P + 7
    # The Adam breakdown is the engine's per-step counts, in order, then the total.
    ops = build_table("optimizer-adam-operations", exact=True, stage="written")
    steps = adam.step_counts("step", stage="written")
    assert [r[0] for r in ops.rows[:len(steps)]] == [st.lhs for st, _ in steps]
    assert [r[2] for r in ops.rows[:len(steps)]] == [c.total for _, c in steps]
    assert ops.rows[-1][2] == 14 * P + 7


def test_batchnorm_tables_follow_the_convention_and_the_stage():
    bn = derive(__import__("derivations.normalization").normalization.batchnorm())
    for conv in ("default", "fma"):
        for stage in ("optimized", "written"):
            t = rows(build_table("batchnorm-steps", conv, exact=True, stage=stage))
            assert t["Total forward"][2] == bn.counts("forward", conv, stage).total
            assert t["Total backward (derived)"][2] == bn.counts("backward", conv, stage).total
    written = rows(build_table("batchnorm-steps", "default", exact=True, stage="written"))
    optimized = rows(build_table("batchnorm-steps", "default", exact=True))
    # The optimized normalize step reads x - mu computed once for the variance: N*d fewer.
    assert sp.expand(written["xhat"][2] - optimized["xhat"][2]) == N * d
    tvi = rows(build_table("batchnorm-train-vs-inference", stage="written"))
    assert tvi["FLOPs per element of x"][1:] == (8, 4)
    # optimized: x - mu once (7); inference is a*(x - m) + beta with per-feature a (3)
    tvi = rows(build_table("batchnorm-train-vs-inference"))
    assert tvi["FLOPs per element of x"][1:] == (7, 3)
    assert tvi["Batch dependence"][1:] == ("yes", "no")
    assert tvi["Fold into the preceding layer"][1] == "no"


def test_optimizer_25m_figures():
    t = rows(build_table("optimizer-25.6m", exact=True, stage="written"))
    # Hand count: 14 * 25.6M + 7 FLOPs; state 8 * 25.6M + 4 bytes = 195.31 MiB.
    assert t["adam"][2] == Num(14 * 25_600_000 + 7, ",")
    assert t["adam"][1].value == pytest.approx((8 * 25_600_000 + 4) / 2 ** 20)
    # the share of ResNet-50's backward of one image, the estimate's (the document: 7.6G);
    # its size is held to the hand count and the measurement in tests/test_resnet50.py
    from derivations import resnet50
    backward = resnet50.backward_one_image()
    assert 16e9 < backward < 16.5e9
    assert t["adam"][3].value == pytest.approx(100 * (14 * 25_600_000 + 7) / backward)
    assert "358,400,007" in render_table("optimizer-25.6m", "markdown", exact=True,
                                         stage="written")
    assert "358,400,000" in render_table("optimizer-25.6m", "markdown", stage="written")


def test_training_step_comes_from_the_composite():
    from derivations import training
    d = CompositeDerivation(training.training_step("adam"))
    t = rows(build_table("training-step-summary", exact=True))
    assert t["Total step (adam)"][1] == d.counts("step").total
    # the memory total holds every row above it: the network's activations and the loss's
    # and BatchNorm's saved tensors too (it left the last two out)
    own = sum((d.memory.bytes(w) for w in ("parameters", "gradients", "state", "saved")),
              sp.Integer(0))
    saved = [t[r][2] for r in ("loss forward", "l2 forward", "batchnorm forward")]
    assert t["Total step (adam)"][2] == sp.expand(own + sp.Add(*saved))
    assert all(sp.sympify(x) != 0 for x in (saved[0], saved[2]))
    assert t["loss backward"][1] == d.counts("loss.backward").total


def test_memory_total_is_the_estimate_term_by_term():
    """Table memory-total holds the committed estimate of ResNet-50 (whose values every
    other page shares: tests/test_one_value.py): each term, the saved bytes by layer
    type adding up to the estimate's saved total, and the total."""
    from derivations import resnet50
    m = rows(build_table("memory-total", exact=True))
    mem = dict(resnet50.memory())
    for term in ("parameters", "gradients", "Adam state"):
        assert m[term][1] == mem[term]
    saved = sp.Add(*[r[1] for label, r in m.items() if label.startswith("saved: ")])
    assert sp.expand(saved - mem["saved for backward"]) == 0
    B = resnet50.B
    assert m["Total"][1] == sp.expand(sp.Add(*mem.values()))
    # bytes per image: the hand count of ResNet-50's saved tensors (float32, int64 max-pool
    # indices) and the loss's log-softmax output (1000 floats) and int64 target
    import resnet50_hand
    assert m["Total"][1].coeff(B) == resnet50_hand.resnet50_saved_bytes(4) + 4 * 1000 + 8
    assert m["saved: max-pool"][2].value == 32 * 8 * 64 * 56 * 56 / 2 ** 20  # int64 indices


def mse_times_3() -> Component:
    """MSE with a factor 3: one more multiplication (3 * the sum), once."""
    c = Component("mse-times-3", "Losses", "mean squared error times 3")
    Bs, ds = c.dim("B d")
    i, j = c.index(i=Bs, j=ds)
    yhat, y = c.input("yhat", (Bs, ds)), c.target("y", (Bs, ds))
    L = c.output("L")
    c.assign("forward", L, 3 * total((yhat[i, j] - y[i, j]) ** 2, i, j) / (Bs * ds))
    c.set_gradient(L, (yhat,))
    return c


def mse_cubed() -> Component:
    """|yhat - y|**3 summed: one more multiplication per element (leading order 4*B*d)."""
    c = Component("mse-cubed", "Losses", "mean cubed error")
    Bs, ds = c.dim("B d")
    i, j = c.index(i=Bs, j=ds)
    yhat, y = c.input("yhat", (Bs, ds)), c.target("y", (Bs, ds))
    L = c.output("L")
    c.assign("forward", L, total((yhat[i, j] - y[i, j]) ** 3, i, j) / (Bs * ds))
    c.set_gradient(L, (yhat,))
    return c


def adam_without_bias_correction() -> Component:
    c = Component("adam-no-bias", "Optimizers", "Adam without bias correction")
    Ps = c.dim("P")
    p = c.index(p=Ps)
    theta, g = c.parameter("theta", (Ps,)), c.input("g", (Ps,))
    m, v = c.state("m", (Ps,)), c.state("v", (Ps,))
    beta1, beta2, lr, eps = c.hyper("beta1 beta2 lr epsilon")
    c.assign("step", m[p], beta1 * m[p] + (1 - beta1) * g[p])
    c.assign("step", v[p], beta2 * v[p] + (1 - beta2) * g[p] ** 2)
    c.assign("step", theta[p], theta[p] - lr * m[p] / (sp.sqrt(v[p]) + eps))
    return c


def test_a_changed_equation_changes_the_table(monkeypatch):
    before = rows(build_table("loss-mse", exact=True))
    # Hand count of the original: B*d subtractions + B*d squares + (B*d - 1) additions,
    # then one multiplication B*d and one division: 3*B*d + 1.
    assert before["Total FLOPs"][1] == 3 * B * d + 1
    monkeypatch.setitem(losses.COMPONENTS, "mse", mse_times_3)
    after = rows(build_table("loss-mse", exact=True))
    # The factor 3 is one more multiplication, once: 3*B*d + 2.
    assert after["Total FLOPs"][1] == 3 * B * d + 2
    assert after["multiply"][1] == B * d + 2
    assert "3 B d + 2" in render_table("loss-mse", "latex", exact=True)
    assert rows(build_table("loss-all", exact=True))["mse"][1] == 3 * B * d + 2
    # A change of leading order shows in the default (leading-order) table as well.
    monkeypatch.setitem(losses.COMPONENTS, "mse", mse_cubed)
    assert rows(build_table("loss-mse"))["Total FLOPs"][1] == 4 * B * d  # cube: 2 multiplications
    assert "4 B d" in render_table("loss-mse", "markdown")


def test_a_changed_optimizer_changes_every_table_that_uses_it(monkeypatch):
    # (memory-total is ResNet-50's committed estimate: a changed optimizer changes it when
    # the record is remade, which tests/test_resnet50.py demands.)
    monkeypatch.setitem(optimizers.COMPONENTS, "adam", adam_without_bias_correction)
    # Hand count without bias correction: m 3P + 1 (1 - beta1, once), v 4P + 1, theta 5P;
    # state m, v only.
    t = rows(build_table("optimizer-25.6m", exact=True))
    assert t["adam"][2] == Num(12 * 25_600_000 + 2, ",")
    assert rows(build_table("optimizer-comparison", exact=True))["adam"][2] == 12 * P + 2
    assert rows(build_table("optimizer-adam", exact=True))["Per-step FLOPs"][1] == 12 * P + 2
    summary = rows(build_table("training-step-summary", exact=True))
    assert summary["optimizer step (adam)"][1:3] == (12 * P + 2, 8 * P)


# -- rendering --------------------------------------------------------------------------------

def test_prose_typesets_ascii_formulas_and_leaves_words_alone():
    from symflop.report.prose import add_symbols, prose_latex
    from symflop.report.tables import set_symbol_latex
    add_symbols({"lr", "g", "v", "G", "lam", "N", "s", "W", "W_f"})  # as a catalogue does
    set_symbol_latex({"lr": r"\eta", "lam": r"\lambda"})
    assert prose_latex("SGD step: theta - lr*g.") == r"SGD step: $\theta - \eta g$."
    assert prose_latex("v_t = mu*v_{t-1} + g") == r"${v}_{t} = \mu {v}_{t-1} + g$"
    assert prose_latex("AdaGrad, sqrt(G) + eps") == r"AdaGrad, $\sqrt{G} + \epsilon$"
    # inline fractions with a slash: a stacked one would touch the lines above and below
    assert prose_latex("adagrad-eps-inside at 1/N") == r"adagrad-eps-inside at $1 / N$"
    # s is a glossary symbol (the BatchNorm fold's scale), but not the s of a possessive
    assert prose_latex("the catalogue's alpha") == r"the catalogue's $\alpha$"
    assert prose_latex("W_f = s*W") == r"$W_{f} = s W$"
    assert prose_latex("lam/2 times the sum of q9^2") == r"$\lambda / 2$ times the sum " \
        r"of q9\textasciicircum{}2"  # q9 is no symbol: it stays text, escaped
    assert prose_latex("a step, 50% & more") == r"a step, 50\% \& more"
    # a binary operator between a word and a formula stays: it was read as a unary plus
    add_symbols({"m"})
    assert prose_latex("(1 - m) r + m s is") == r"($1 - m$) r + m s is"
    assert prose_latex("-lr*g, then") == r"$- \eta g$, then"



def test_text_is_escaped_and_expressions_printed():
    t = Table("demo_1", "Costs & 50% of {q}_1 #2 $3 ~ ^ \\ |", ("Name", "Value", "N"),
              [("a_b & co", sp.Eq(sp.Symbol("y"), sp.Abs(sp.Symbol("x")), evaluate=False),
                Num(1234.5, ",.1f")),
               ("list", Seq((sp.Symbol("beta1"), "step_max")), 7)])
    tex = render(t, "latex")
    assert r"\texttt{a\_b} \& co" in tex and r"50\% of \{q\}\_1 \#2 \$3" in tex
    assert r"\textasciitilde{} \textasciicircum{} \textbackslash{} \textbar{}" in tex
    assert r"$y = \left|{x}\right|$" in tex and "1,234.5" in tex
    assert r"$\beta_{1}$, \texttt{step\_max}" in tex  # a name of code: no symbol
    assert r"\label{tab:demo-1}" in tex and "{llr}" in tex
    md = render(t, "markdown")
    assert r"$y = \left\|{x}\right\|$" in md and "---:|" in md
    got = list(csv.reader(io.StringIO(render(t, "csv"))))
    assert got[1] == ["a_b & co", "y = Abs(x)", "1234.5"] and got[2] == ["list",
                                                                      "beta1, step_max", "7"]
    doc = json.loads(render(t, "json"))
    assert doc["rows"][1] == ["list", ["beta1", "step_max"], 7]
    assert latex_escape("a  b\n c") == "a b c"


def test_bad_tables_and_options_are_refused():
    with pytest.raises(ValueError, match="2 cells for 3 columns"):
        Table("x", "x", ("a", "b", "c"), [("1", "2")])
    with pytest.raises(TypeError):
        Table("x", "x", ("a",), [(object(),)])
    with pytest.raises(UsageError, match="did you mean optimizer-adam"):
        render_table("optimizer-adm", "latex")
    with pytest.raises(UsageError, match="unknown table format"):
        render_table("loss-mse", "html")
    with pytest.raises(UsageError, match="unknown convention"):
        render_table("loss-mse", "csv", convention="nope")
    with pytest.raises(UsageError, match="unknown dtype"):
        render_table("loss-mse", "csv", dtype="int3")


def test_latex_document_compiles(tmp_path):
    if shutil.which("pdflatex") is None:
        pytest.skip("pdflatex is not on PATH (CI installs a LaTeX distribution)")
    demo = Table("demo", "Special characters: & % $ # _ { } ~ ^ \\ | < >", ("a", "b"),
                 [("x_1 & 50%", sp.sqrt(sp.Symbol("epsilon") + sp.Symbol("v")))])
    tables = [build_table(n, exact=e) for n in TABLE_NAMES for e in (False, True)]
    (tmp_path / "tables.tex").write_text(latex_document(tables + [demo]))
    done = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error",
                           "tables.tex"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout[-3000:]
    assert (tmp_path / "tables.pdf").stat().st_size > 0
    # Every table fits its page: a float taller than the page would run off it.
    log = (tmp_path / "tables.log").read_text(errors="replace")
    assert "Float too large" not in log and "Overfull \\vbox" not in log


_RENDER_ALL = """
from derivations.tables import TABLE_NAMES, build_table
from symflop.report.tables import FORMATS, render
for conv, exact, stage in (("default", False, "optimized"), ("fma", True, "written")):
    for name in TABLE_NAMES:
        t = build_table(name, conv, "float32", exact, stage)
        for fmt in FORMATS:
            print(render(t, fmt), end="")
"""


def test_output_is_byte_identical_across_hash_seeds():
    outs = []
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run([sys.executable, "-c", _RENDER_ALL], env=env,
                              capture_output=True, timeout=300)
        assert done.returncode == 0, done.stderr.decode()[-2000:]
        outs.append(done.stdout)
    assert len(outs[0]) > 10_000 and outs[0] == outs[1]


def test_multi_letter_names_are_typeset_as_names():
    """An engine name is one upright name, never an italic product with a subscript
    (grad_mu_part2 read as g*r*a*d sub mu part2); one letter or a Greek name keeps
    SymPy's subscripts; a gradient is d of what it is the gradient of (d gamma), the
    parts the engine keeps of one as upright tags."""
    from symflop.report.render import lhs_text
    from symflop.report.tables import expr_latex
    assert expr_latex(sp.Symbol("grad_mu_part2_cse2")) == \
        r"{\mathrm{d}\mu_{\mathrm{part2,cse2}}}"
    assert expr_latex(sp.Symbol("grad_gamma")) == r"{\mathrm{d}\gamma}"
    assert expr_latex(sp.Symbol("grad_bias")) == r"{\mathrm{d}\mathrm{bias}}"
    assert expr_latex(sp.Symbol("exp_avg_sq")) == r"\mathinner{\mathrm{exp\_avg\_sq}}"
    assert expr_latex(sp.Symbol("x_i")) == "x_{i}"
    assert expr_latex(sp.Symbol("sigma_2")) == r"\sigma_{2}"
    i = sp.Idx("i")
    assert lhs_text("grad_x", (i,), True) == r"{{\mathrm{d}x}}_{i}"


def test_prose_typesets_relations_derivatives_norms_and_powers_of_ten():
    """The ASCII the report's prose was left with: an update arrow, a limit, dL/dw, a
    norm, 1e-08, a bracketed product, a formula inside brackets."""
    from symflop.report.prose import add_symbols, prose_latex
    from symflop.report.tables import set_symbol_latex
    add_symbols({"lr", "g", "lam", "w", "L", "z", "m"})
    set_symbol_latex({"lr": r"\eta", "lam": r"\lambda"})
    assert prose_latex("w <- w(1 - lr*lam) - lr*dL/dw") == \
        r"$w \leftarrow w \left(1 - \eta \lambda\right) - \eta \mathrm{d}L / \mathrm{d}w$"
    assert prose_latex("z -> -oo and z <= -5") == r"$z \to -\infty$ and $z \leq -5$"
    assert prose_latex("eps = 1e-08, lr = 2.5e3") == \
        r"$\epsilon = 10^{-8}$, $\eta = 2.5 \cdot 10^{3}$"
    assert prose_latex("L + (lam/2)*||w||^2 added") == \
        r"$L + \lambda \lVert w \rVert^{2} / 2$ added"
    assert prose_latex("(1 - m) times") == r"($1 - m$) times"       # its brackets kept
    assert prose_latex("the document do x") == "the document do x"  # words stay words
    assert prose_latex("sign(g) != 0") == r"$\operatorname{sign}{\left(g \right)} \neq 0$"


def test_prose_typesets_signs_calls_lone_letters_and_formulas_in_text_brackets():
    """A minus after a word is a sign (it printed as a hyphen outside the math); a call
    of gradL or sigmoid is a formula; a symbol of one letter alone is set as math, but
    not the capitals that start sentences nor a letter of a dotted code name; a bracket
    the text opens before a formula leaves the formula typeset."""
    from symflop.report.prose import add_symbols, prose_latex
    from symflop.report.tables import set_symbol_latex
    add_symbols({"lr", "z", "y", "B", "F", "A", "phi_t", "v"})
    set_symbol_latex({"lr": r"\eta"})
    assert prose_latex("which is -lr times the rest") == r"which is $- \eta$ times the rest"
    assert prose_latex("it tends to -1 here") == "it tends to $-1$ here"
    assert prose_latex("x - y and so - on") == "$x - y$ and so - on"  # between: an operator
    assert prose_latex("at gradL(phi_t):") == r"at $\nabla L\left(\phi_{t}\right)$:"
    assert prose_latex("(sigmoid(z) - y)/B") == \
        r"$\left(\sigma\left(z\right) - y\right) / B$"
    assert prose_latex("yhat = sigma(z) -> 0") == r"$\hat{y} = \sigma\left(z\right) \to 0$"
    assert prose_latex("dy ~ -1, gradient -9.08e-05") == \
        r"$\mathrm{d}y \sim -1$, gradient $-9.08 \cdot 10^{-5}$"
    assert prose_latex("5-10 epochs, (1 - 0.9) = 0.1, 8P") == \
        r"5-10 epochs, $1 - 0.9 = 0.1$, $8 P$"
    assert prose_latex("989.4 TFLOP/s and dL/dy") == \
        r"989.4 TFLOP/s and $\mathrm{d}L / \mathrm{d}y$"
    assert prose_latex("Linear(6, 4) + BatchNorm1d(4).eval(), betas=(0.9, 0.999)") == \
        r"\texttt{Linear(6, 4)} + \texttt{BatchNorm1d(4).eval()}, \texttt{betas=(0.9, 0.999)}"
    assert prose_latex("the logit z of class y") == "the logit $z$ of class $y$"
    assert prose_latex("A step.") == "A step."                       # an article
    assert prose_latex("with F.mse_loss") == r"with \texttt{F.mse\_loss}"  # code
    assert prose_latex("torch's kl_div, SGD(nesterov=True)") == \
        r"torch's \texttt{kl\_div}, \texttt{SGD(nesterov=True)}"
    assert prose_latex("BatchNorm2d(4).eval() of z") == \
        r"\texttt{BatchNorm2d(4).eval()} of $z$"
    assert prose_latex("ends with v.") == "ends with $v$."            # a sentence's end
    assert prose_latex("sqrt(v) (eps left out)") == r"$\sqrt{v}$ ($\epsilon$ left out)"
    assert prose_latex("P = 25,600,000; B, d") == r"$P = 25{,}600{,}000$; $B$, $d$"
    assert prose_latex("from `run --at B=1`") == r"from \texttt{run -{}-at B=1}"
    assert prose_latex("a 3x224x224 input, 30x too large") == \
        r"a $3 \times 224 \times 224$ input, $30 \times$ too large"
    assert prose_latex("max(0, 1 - y*z) per sample") == \
        r"$\max\left(0, 1 - y z\right)$ per sample"


def test_quotes_keep_the_documents_about_and_bold():
    from symflop.report.quotes import quote_latex
    assert quote_latex("backward: ~7.6G FLOPs, **10Nd**") == \
        r"backward: ${\sim}$7.6G FLOPs, \textbf{10Nd}"


def test_rows_around_a_tall_formula_get_space():
    """A fraction's denominator would touch the row below in a wrapped (paragraph) cell:
    space follows a row with a tall formula and precedes one; plain rows stay tight."""
    from symflop.report.tables import spaced_rows
    rows = ["a & $x$ \\\\", "b & $\\frac{1}{N}$ \\\\", "c & $y$ \\\\", "d & $z$ \\\\"]
    got = spaced_rows(rows)
    assert [r.endswith(r"\addlinespace[5pt]") for r in got] == [True, True, False, False]


def test_an_identity_step_that_names_its_value_prints_one_formula():
    """"one output: z =" and z's value print as $z = ...$, not z in text font beside the
    formula; a formula before the "=" joins it too; other words stay words."""
    import sympy as sp

    from symflop.report.identities import _named_value
    from symflop.report.prose import add_symbols
    add_symbols({"lr", "mu", "v_t", "theta"})
    assert _named_value("one output of the linear layer: z =") == (
        "one output of the linear layer: ", "z")
    words, lhs = _named_value("its next point theta_{t+1} - lr*mu*v_t =")
    assert words == "its next point " and lhs.startswith(r"{\theta}_{t+1} - ")
    assert _named_value("the difference is") is None
    assert sp.Symbol("z")  # the value itself is printed by expr_latex, tested elsewhere
