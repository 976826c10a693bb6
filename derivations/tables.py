"""The reference document's tables, every figure computed by the engine.

``TABLES`` maps a table name to a function ``(convention="default", dtype="float32",
exact=False) -> symflop.tables.Table``.  Each table corresponds to one table of the
reference document (or a family of them, e.g. one metrics table per optimizer of the
catalogue); its counts come from ``derive(c).counts`` / ``.step_counts``, its memory
from ``.memory.bytes`` and its composite figures from the training-step composite and
the worked examples' inputs.  No FLOP or memory figure is written here: change a
component's equations and the tables change with them.  Components are looked up in
their section module's ``COMPONENTS`` each time a table is built.

The options choose the columns' content: ``convention`` the counting convention,
``dtype`` the element size of every byte figure, ``exact`` the exact polynomials
instead of their leading-order part (applied to counts and to byte counts alike).

``render_table(name, fmt, ...)`` renders one table as LaTeX, Markdown, CSV or JSON.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import replace
from functools import cache

import sympy as sp

import derivations
from derivations import distributed, examples, losses, normalization, optimizers, resnet50, training
from symflop.compose import CompositeDerivation, Part
from symflop.core.model import Component, Role
from symflop.cost.conventions import Convention, get_convention
from symflop.cost.counting import Counts, leading_order
from symflop.cost.memory import dtype_bytes
from symflop.derive import Derivation, derive
from symflop.errors import UsageError
from symflop.report.tables import Num, Seq, Table, render
from symflop.rewrite.pipeline import as_written_stage, stage_name

MIB = 2 ** 20

KIND_LABELS = {"add": "add/subtract", "mul": "multiply", "div": "divide",
               "transcendental": "transcendental", "compare": "compare/select",
               "random": "random draw", "fma": "fused multiply-add"}

# Which optimizer the document compares another with ("same as momentum", "vs. Adam").
BASES = {"nesterov": "momentum", "nesterov-lookahead": "momentum", "adamw": "adam"}

LOSS_VARIANTS = ("bce", "cross-entropy", "cross-entropy-soft")
OTHER_LOSSES = ("hinge", "huber", "focal", "kl-div")


class Opts:
    """The options every table takes, checked once."""

    def __init__(self, convention: str | Convention, dtype: str, exact: bool,
                 stage: str = "optimized"):
        self.conv = get_convention(convention)
        dtype_bytes(dtype)
        self.dtype = dtype
        self.exact = bool(exact)
        self.stage = stage_name(stage)

    def counts(self, d, pass_name: str) -> Counts:
        """A pass's counts at the chosen stage (a pass the author wrote, or one derived
        from it: as written means as reverse mode derived it)."""
        return d.counts(pass_name, self.conv, self._stage(d, pass_name))

    def step_counts(self, d, pass_name: str):
        return d.step_counts(pass_name, self.conv, self._stage(d, pass_name))

    def memory(self, d):
        return d.memory_at(self.stage) if hasattr(d, "memory_at") else d.memory

    def _stage(self, d, pass_name: str) -> str:
        if self.stage == "written" and hasattr(d, "stages"):
            return as_written_stage(d, pass_name)
        return self.stage

    def poly(self, e) -> sp.Expr:
        e = sp.expand(sp.sympify(e))
        return e if self.exact else leading_order(e)

    def flops(self, cnt: Counts) -> sp.Expr:
        return cnt.total if self.exact else cnt.leading

    def bytes(self, d, what: str) -> sp.Expr:
        return self.poly(self.memory(d).bytes(what, self.dtype))

    @property
    def order(self) -> str:
        return "exact" if self.exact else "leading order"

    @property
    def program(self) -> str:
        """What the chosen stage counts, in words."""
        return {"reused": "the optimized program", "written": "the equations as written"
                }.get(self.stage, f"the {self.stage} program")

    def table(self, name: str, title: str, columns, what: str = "",
              flops: bool = True) -> Table:
        """A table whose caption says how its figures were counted (FLOPs: which program,
        convention and order; bytes: which dtype); ``flops=False`` for a table of bytes."""
        basis = (f"FLOPs of {self.program}, under the {self.conv.name} convention, "
                 f"{self.order}; bytes for {self.dtype}." if flops
                 else f"Bytes of {self.program}, {self.order}; the MiB column from the "
                 "exact count.")
        caption = f"{title}. {what + ' ' if what else ''}{basis}"
        return Table(name, title, columns, caption=caption,
                     options={"convention": self.conv.name, "dtype": self.dtype,
                              "exact": self.exact, "stage": self.stage})


def _builder(name: str) -> Callable[[], Component]:
    """The builder that ``name``'s section module lists now (as the training-step composite
    looks it up), so that a changed builder changes every table that uses it."""
    for module in derivations.SECTIONS:
        if name in module.COMPONENTS:
            return module.COMPONENTS[name]
    raise UsageError(f"no component {name!r} in the catalogue")


def component(name: str) -> Component:
    return _builder(name)()


_DERIVED: dict = {}


@cache
def _example_inputs(name: str) -> dict:
    """The stated inputs of a worked example (sizes given by the document, not figures)."""
    return dict(examples.EXAMPLES[name]().inputs)


def _derived(name: str) -> tuple[Component, Derivation]:
    """(component, derivation), once per builder and process: builders are functions of
    nothing, so the same builder gives the same equations; a replaced builder is a new key."""
    build = _builder(name)
    hit = _DERIVED.get(build)
    if hit is None:
        c = build()
        hit = _DERIVED[build] = (c, derive(c))
    return hit


def _hypers(c: Component) -> Seq:
    return Seq(tuple(t.symbol for t in c.tensors.values() if t.role is Role.HYPER))


def _by_kind(o: Opts, cnt: Counts) -> Seq | str:
    items = tuple(Seq((o.poly(v), KIND_LABELS.get(k, k)), " ")
                  for k, v in cnt.by_kind.items() if sp.expand(v) != 0)
    return Seq(items) if items else "none"


def _equation(st) -> sp.Equality:
    lhs = sp.IndexedBase(st.lhs)[st.idx] if st.idx else sp.Symbol(st.lhs)
    return sp.Eq(lhs, st.rhs(), evaluate=False)


def _pass_flops(o: Opts, d, pass_name: str):
    return o.flops(o.counts(d, pass_name)) if pass_name in d.passes else "-"


def _reduces_over(d: Derivation, pass_name: str, dim: sp.Expr) -> bool:
    return any(k.upper + 1 == dim for st in d.programs[pass_name].steps for k in st.reduce)


def _first_input(c: Component):
    return next(t for t in c.tensors.values() if t.role is Role.INPUT)


# -- losses -----------------------------------------------------------------------------

def _kinds_table(o: Opts, name: str, title: str, comp: str,
                 passes: tuple[tuple[str, str], ...], extra: tuple[tuple[str, str], ...]):
    """Operations per kind of ``passes`` (one column each), their FLOPs under the
    convention, then the FLOPs of ``extra`` passes and the bytes saved for backward."""
    c, d = _derived(comp)
    counts = [o.counts(d, p) for p, _ in passes]
    t = o.table(name, title, ("Operation",) + tuple(h for _, h in passes),
                f"{comp}: {c.summary}.")
    kinds = [k for k in counts[0].by_kind if any(sp.expand(n.by_kind.get(k, 0)) != 0
                                                 for n in counts)]
    blank = ("",) * (len(passes) - 1)
    for k in kinds:
        t.add(KIND_LABELS.get(k, k), *(o.poly(n.by_kind.get(k, 0)) for n in counts))
    t.add("Total FLOPs", *(o.flops(n) for n in counts))
    for p, label in extra:
        t.add(label, _pass_flops(o, d, p), *blank)
    t.add(f"Saved for backward (bytes, {o.dtype})", o.bytes(d, "saved"), *blank)
    return t


def loss_mse(convention="default", dtype="float32", exact=False,
        stage="optimized") -> Table:
    """MSE: forward operations by kind, forward/backward/gradient FLOPs, bytes saved."""
    return _kinds_table(Opts(convention, dtype, exact, stage), "loss-mse",
                        "MSE: operations of the forward pass", "mse",
                        (("forward", "Forward"),),
                        (("backward", "Backward FLOPs (derived)"),
                         ("gradient", "Gradient FLOPs (fused closed form)")))


def _loss_rows(o: Opts, t: Table, names) -> Table:
    for n in names:
        c, d = _derived(n)
        t.add(n, _pass_flops(o, d, "forward"), _pass_flops(o, d, "backward"),
              _pass_flops(o, d, "gradient"), o.bytes(d, "saved"), c.summary)
    return t


_LOSS_COLUMNS = ("Forward FLOPs", "Backward FLOPs", "Gradient FLOPs (fused)",
                 "Saved for backward (bytes)", "Notes")


def loss_cross_entropy(convention="default", dtype="float32", exact=False,
        stage="optimized") -> Table:
    """BCE and cross-entropy (one-hot, soft): forward, backward, fused-gradient FLOPs, bytes."""
    o = Opts(convention, dtype, exact, stage)
    t = o.table("loss-cross-entropy", "Cross-entropy variants", ("Variant",) + _LOSS_COLUMNS)
    return _loss_rows(o, t, LOSS_VARIANTS)


def loss_others(convention="default", dtype="float32", exact=False,
        stage="optimized") -> Table:
    """Hinge, Huber, focal, KL: forward/backward/gradient FLOPs, bytes saved (their
    formulas are the table ``loss-formulas``, where they have the page's width)."""
    o = Opts(convention, dtype, exact, stage)
    t = o.table("loss-others", "Other losses", ("Loss",) + _LOSS_COLUMNS)
    return _loss_rows(o, t, OTHER_LOSSES)


def loss_formulas(convention="default", dtype="float32", exact=False,
        stage="optimized") -> Table:
    """Hinge, Huber, focal, KL: the loss as the component writes it."""
    o = Opts(convention, dtype, exact, stage)
    t = o.table("loss-formulas", "Other losses: the formulas", ("Loss", "Formula"))
    t.caption = "Other losses: each loss as its component writes it (the forward pass as written)."
    for n in OTHER_LOSSES:
        c, _d = _derived(n)
        a = c.passes["forward"].assignments[-1]
        lhs = a.lhs.symbol[a.idx] if a.idx else a.lhs.symbol
        t.add(n, sp.Eq(lhs, a.rhs, evaluate=False))
    return t


def loss_all(convention="default", dtype="float32", exact=False,
        stage="optimized") -> Table:
    """Every loss of the catalogue: forward/backward/gradient FLOPs, bytes saved."""
    o = Opts(convention, dtype, exact, stage)
    t = o.table("loss-all", "Every loss of the catalogue", ("Loss",) + _LOSS_COLUMNS)
    return _loss_rows(o, t, tuple(losses.COMPONENTS))


# -- optimizers -------------------------------------------------------------------------

def _step_memory_total(o: Opts, name: str) -> sp.Expr:
    """Parameters + gradients + optimizer state, from the training-step memory model."""
    terms = training.training_step(name).memory_terms
    return o.poly(dtype_bytes(o.dtype) * sum((e for _, what, e in terms
                                              if what in ("parameters", "gradients", "state")),
                                             sp.Integer(0)))


def _optimizer_metrics(name: str):
    def build(convention="default", dtype="float32", exact=False,
        stage="optimized") -> Table:
        o = Opts(convention, dtype, exact, stage)
        c, d = _derived(name)
        t = o.table(f"optimizer-{name}", f"{name}: per-step cost and memory",
                    ("Metric", "Value"), f"{c.summary}.")
        state = [n for n, _ in o.memory(d).state]
        t.add(f"Extra state memory (bytes, {o.dtype})", o.bytes(d, "state"))
        t.add("State tensors", Seq(tuple(state)) if state else "none")
        t.add(f"Parameters + gradients + state (bytes, {o.dtype})", _step_memory_total(o, name))
        cnt = o.counts(d, "step")
        t.add("Per-step FLOPs", o.flops(cnt))
        t.add("Per-step FLOPs by kind", _by_kind(o, cnt))
        t.add("Hyperparameters", _hypers(c))
        base = BASES.get(name)
        if base is not None:
            bc, bd = _derived(base)
            t.add(f"Extra FLOPs vs. {base}",
                  o.poly(cnt.total - o.counts(bd, "step").total))
            t.add(f"Extra state memory vs. {base} (bytes)",
                  o.poly(o.memory(d).bytes("state", o.dtype)
                         - o.memory(bd).bytes("state", o.dtype)))
            extra = tuple(s for s in _hypers(c).items if s not in _hypers(bc).items)
            t.add(f"Extra hyperparameters vs. {base}", Seq(extra) if extra else "none")
        return t
    build.__name__ = f"optimizer_{name.replace('-', '_')}"
    build.__doc__ = (f"{name}: state bytes and tensors, per-step FLOPs (by kind), "
                     "hyperparameters" + (f", extra over {BASES[name]}." if name in BASES
                                          else "."))
    return build


def _steps_table(o: Opts, name: str, title: str, comp: str, pass_name: str,
                 extra: tuple[tuple[str, str], ...]) -> Table:
    c, d = _derived(comp)
    t = o.table(name, title, ("Step", "Computation", "FLOPs", "By kind"), f"{c.summary}.")
    for st, cnt in o.step_counts(d, pass_name):
        t.add(st.lhs, _equation(st), o.flops(cnt), _by_kind(o, cnt))
    total = o.counts(d, pass_name)
    t.add(f"Total {pass_name}", "", o.flops(total), _by_kind(o, total))
    for p, label in extra:
        cnt = o.counts(d, p)
        t.add(label, "", o.flops(cnt), _by_kind(o, cnt))
    return t


def optimizer_adam_operations(convention="default", dtype="float32", exact=False,
        stage="optimized") -> Table:
    """Adam: each step of the update with its equation, FLOPs and kinds, and the total."""
    return _steps_table(Opts(convention, dtype, exact, stage), "optimizer-adam-operations",
                        "Adam: FLOPs of each step of the update", "adam", "step", ())


def optimizer_comparison(convention="default", dtype="float32", exact=False,
        stage="optimized") -> Table:
    """Every optimizer: extra state bytes, per-step FLOPs, hyperparameters."""
    o = Opts(convention, dtype, exact, stage)
    t = o.table("optimizer-comparison", "Optimizer comparison",
                ("Optimizer", f"Extra memory (bytes, {o.dtype})", "Per-step FLOPs",
                 "Hyperparameters", "Summary"))
    for name in optimizers.COMPONENTS:
        c, d = _derived(name)
        t.add(name, o.bytes(d, "state"), o.flops(o.counts(d, "step")), _hypers(c),
              c.summary)
    return t


def optimizer_25m(convention="default", dtype="float32", exact=False,
        stage="optimized") -> Table:
    """Every optimizer at P = 25.6M: state MiB, step FLOPs, share of ResNet-50's backward
    pass of one image."""
    o = Opts(convention, dtype, exact, stage)
    inputs = _example_inputs("optimizers-25.6m")
    P, backward = inputs["P"], inputs[examples.BACKWARD]
    t = o.table("optimizer-25.6m", f"Optimizers for a model of {P:,} parameters",
                ("Optimizer", f"State memory (MiB, {o.dtype})", "Per-step FLOPs",
                 "% of backward FLOPs"),
                f"P = {P:,}; backward pass {backward:,.0f} FLOPs: ResNet-50's for one image, "
                f"from {resnet50.COMMAND} (the document gives 7.6G, a count of multiply-adds; "
                "its percentages divide by it).")
    for name in optimizers.COMPONENTS:
        c, d = _derived(name)
        subs = {c.dims["P"]: P}
        state = int(o.bytes(d, "state").xreplace(subs))
        flops = int(o.flops(o.counts(d, "step")).xreplace(subs))
        t.add(name, Num(state / MIB, ",.1f"), Num(flops, ","),
              Num(100 * flops / backward, ".2f"))
    return t


# -- regularization ---------------------------------------------------------------------

def _regularizer(name: str):
    def build(convention="default", dtype="float32", exact=False,
        stage="optimized") -> Table:
        o = Opts(convention, dtype, exact, stage)
        c, d = _derived(name)
        t = o.table(f"regularization-{name}", f"{name}: extra cost per step",
                    ("Metric", "Value"), f"{c.summary}.")
        for p in d.passes:
            t.add(f"{p} FLOPs", o.flops(o.counts(d, p)))
        for label, what in (("Extra state memory", "state"),
                            ("Saved for backward", "saved")):
            t.add(f"{label} (bytes, {o.dtype})", o.bytes(d, what))
        if any(t.role is Role.HYPER for t in c.tensors.values()):
            t.add("Hyperparameters", _hypers(c))
        return t
    build.__name__ = f"regularization_{name.replace('-', '_')}"
    build.__doc__ = f"{name}: FLOPs of each pass, state and saved bytes, hyperparameters."
    return build


def regularization_dropout(convention="default", dtype="float32", exact=False,
        stage="optimized") -> Table:
    """Dropout: training and inference operations by kind, backward FLOPs, mask bytes."""
    return _kinds_table(Opts(convention, dtype, exact, stage), "regularization-dropout",
                        "Dropout: operations in training and at inference", "dropout",
                        (("forward", "Training"), ("inference", "Inference")),
                        (("backward", "Backward FLOPs (derived)"),))


# -- normalization ----------------------------------------------------------------------

def batchnorm_steps(convention="default", dtype="float32", exact=False,
        stage="optimized") -> Table:
    """BatchNorm: each training-forward step with FLOPs; forward, backward, gradient totals."""
    return _steps_table(Opts(convention, dtype, exact, stage), "batchnorm-steps",
                        "BatchNorm: FLOPs of each step of the training forward pass",
                        "batchnorm", "forward",
                        (("backward", "Total backward (derived)"),
                         ("gradient", "Total gradient (fused closed form)")))


def _norm_facts(c: Component, d: Derivation, pass_name: str) -> dict:
    """What a normalization pass reduces over and whether that includes the batch axis."""
    batch = _first_input(c).shape[0]
    stat = next((st for st in d.programs[pass_name].steps if st.reduce), None)
    over = sp.Mul(*[k.upper + 1 for k in stat.reduce]) if stat else sp.Integer(0)
    count = sp.Mul(*[k.upper + 1 for k in stat.idx]) if stat else sp.Integer(0)
    return {"over": over, "statistics": count, "batch": _reduces_over(d, pass_name, batch)}


def _fold(name: str):
    """The catalogue's fold of ``name`` into the preceding layer, if there is one."""
    fold = f"{name}-fold"
    return _derived(fold) if any(fold in m.COMPONENTS for m in derivations.SECTIONS) else None


def _inference_pass(d: Derivation) -> str:
    return "inference" if "inference" in d.passes else "forward"


def _fixed(d: Derivation, pass_name: str) -> bool:
    """True when the pass computes no statistic from its input: an affine map of it."""
    return not any(st.reduce for st in d.programs[pass_name].steps)


def _fold_cell(o: Opts, name: str, fixed: bool):
    """Whether (and at what one-time cost) the layer folds into the preceding one."""
    found = _fold(name)
    if not fixed or found is None:
        return "no"
    fc, fd = found
    return Seq(("yes", f"({fc.name}, once per weight update:", o.flops(o.counts(fd,
        fd.passes[0])), "FLOPs)"), " ")


def batchnorm_train_vs_inference(convention="default", dtype="float32", exact=False,
        stage="optimized") -> Table:
    """BatchNorm training vs inference: statistics, FLOPs, batch dependence, folding."""
    o = Opts(convention, dtype, exact, stage)
    c, d = _derived("batchnorm")
    x = _first_input(c)
    t = o.table("batchnorm-train-vs-inference", "BatchNorm: training against inference",
                ("", "Training (forward)", "Inference"))
    passes = ("forward", "inference")
    uses = []
    for p in passes:
        written = c.passes[p].assignments
        computed = [a.lhs.name for a in written if a.rhs.has(sp.Sum)]
        read = [n for n, tn in c.tensors.items() if tn.role is Role.STATE
                and any(a.rhs.has(tn.symbol) for a in written)]
        uses.append(Seq(("computed:", Seq(tuple(computed))), " ") if computed else
                    Seq(("read from state:", Seq(tuple(read))), " "))
    t.add("Statistics", *uses)
    cnts = [o.counts(d, p) for p in passes]
    t.add("FLOPs", *(o.flops(n) for n in cnts))
    size = sp.Mul(*x.shape)
    t.add(f"FLOPs per element of {x.name}", *(sp.expand(o.flops(n) / size) for n in cnts))
    facts = [_norm_facts(c, d, p) for p in passes]
    t.add("Batch dependence", *("yes" if f["batch"] else "no" for f in facts))
    t.add("Fold into the preceding layer", *(_fold_cell(o, c.name, _fixed(d, p))
                                              for p in passes))
    t.add(f"Saved for backward (bytes, {o.dtype})", o.bytes(d, "saved"), "none (no backward)")
    t.add(f"Running statistics (state bytes, {o.dtype})", o.bytes(d, "state"),
          o.bytes(d, "state"))
    return t


def _norm_layers() -> list[str]:
    return [n for n, b in normalization.COMPONENTS.items() if "forward" in b().passes]


def _norm_metrics(name: str):
    def build(convention="default", dtype="float32", exact=False,
        stage="optimized") -> Table:
        o = Opts(convention, dtype, exact, stage)
        c, d = _derived(name)
        f = _norm_facts(c, d, "forward")
        t = o.table(f"normalization-{name}", f"{name}: cost and properties",
                    ("Metric", "Value"), f"{c.summary}.")
        t.add("Values per statistic", f["over"])
        t.add("Statistics (mean and variance each)", f["statistics"])
        t.add("Parameters (elements)", o.memory(d).elements("parameters"))
        for p in d.passes:
            t.add(f"{p} FLOPs", o.flops(o.counts(d, p)))
        t.add("Batch dependence", "yes" if f["batch"] else "no")
        t.add("Fold into the preceding layer at inference",
              _fold_cell(o, name, _fixed(d, _inference_pass(d))))
        t.add(f"Saved for backward (bytes, {o.dtype})", o.bytes(d, "saved"))
        return t
    build.__name__ = f"normalization_{name.replace('-', '_')}"
    build.__doc__ = (f"{name}: values per statistic, parameters, FLOPs of each pass, batch "
                     "dependence, folding, saved bytes.")
    return build


def normalization_comparison(convention="default", dtype="float32", exact=False,
        stage="optimized") -> Table:
    """Normalization layers: statistic sizes, parameters, FLOPs, batch dependence, folding."""
    o = Opts(convention, dtype, exact, stage)
    t = o.table("normalization-comparison", "Normalization layers compared",
                ("Method", "Values per statistic", "Parameters", "Forward FLOPs",
                 "Backward FLOPs", "Batch dep.", "Fold at inference"))
    for name in _norm_layers():
        c, d = _derived(name)
        f = _norm_facts(c, d, "forward")
        fold = _fold_cell(o, name, _fixed(d, _inference_pass(d)))
        t.add(name, f["over"], o.memory(d).elements("parameters"), _pass_flops(o, d, "forward"),
              _pass_flops(o, d, "backward"), "yes" if f["batch"] else "no",
              "yes" if fold != "no" else "no")
    return t


# -- the whole step -----------------------------------------------------------------------

def _part_flops(o: Opts, part: Part, pass_name: str, d: Derivation) -> sp.Expr:
    """FLOPs of ``d``'s pass at the sizes and multiplicity of the composite's ``part``."""
    subs = {part.component.dims[k]: v for k, v in part.dims.items()}
    return o.poly(part.times * o.flops(o.counts(d, pass_name)).xreplace(subs))


def _part_bytes(o: Opts, part: Part, what: str, d: Derivation) -> sp.Expr:
    subs = {part.component.dims[k]: v for k, v in part.dims.items()}
    return o.poly(part.times * o.memory(d).bytes(what, o.dtype).xreplace(subs))


def _part_pass(part: str, pass_name: str) -> str:
    """A row's words for one pass of a part ("loss backward"; "schedule", not
    "schedule.schedule")."""
    return part if pass_name == part else f"{part} {pass_name}"


def training_step_summary(convention="default", dtype="float32", exact=False,
        stage="optimized") -> Table:
    """The whole training step part by part (training-step composite): FLOPs and memory."""
    o = Opts(convention, dtype, exact, stage)
    d = CompositeDerivation(training.training_step("adam"))
    comp = d.composite
    t = o.table("training-step-summary", "One training step, part by part",
                ("Component", "FLOPs per step", "Memory (bytes)", "Memory kind"),
                "Network forward F and backward k F are given; every other part is derived; "
                "BatchNorm counts are for its L_bn layers.")
    size = dtype_bytes(o.dtype)
    mem = {label: e for label, _, e in comp.memory_terms}
    parts_saved: list[sp.Expr] = []
    for (label, flops), mlabel in zip(comp.network, ("activations", "gradients")):
        t.add(label, flops, o.poly(size * mem[mlabel]), mlabel)
    for part in comp.parts:
        pd = d.derived[part.label]
        if part.label == "optimizer":
            # The same part with each optimizer the document lists: adam (this composite's)
            # and sgd, at the part's sizes.
            for name in ("adam", "sgd"):
                od = pd if name == "adam" else _derived(name)[1]
                t.add(f"optimizer step ({name})", _part_flops(o, part, "step", od),
                      _part_bytes(o, part, "state", od), "state")
            continue
        # A differentiated part keeps tensors for its backward pass; any other, its state.
        what, kind = (("saved", "saved for backward") if part.component.differentiate
                      else ("state", "state"))
        if what == "saved":  # the composite's own memory holds the network's alone
            parts_saved.append(_part_bytes(o, part, what, pd))
        for k, q in enumerate(part.passes):
            t.add(_part_pass(part.label, q), o.flops(o.counts(d, f"{part.label}.{q}")),
                  _part_bytes(o, part, what, pd) if k == 0 else "", kind if k == 0 else "")
    _, dd = _derived("dropout")
    t.add("dropout forward (one layer, not in the composite)",
          o.flops(o.counts(dd, "forward")), o.bytes(dd, "saved"), "saved for backward")
    t.add("parameters", "", o.poly(size * mem["parameters"]), "parameters")
    total_mem = sum((o.memory(d).bytes(w, o.dtype) for w in ("parameters", "gradients", "state",
                                                          "saved")), sp.Integer(0))
    t.add("Total step (adam)", o.flops(o.counts(d, "step")),
          o.poly(total_mem + sp.Add(*parts_saved)),
          "parameters + gradients + state + every tensor saved for backward")
    return t


def memory_total(convention="default", dtype="float32", exact=False,
        stage="optimized") -> Table:
    """ResNet-50's training memory with Adam, term by term, as ``symflop estimate`` gives it
    (``derivations/resnet50.py``, traced in float32)."""
    dtype_bytes(dtype)
    traced = resnet50.RUN["dtype"]
    # the options say what the table holds: float32, and exact bytes (a model's memory has
    # no lower-order term to drop: its parameters are a constant, not a smaller size)
    o = Opts(convention, traced, True, stage)
    title = "Training memory of ResNet-50 with Adam"
    t = Table("memory-total", title, ("Term", "Bytes", "MiB"),
              options={"convention": o.conv.name, "dtype": o.dtype, "exact": o.exact,
                       "stage": o.stage}, caption=f"{title}. "
                f"From {resnet50.COMMAND}: ResNet-50 ({resnet50.parameters():,} "
                f"parameters) traced in {traced}"
                + (f" (not {dtype}: the dtype option does not apply)" if dtype != traced
                   else "") + ", bytes as polynomials in the batch B, MiB at "
                f"B = {resnet50.RUN['B']}. Saved for backward: each tensor autograd keeps, "
                "once, at its own size (the max-pool's int64 indices at 8 bytes), by the "
                "layer type that first keeps it. Adam's state: two moments per parameter "
                "and a step count per parameter tensor, as torch keeps it. Bytes exact; "
                f"the stage ({o.program}) does not apply: an estimate counts the program "
                "torch runs.")
    saved = sorted(resnet50.record()["by_type"].items(),
                   key=lambda kv: -resnet50.at(kv[1]["saved"]))
    terms = [(name, nbytes) for name, nbytes in resnet50.memory()
             if name != "saved for backward"]
    terms += [(f"saved: {resnet50.label(what)}", parts["saved"]) for what, parts in saved
              if parts["saved"] != 0]
    for label, nbytes in terms + [("Total", sp.Add(*(n for _, n in terms)))]:
        t.add(label, o.poly(nbytes), Num(resnet50.at(nbytes) / MIB, ",.1f"))
    return t


def catalogue_stages(convention="default", dtype="float32", exact=False,
        stage="optimized") -> Table:
    """Every pass of the catalogue as written and as the pipeline optimizes it, and what
    its backward pass reads from the forward pass (saved for backward) at each."""
    o = Opts(convention, dtype, exact, "written")
    t = Table("catalogue-stages", "Each pass as written and optimized",
              ("Component", "Pass", "As written", "Optimized", "Code", "Saved, as written",
               "Saved, optimized"),
              caption=f"FLOPs of every pass of the catalogue: the equations as written (a "
                      f"derived pass as reverse mode derives it), the optimized program and "
                      f"the code (what the generated code runs: the optimized program, "
                      f"stabilized and lowered, where fusion may recompute and the backward "
                      f"may recompute the forward's large tensors to move fewer bytes), "
                      f"under the "
                      f"{o.conv.name} convention, {o.order}; bytes saved for the backward "
                      f"pass ({o.dtype}) by what each backward reads.",
              options={"convention": o.conv.name, "dtype": o.dtype, "exact": o.exact,
                       "stage": stage_name(stage)})
    for name, build in derivations.CATALOGUE.items():
        if not isinstance(build(), Component):
            continue
        _, d = _derived(name)
        for k, p in enumerate(d.passes):
            saved = ("", "")
            if k == 0 and "backward" in d.passes:
                saved = tuple(o.poly(d.memory_at(s).bytes("saved", o.dtype))
                              for s in ("differentiated", "optimized"))
            t.add(name if k == 0 else "", p,
                  *(o.flops(d.counts(p, o.conv, s)) for s in ("written", "optimized", "code")),
                  *saved)
    return t


def distributed_memory(convention="default", dtype="float32", exact=False,
                       stage="optimized", dims: dict | None = None) -> Table:
    """Per-device memory and communication of data parallelism and each ZeRO stage, with
    mixed-precision Adam, for a model of Psi parameters on N devices (``--dims``; default
    the ZeRO paper's example, 7.5B parameters on 64 devices)."""
    o = Opts(convention, dtype, exact, stage)
    sizes = {"Psi": 7_500_000_000, "N": 64, **(dims or {})}  # the ZeRO paper's example
    unknown = set(sizes) - {"Psi", "N"}
    if unknown:
        raise UsageError(f"distributed-memory has no size {', '.join(sorted(unknown))} "
                         "(its sizes: Psi, N)")
    at = {distributed.Psi: sizes["Psi"], distributed.N: sizes["N"]}
    per = distributed.bytes_per_parameter("adam", distributed.MIXED)
    t = Table("distributed-memory", "Per-device memory and communication: DDP and ZeRO",
              ("Stage", "Parameters", "Gradients", "Optimizer state", "Per device",
               "GB per device", "Sent per step", "GB sent"),
              caption=f"Psi = {sizes['Psi']:,} parameters on N = {sizes['N']} devices (the GB "
                      f"columns), mixed-precision Adam: {per['parameters']} + {per['gradients']} + "
                      f"{per['optimizer state']} bytes per parameter (half-precision "
                      "parameters and gradients; a float32 master copy and Adam's two "
                      "float32 moments, from the adam component's state). A sharded part "
                      "costs 1/N of itself per device. Sent: elements of the model's "
                      "(half-precision) type each device sends per optimizer step, ring "
                      "collectives. GB: a billion bytes. No FLOPs here: the figures are the "
                      "same as written and optimized, under any convention; the element "
                      "types are mixed precision's, whatever the dtype.",
              options={"convention": o.conv.name, "dtype": o.dtype, "exact": o.exact,
                       "stage": o.stage})
    for name in distributed.STAGES:
        mem = distributed.per_device_memory(name)
        total = sp.factor(sp.Add(*mem.values()))
        sent = distributed.step_communication(name).sent
        t.add(name, *(sp.factor(mem[k]) for k in ("parameters", "gradients",
                                                   "optimizer state")),
              total, Num(float(total.xreplace(at)) / 1e9, ",.2f"), sent,
              Num(float(sent.xreplace(at)) * per["parameters"] / 1e9, ",.2f"))
    return t


def distributed_step(convention="default", dtype="float32", exact=False,
                     stage="optimized", dims: dict | None = None) -> Table:
    """A data-parallel training step per device, for each ZeRO stage on each device of
    ``distributed.CLUSTERS``: FLOPs, bytes sent, memory and the predicted time."""
    o = Opts(convention, dtype, exact, stage)
    sizes = {"Psi": 7_500_000_000, "N": 64, "b": 4, "L": 2048, "k": 2, "A": 0,
             "alpha_ns": 5000, **(dims or {})}
    unknown = set(sizes) - {"Psi", "N", "b", "L", "F", "k", "A", "alpha_ns", "link_GBps"}
    if unknown:
        raise UsageError(f"distributed-step has no size {', '.join(sorted(unknown))} (its "
                         "sizes: Psi, N, b, F or L, k, A, alpha_ns, link_GBps)")
    forward = sizes.get("F", 2 * sizes["Psi"] * sizes["L"])
    at = {distributed.Psi: sizes["Psi"], distributed.N: sizes["N"], distributed.b: sizes["b"],
          distributed.F: forward, distributed.k: sizes["k"], distributed.A: sizes["A"],
          distributed.alpha: sizes["alpha_ns"] * 1e-9}
    t = Table("distributed-step", "A data-parallel training step per device",
              ("Stage", "Device", "TFLOPs", "GB sent", "GB", "Network s", "Optimizer s",
               "Comm. s", "Step s", "Overlap s"),
              caption=f"Psi = {sizes['Psi']:,} parameters on N = {sizes['N']} devices, "
                      f"b = {sizes['b']} samples per device, forward {forward:.3g} FLOPs per "
                      "sample (F" + ("" if "F" in sizes else "; by default 2 Psi L for L "
                      "tokens, a transformer's forward, Kaplan et al. 2020") + "), backward "
                      f"k = {sizes['k']:.3g} times the forward, A = {sizes['A']:,.0f} "
                      "activation bytes per sample, mixed-precision Adam with loss scaling "
                      "(the unscale and overflow check of the gradients it updates from), "
                      f"their FLOPs counted on {o.program}, under the {o.conv.name} "
                      "convention. "
                      "Network: FLOPs at the device's half-precision peak; optimizer: "
                      "the bytes its generated step moves, at the memory bandwidth; "
                      f"communication: ring collectives, alpha = {sizes['alpha_ns']:,} ns a "
                      "round (an assumption: fit yours with the project's collectives "
                      "benchmark) and the "
                      "link's bandwidth" + (f", {sizes['link_GBps']} GB/s (link_GBps; "
                                                 "symflop estimate's --link-gbps)"
                                              if "link_GBps" in sizes else
                      ", as if all N devices shared one NVLink fabric (across nodes a ring "
                      "runs at its slowest link: set link_GBps, e.g. 50 for 400 Gb/s "
                      "InfiniBand per device)") + ". Step: their sum; overlap: "
                      "communication hidden behind the network. GB: memory per device; "
                      "(full): more than the device holds. Devices: " + "; ".join(
                          c.source for c in distributed.CLUSTERS.values()) + ".",
              options={"convention": o.conv.name, "dtype": o.dtype, "exact": o.exact,
                       "stage": o.stage})
    for name in distributed.STAGES:
        for device, cluster in distributed.CLUSTERS.items():
            if "link_GBps" in sizes:
                cluster = replace(cluster, link=sizes["link_GBps"] * 1e9)
            r = {key: float(sp.sympify(v).xreplace(at))
                 for key, v in distributed.distributed_step(
                     name, cluster, convention=o.conv, program=o.stage).items()}
            fits = "" if r["memory"] <= cluster.memory else " (full)"
            t.add(name, device + fits, Num(r["flops"] / 1e12, ",.4g"),
                  Num(r["bytes sent"] / 1e9, ",.3g"), Num(r["memory"] / 1e9, ",.3g"),
                  *(Num(r[key], ",.3g") for key in ("network", "optimizer", "communicate",
                                                     "time", "overlapped")))
    return t


# -- the registry ---------------------------------------------------------------------------

TABLES: dict[str, Callable[..., Table]] = {
    "loss-mse": loss_mse,
    "loss-cross-entropy": loss_cross_entropy,
    "loss-others": loss_others,
    "loss-formulas": loss_formulas,
    "loss-all": loss_all,
    **{f"optimizer-{n}": _optimizer_metrics(n) for n in optimizers.COMPONENTS},
    "optimizer-adam-operations": optimizer_adam_operations,
    "optimizer-comparison": optimizer_comparison,
    "optimizer-25.6m": optimizer_25m,
    "regularization-l1": _regularizer("l1"),
    "regularization-l2": _regularizer("l2"),
    "regularization-dropout": regularization_dropout,
    "regularization-data-augmentation": _regularizer("data-augmentation"),
    "batchnorm-steps": batchnorm_steps,
    "batchnorm-train-vs-inference": batchnorm_train_vs_inference,
    **{f"normalization-{n}": _norm_metrics(n) for n in _norm_layers()},
    "normalization-comparison": normalization_comparison,
    "training-step-summary": training_step_summary,
    "memory-total": memory_total,
    "catalogue-stages": catalogue_stages,
    "distributed-memory": distributed_memory,
    "distributed-step": distributed_step,
}

TABLE_NAMES = list(TABLES)  # the report's tables: the alias below is not one of them
TABLES["distributed"] = distributed_memory  # `symflop table distributed --dims ...`


def build_table(name: str, convention: str = "default", dtype: str = "float32",
                exact: bool = False, stage: str = "optimized") -> Table:
    if name not in TABLES:
        close = difflib.get_close_matches(name, TABLE_NAMES, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else \
            f" (tables: {', '.join(TABLE_NAMES)})"
        raise UsageError(f"unknown table {name!r}{hint}")
    return TABLES[name](convention=convention, dtype=dtype, exact=exact, stage=stage)


def render_table(name: str, fmt: str = "markdown", convention: str = "default",
                 dtype: str = "float32", exact: bool = False, stage: str = "optimized") -> str:
    """One table of the document, rendered as ``latex``, ``markdown``, ``csv`` or ``json``."""
    return render(build_table(name, convention, dtype, exact, stage), fmt)
