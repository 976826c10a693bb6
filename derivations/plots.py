"""The plots of the report, every curve computed by the engine's derivations.

* every schedule's eta(t) over a run (its generated code, at its customary values);
* gradient magnitude against the predicted probability of the true class, for
  cross-entropy and for MSE through a sigmoid (their derived gradients);
* FLOPs of one step and bytes of state of each optimizer, per parameter;
* the FLOPs and memory of a ResNet-50 training step with Adam (``symflop estimate`` of
  the project's ResNet-50, ``derivations/resnet50.py``).

Each figure is written as PNG and PDF with fixed metadata, so that the same
inputs give the same bytes.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import sympy as sp

from derivations import optimizers, resnet50, schedules
from symflop import Component, derive, total

# The report's fonts: Latin Modern (TeX's, where installed), else Computer Modern, which
# matplotlib ships; math in the same faces; a minus sign that cmr10 has.
FONTS = {"font.family": "serif", "font.serif": ["Latin Modern Roman", "cmr10"],
         "mathtext.fontset": "cm", "axes.formatter.use_mathtext": True,
         "axes.unicode_minus": True}
# Every figure as wide as a portrait page's text (6.5 in), printed at its own size: its
# 9 pt text stays 9 pt in the report.
WIDTH = 6.5
RUN = 100  # steps shown for each schedule (its own T where it has one)


def _figure():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    # constrained layout, not a tight box at saving: every figure is exactly WIDTH wide,
    # the text's width, so that it prints at its own size and its 9 pt text stays 9 pt
    plt.rcParams.update({"figure.dpi": 100, "savefig.dpi": 100, "font.size": 9,
                         "figure.constrained_layout.use": True,
                         "svg.hashsalt": "symflop", **FONTS})
    return plt


def _save(fig, plt) -> dict[str, bytes]:
    out = {}
    for fmt, meta in (("png", {"Software": None}),
                      ("pdf", {"Creator": None, "Producer": None, "CreationDate": None})):
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt, metadata=meta)
        out[fmt] = buf.getvalue()
    plt.close(fig)
    return out


def schedules_plot() -> dict[str, bytes]:
    plt = _figure()
    fig, ax = plt.subplots(figsize=(WIDTH, 3.1))
    # Curves that coincide over part of the run stay apart by line style and marker.
    styles = [(ls, m) for m in ("", "o", "s", "^") for ls in ("-", "--", ":", "-.")]
    for (name, build), (ls, marker) in zip(schedules.COMPONENTS.items(), styles):
        c = build()
        fn = derive(c).compiled("schedule")
        steps = int(c.defaults.get("T", RUN))
        t = np.arange(steps)
        eta = [float(fn(backend="numpy", t=float(k), **c.defaults)["eta"]) for k in t]
        ax.plot(t, eta, label=name, linewidth=1.2, linestyle=ls, marker=marker,
                markersize=3, markevery=max(1, steps // 8))
    ax.set_xlabel("step t")
    ax.set_ylabel(r"learning rate $\eta(t)$")
    ax.set_yscale("log")
    ax.set_title("Learning-rate schedules at their customary hyperparameters")
    ax.legend(fontsize=7, ncol=2)
    return _save(fig, plt)


def _mse_through_sigmoid() -> Component:
    """L = 1/B sum_i (sigmoid(z_i) - y_i)^2: MSE on a probability, for the comparison."""
    c = Component("mse-sigmoid", "Plots", "MSE through a sigmoid")
    B = c.dim("B")
    i = c.index(i=B)
    z, y = c.input("z", (B,)), c.target("y", (B,))
    L = c.output("L")
    c.assign("forward", L, total((1 / (1 + sp.exp(-z[i])) - y[i]) ** 2, i) / B)
    c.set_gradient(L, (z,))
    return c


def _logit_gradient(c: Component) -> Callable:
    """|dL/dz| of one sample with target 1, as a function of the logit, from the engine."""
    from derivations import losses
    c = c if isinstance(c, Component) else losses.COMPONENTS[c]()
    d = derive(c)

    def grad(z: np.ndarray) -> np.ndarray:
        out = d.compiled("gradient")(backend="numpy", z=z, y=np.ones_like(z))
        return np.abs(out["grad_z"]) * len(z)  # one sample's gradient (L is a mean)

    return grad


def gradient_plot() -> dict[str, bytes]:
    plt = _figure()
    z = np.linspace(-12.0, 12.0, 481)
    p = 1 / (1 + np.exp(-z))
    fig, ax = plt.subplots(figsize=(WIDTH, 3.1))
    ax.plot(p, _logit_gradient("bce")(z), label="cross-entropy (sigmoid + BCE)")
    ax.plot(p, _logit_gradient(_mse_through_sigmoid())(z), label="MSE through a sigmoid")
    ax.set_xlabel("predicted probability of the true class")
    ax.set_ylabel(r"$|\partial L/\partial z|$ (per sample, logit $z$)")
    ax.set_title("A confidently wrong prediction: cross-entropy keeps its gradient")
    ax.legend()
    return _save(fig, plt)


def _per_parameter(expr: sp.Expr) -> tuple[float, float]:
    """(coefficient of P, the rest) of a polynomial in P: a cost per parameter and the
    per-step constant (bias corrections, a step counter)."""
    P = next((s for s in expr.free_symbols if s.name == "P"), None)
    if P is None:
        return 0.0, float(expr)
    poly = sp.Poly(sp.expand(expr), P)
    return float(poly.coeff_monomial(P)), float(poly.coeff_monomial(1))


def _label_bars(ax, bars, fmt: str) -> None:
    for bar in bars:
        ax.annotate(format(bar.get_width(), fmt), (bar.get_width(), bar.get_y()
                                                   + bar.get_height() / 2),
                    xytext=(3, 0), textcoords="offset points", va="center", fontsize=7)


def optimizer_costs() -> list[tuple[str, float, float]]:
    """(optimizer, FLOPs of one step per parameter, bytes of state per parameter)."""
    out = []
    for name, build in optimizers.COMPONENTS.items():
        d = derive(build())
        out.append((name, _per_parameter(d.counts("step", "default").total)[0],
                    _per_parameter(d.memory.bytes("state"))[0]))
    return out


def optimizers_plot() -> dict[str, bytes]:
    """Per parameter: FLOPs of one step and bytes of state, one bar per optimizer (both
    are linear in P, so the per-parameter figures are the whole story)."""
    plt = _figure()
    names, flops, state = (list(col) for col in zip(*optimizer_costs()))
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(WIDTH, 3.0), sharey=True)
    y = np.arange(len(names))
    _label_bars(a1, a1.barh(y, flops), "g")
    _label_bars(a2, a2.barh(y, state), "g")
    a1.set(yticks=y, yticklabels=names, xlabel="FLOPs per parameter per step",
           title="Optimizer step cost", xlim=(0, max(flops) * 1.2))
    a2.set(xlabel="bytes of state per parameter (float32)", title="Optimizer state",
           xlim=(0, max(state) * 1.2 or 1))
    a1.invert_yaxis()
    return _save(fig, plt)


def training_step_parts() -> list[tuple[str, float, float]]:
    """(part, forward GFLOPs, backward GFLOPs) of ResNet-50's step at the worked example's
    batch, the estimate's lines grouped by layer type, largest first."""
    parts: dict[str, list[float]] = {}
    for what, p in resnet50.record()["by_type"].items():
        acc = parts.setdefault(resnet50.label(what), [0.0, 0.0])
        acc[0] += resnet50.at(p["forward"]) / 1e9
        acc[1] += resnet50.at(p["backward"]) / 1e9
    return sorted(((n, f, b) for n, (f, b) in parts.items()), key=lambda r: -(r[1] + r[2]))


