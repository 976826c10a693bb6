"""The plots of the report, every curve computed by the engine's derivations.

* every schedule's eta(t) over a run (its generated code, at its customary values);
* gradient magnitude against the predicted probability of the true class, for
  cross-entropy and for MSE through a sigmoid (their derived gradients);
* per-step FLOPs and state memory of each optimizer against P;
* the FLOPs and memory of a ResNet-50 training step with Adam (the training-step
  composite at the worked example's sizes).

Each figure is written as PNG and PDF with fixed metadata, so that the same
inputs give the same bytes.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import sympy as sp

from derivations import examples, optimizers, schedules, training
from symflop import Component, derive, total
from symflop.compose import CompositeDerivation

RUN = 100  # steps shown for each schedule (its own T where it has one)


def _figure():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    plt.rcParams.update({"figure.dpi": 100, "savefig.dpi": 100, "font.size": 9,
                         "svg.hashsalt": "symflop"})
    return plt


def _save(fig, plt) -> dict[str, bytes]:
    out = {}
    for fmt, meta in (("png", {"Software": None}),
                      ("pdf", {"Creator": None, "Producer": None, "CreationDate": None})):
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt, metadata=meta, bbox_inches="tight")
        out[fmt] = buf.getvalue()
    plt.close(fig)
    return out


def schedules_plot() -> dict[str, bytes]:
    plt = _figure()
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for name, build in schedules.COMPONENTS.items():
        c = build()
        fn = derive(c).compiled("schedule")
        steps = int(c.defaults.get("T", RUN))
        t = np.arange(steps)
        eta = [float(fn(backend="numpy", t=float(k), **c.defaults)["eta"]) for k in t]
        ax.plot(t, eta, label=name, linewidth=1.2)
    ax.set_xlabel("step t")
    ax.set_ylabel("learning rate eta(t)")
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
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    ax.plot(p, _logit_gradient("bce")(z), label="cross-entropy (sigmoid + BCE)")
    ax.plot(p, _logit_gradient(_mse_through_sigmoid())(z), label="MSE through a sigmoid")
    ax.set_xlabel("predicted probability of the true class")
    ax.set_ylabel("|dL/dz| (per sample, logit z)")
    ax.set_title("A confidently wrong prediction: cross-entropy keeps its gradient")
    ax.legend()
    return _save(fig, plt)


def optimizers_plot() -> dict[str, bytes]:
    plt = _figure()
    P = np.logspace(3, 9, 25)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9.0, 3.6))
    stateless = []
    for name, build in optimizers.COMPONENTS.items():
        d = derive(build())
        flops = d.count_function("step")
        state = d.memory.bytes("state")
        a1.plot(P, [flops(P=int(n)) for n in P], label=name, linewidth=1)
        if state == 0:
            stateless.append(name)
            continue
        per = [float(state.xreplace({s: int(n) for s in state.free_symbols})) / 2 ** 20
               for n in P]
        a2.plot(P, per, label=f"{name}: {state} B", linewidth=1)
    a1.set(xscale="log", yscale="log", xlabel="parameters P", ylabel="FLOPs per step",
           title="Optimizer step cost")
    a2.set(xscale="log", yscale="log", xlabel="parameters P",
           ylabel="state memory (MiB, float32)",
           title="Optimizer state" + (f" ({', '.join(stateless)}: none)" if stateless else ""))
    a1.legend(fontsize=6, ncol=2)
    a2.legend(fontsize=6)
    return _save(fig, plt)


def training_step_plot() -> dict[str, bytes]:
    """ResNet-50, Adam, B = 32: FLOPs per part and memory per kind."""
    plt = _figure()
    ex = examples.resnet50_memory()
    k = 2  # backward ~ k * forward
    backward = examples.optimizers_25m().inputs["backward FLOPs (given)"]
    sizes = {"P": ex.inputs["P"], "B": ex.inputs["B"], "C": 1000,
             # The document's ResNet-50 backward (the optimizers-25.6m example's input,
             # read per step as its optimizer table reads it) is about k*F.
             "F": int(backward / k), "k": k,
             # Its BatchNorm layers normalize this many values per sample in all (the
             # example's layer list); BatchNorm's cost is per value, so one layer of
             # that many values with d = 1 carries it.
             "N": ex.inputs["B"] * examples.resnet50_batchnorm_values(), "d": 1, "L_bn": 1,
             "A": ex.inputs["B"] * ex.inputs[examples.ACTIVATIONS]}
    d = CompositeDerivation(training.training_step("adam"))
    parts = [(name, d.count_function(name)(**sizes)) for name in d.passes[1:]]
    parts = [("network forward", sizes["F"]), ("network backward", sizes["k"] * sizes["F"])] \
        + parts
    subs = {sp.Symbol(k, integer=True, positive=True): v for k, v in sizes.items()}
    memory = [(label, float(d.memory.bytes(what).xreplace(subs)) / 2 ** 30)
              for label, what in (("parameters", "parameters"), ("gradients", "gradients"),
                                  ("Adam state", "state"), ("activations", "saved"))]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9.0, 3.6))
    a1.barh([n for n, _ in parts], [v / 1e9 for _, v in parts])
    a1.set(xscale="log", xlabel="GFLOPs per step (log scale)", title="Training step FLOPs")
    a2.bar([n for n, _ in memory], [v for _, v in memory])
    a2.set(ylabel="GiB (float32)", title="Training memory")
    fig.suptitle("ResNet-50, Adam, B = 32, float32: F = 3.8 GFLOPs per step (the document's "
                 "backward ~7.6G = 2F, as its optimizer table reads it), BatchNorm over every "
                 "conv output", fontsize=8)
    return _save(fig, plt)


CAPTIONS = {
    "schedules": "Every schedule's learning rate over a run, from its generated code at its "
                 "customary hyperparameters.",
    "gradient-ce-vs-mse": "Gradient magnitude with respect to the logit against the "
                          "predicted probability of the true class: cross-entropy (bce) "
                          "against MSE through a sigmoid, both from derived gradients.",
    "optimizers": "Per-step FLOPs and state memory of every optimizer against the number "
                  "of parameters P (default convention, float32).",
    "training-step-resnet50": "A ResNet-50 training step with Adam at B = 32: FLOPs of each "
                              "part (log scale) and memory by kind.",
}

PLOTS: dict[str, Callable[[], dict[str, bytes]]] = {
    "schedules": schedules_plot,
    "gradient-ce-vs-mse": gradient_plot,
    "optimizers": optimizers_plot,
    "training-step-resnet50": training_step_plot,
}