def training_step_memory() -> list[tuple[str, float]]:
    """(term, GiB) of ResNet-50's training memory at the worked example's batch."""
    return [(name, resnet50.at(nbytes) / 2 ** 30) for name, nbytes in resnet50.memory()]


def training_step_plot() -> dict[str, bytes]:
    """ResNet-50, Adam, B = 32: FLOPs per part of one step and memory per term, every
    figure from ``symflop estimate`` (``derivations/resnet50.py``), on linear axes."""
    plt = _figure()
    parts = training_step_parts()
    memory = training_step_memory()
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(WIDTH, 4.6), height_ratios=(3, 2),
                                 layout="constrained")
    y = np.arange(len(parts))
    fwd = [f for _, f, _ in parts]
    a1.barh(y, fwd, label="forward")
    bars = a1.barh(y, [b for *_, b in parts], left=fwd, label="backward")
    step = sum(f + b for _, f, b in parts)
    for bar, (_n, f, b) in zip(bars, parts):
        a1.annotate(f"{f + b:,.3g} ({(f + b) / step:.2%})", (bar.get_x() + bar.get_width(),
                                      bar.get_y() + bar.get_height() / 2),
                    xytext=(3, 0), textcoords="offset points", va="center", fontsize=7)
    a1.set(yticks=y, yticklabels=[n for n, *_ in parts], xlabel="GFLOPs per step",
           title="Training-step FLOPs", xlim=(0, max(f + b for _, f, b in parts) * 1.25))
    a1.legend(fontsize=7, loc="lower right")
    a1.invert_yaxis()
    bars = a2.bar([n.replace(" for ", " for\n") for n, _ in memory], [v for _, v in memory])
    for bar, (_n, v) in zip(bars, memory):
        a2.annotate(f"{v:.2f}", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    xytext=(0, 2), textcoords="offset points", ha="center", fontsize=7)
    a2.set(ylabel="GiB (float32)", title="Training memory",
           ylim=(0, max(v for _, v in memory) * 1.15))  # room for the tallest bar's label
    a2.tick_params(axis="x", labelsize=7)
    fig.suptitle(f"ResNet-50 ({resnet50.parameters():,} parameters), Adam, one step at "
                 f"B = {resnet50.RUN['B']}\nsymflop estimate; a multiply-add counted as two "
                 "FLOPs", fontsize=9)
    return _save(fig, plt)


def zero_memory_plot(parameters: int = 7_500_000_000) -> dict[str, bytes]:
    """Per-device memory against the number of devices, one line per ZeRO stage."""
    from derivations import distributed
    plt = _figure()
    fig, ax = plt.subplots(figsize=(WIDTH, 3.1))
    devices = 2 ** np.arange(0, 11)
    for stage in distributed.STAGES:
        total = sp.Add(*distributed.per_device_memory(stage).values())
        fn = sp.lambdify(distributed.N, total.xreplace({distributed.Psi: parameters}))
        ax.plot(devices, [float(fn(int(n))) / 1e9 for n in devices], marker="o",
                markersize=3, linewidth=1.2, label=stage)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("devices N")
    ax.set_ylabel("GB per device")
    ax.set_title(f"Mixed-precision Adam, {parameters / 1e9:g}B parameters")
    ax.legend(fontsize=7)
    return _save(fig, plt)


def alpha_beta_plot() -> dict[str, bytes]:
    """Measured gloo all-reduce times against the alpha-beta model fitted to them, one fit
    per device count (the committed measurement of ``bench/collectives.py``)."""
    from derivations import distributed
    record = distributed.read_measurement()
    fits = distributed.measured_all_reduce_fits(record)
    plt = _figure()
    fig, ax = plt.subplots(figsize=(WIDTH, 3.2))
    lines = []
    for label, (fit, pts) in fits.items():
        if not label.endswith("alone"):
            continue
        n = pts[0]["devices"]
        x = [p["elements"] for p in pts]
        dots, = ax.plot(x, [p["seconds"] * 1e3 for p in pts], "o", markersize=4,
                        label=f"N = {n}, measured")
        ax.plot(x, [p["seconds"] * (1 + e) * 1e3 for p, e in zip(pts, fit.errors)], "-",
                linewidth=1, color=dots.get_color(), label=f"N = {n}, fitted")
        lines.append(rf"N = {n}: $\alpha$ = {fit.alpha * 1e6:.0f} $\mu$s, 1/$\beta$ = "
                     f"{fit.bandwidth / 1e9:.2f} GB/s, error median {fit.median_error:.0%}, "
                     f"max {fit.max_error:.0%}")
    joint = fits["all N, one fit"][0]
    lines.append(f"one fit for all N: error median {joint.median_error:.0%}, "
                 f"max {joint.max_error:.0%}")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("float32 elements all-reduced")
    ax.set_ylabel("ms (median)")
    from matplotlib.ticker import FuncFormatter, LogLocator
    ax.yaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))  # more than two labelled ticks
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _pos: ""))
    ax.set_title("\n".join(lines), fontsize=8)
    ax.legend(fontsize=7)
    fig.suptitle(f"gloo ring all-reduce, {record['cpus']} CPUs, torch {record['torch']}, "
                 f"{record['date']}", fontsize=9)
    return _save(fig, plt)


CAPTIONS = {
    "schedules": "Every schedule's learning rate over a run, from its generated code at its "
                 "customary hyperparameters. After its warmup, warmup decays along a "
                 "cosine close to the plain one; line styles and markers tell the curves "
                 "apart where they run together.",
    "gradient-ce-vs-mse": "Gradient magnitude with respect to the logit against the "
                          "predicted probability of the true class: cross-entropy (bce) "
                          "against MSE through a sigmoid, both from derived gradients.",
    "optimizers": "Every optimizer per parameter: FLOPs of one step and bytes of state "
                  "(default convention, float32). Both are linear in the parameter count "
                  "P; the constant terms (bias corrections, a step counter) are left out.",
    "training-step-resnet50": "One ResNet-50 training step with Adam at batch 32, from "
                              "symflop estimate on the ResNet-50 this project ships, "
                              "under the default convention (a multiply-add is two FLOPs): "
                              "FLOPs of the step by layer type, forward and backward, and "
                              "memory by term. Both axes are linear; each bar is labelled "
                              "with its value.",
    "zero-memory": "Per-device memory (parameters, gradients and optimizer state) of data "
                   "parallelism and each ZeRO stage against the number of devices N, "
                   "mixed-precision Adam (2 + 2 + 12 bytes per "
                   "parameter, derived from the adam component's state), 7.5B parameters "
                   "(the ZeRO paper's example); activations not included.",
    "alpha-beta": "The latency-bandwidth model of a ring all-reduce (alpha per round, beta "
                  "per byte sent, both counted by the engine from the ring's rounds) "
                  "fitted by least squares on relative error to gloo all-reduce times "
                  "measured on this project's CPU machine by its collectives benchmark (the "
                  "committed measurement). With 2 cores, 4 processes wait for the "
                  "scheduler: each N gets its own fit, and one fit for both is poor.",
}

PLOTS: dict[str, Callable[[], dict[str, bytes]]] = {
    "schedules": schedules_plot,
    "gradient-ce-vs-mse": gradient_plot,
    "optimizers": optimizers_plot,
    "training-step-resnet50": training_step_plot,
    "zero-memory": zero_memory_plot,
    "alpha-beta": alpha_beta_plot,
}
