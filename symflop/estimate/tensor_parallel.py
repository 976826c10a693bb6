"""Tensor and sequence parallelism of a traced model: what one of t devices runs.

Why the local model is traced: with torch's ``parallelize_module`` (and Megatron-LM) a
device runs the model's own code on local tensors: a column-parallel ``nn.Linear`` holds
out/t of its output features, a row-parallel one in/t of its input features, and the
code between them (attention over a/t heads, the MLP's activation over 4h/t values) runs
on what those produce.  So the model is traced once more with its planned ``nn.Linear``
modules swapped for their local shards, and every count, saved tensor and the
optimizer's state follow from the same rules as an unsharded estimate.  The model's code
must reshape heads with -1 (``view(b, s, -1, head_dim)``), as it must for torch's
tensor parallelism.

What the local trace cannot show is added here:

* The collectives (Shoeybi et al. 2019, Megatron-LM; Korthikanti et al. 2022): a
  column-parallel module's input gradient is all-reduced in the backward pass, a
  row-parallel module's output is all-reduced in the forward pass.  With sequence
  parallelism those become an all-gather before the column-parallel module (a
  reduce-scatter of its input's gradient in backward) and a reduce-scatter after the
  row-parallel one (an all-gather of its gradient in backward).  torch's
  ``ColwiseParallel`` converts each module's input on its own, so two column-parallel
  modules that read one tensor (q, k and v of a Llama layer) reduce its gradient twice;
  Megatron fuses them into one.
* Sequence parallelism: everything outside the tensor-parallel regions (norms,
  dropouts, residual additions: the tensors of replicated size) is cut along the
  sequence, 1/t on each device: its work and what it keeps.  The replicated parameters
  that work reads (the norms' weights) then get a partial gradient on each device.
  The two implementations differ (``implementation``):

  - "torch" (``parallelize_module``, measured on gloo): a column-parallel module's
    autograd keeps the gathered input; the norms' gradients stay partial
    (``Partial(sum)`` DTensors) and the optimizer's step all-reduces one each time it
    reads it (listed here once each, in the phase "optimizer").
  - "megatron" (Megatron-LM, and Korthikanti et al.'s Table 2): the module keeps its
    input's shard and gathers it again in the backward pass (one more all-gather); the
    norms' gradients are all-reduced once, after the backward pass.
"""

from __future__ import annotations

import fnmatch
from contextlib import contextmanager
from dataclasses import dataclass, field

import sympy as sp

from symflop.errors import UsageError

STYLES = ("colwise", "rowwise", "sequence")
_TORCH_STYLES = {"ColwiseParallel": "colwise", "RowwiseParallel": "rowwise",
                 "SequenceParallel": "sequence"}
IMPLEMENTATIONS = ("torch", "megatron")

# The default plan: the usual names of attention and MLP projections (Llama, Mistral,
# GPT-NeoX, Megatron, torchtitan, nn.MultiheadAttention-free GPT code).
COLWISE = ("q_proj", "k_proj", "v_proj", "qkv", "wq", "wk", "wv", "query", "key", "value",
           "gate_proj", "up_proj", "fc1", "w1", "w3", "c_fc", "dense_h_to_4h", "query_key_value")
ROWWISE = ("o_proj", "out_proj", "proj", "wo", "w2", "down_proj", "fc2", "dense_4h_to_h",
           "c_proj")


@dataclass(frozen=True)
class TensorParallel:
    """A tensor-parallel layout: ``t`` devices, the plan (module path or fnmatch pattern
    -> "colwise", "rowwise" or "sequence"), sequence parallelism on or off, the sequence
    axis of the activations, and whose sequence parallelism (torch's or Megatron-LM's)."""

    t: int
    plan: tuple[tuple[str, str], ...]
    sequence: bool = False
    sequence_dim: int = 1
    implementation: str = "torch"

    def style(self, path: str) -> str | None:
        return next((s for pattern, s in self.plan if fnmatch.fnmatchcase(path, pattern)),
                    None)

    def describe(self) -> str:
        sp_text = (f", sequence parallel along axis {self.sequence_dim} as "
                   f"{self.implementation} does it") if self.sequence else ""
        return f"tensor parallel over t = {self.t} devices{sp_text}"


@dataclass(frozen=True)
class Communication:
    """One collective of one device's step: where, when, what, and how many elements
    (the full tensor's: a ring collective over t devices sends (t-1)/t of it)."""

    module: str
    phase: str          # "forward" or "backward"
    kind: str           # "all-reduce", "all-gather", "reduce-scatter"
    elements: sp.Expr
    itemsize: int
    why: str

    @property
    def bytes(self) -> sp.Expr:
        return self.elements * self.itemsize


def read_plan(plan) -> tuple[tuple[str, str], ...]:
    """A plan as torch writes it (a dict of module path or pattern -> ``ColwiseParallel()``,
    ``RowwiseParallel()``, ``SequenceParallel()``) or with the style's name."""
    if not isinstance(plan, dict) or not plan:
        raise UsageError("a tensor-parallel plan is a dict of module paths (or patterns) to "
                         "colwise, rowwise or sequence")
    out = []
    for pattern, style in plan.items():
        name = style if isinstance(style, str) else _TORCH_STYLES.get(type(style).__name__)
        if name not in STYLES:
            raise UsageError(f"plan entry {pattern!r}: unknown style {style!r} (known: "
                             f"{', '.join(STYLES)}, or torch's ColwiseParallel(), "
                             "RowwiseParallel(), SequenceParallel())")
        out.append((str(pattern), name))
    return tuple(out)


def default_plan(model, sequence: bool = False) -> dict[str, str]:
    """Colwise and rowwise for the ``nn.Linear`` modules with the usual projection names;
    with ``sequence``, the norms too (LayerNorm, RMSNorm: by class name)."""
    import torch
    plan = {}
    for path, m in model.named_modules():
        last = path.rsplit(".", 1)[-1]
        if isinstance(m, torch.nn.Linear) and last in COLWISE:
            plan[path] = "colwise"
        elif isinstance(m, torch.nn.Linear) and last in ROWWISE:
            plan[path] = "rowwise"
        elif sequence and "Norm" in type(m).__name__ and path:
            plan[path] = "sequence"
    if not any(s == "rowwise" for s in plan.values()):
        raise UsageError("no default tensor-parallel plan for this model: none of its "
                         "nn.Linear modules has a usual projection name (rowwise: "
                         f"{', '.join(ROWWISE)}); give a plan")
    return plan


def layout(model, t: int, plan=None, sequence: bool = False, sequence_dim: int = 1,
           implementation: str = "torch") -> TensorParallel:
    """The layout, its plan checked against the model's modules."""
    if not isinstance(t, int) or isinstance(t, bool) or t < 1:
        raise UsageError(f"--tensor-parallel {t}: give a positive number of devices")
    if implementation not in IMPLEMENTATIONS:
        raise UsageError(f"unknown implementation {implementation!r} (known: "
                         f"{', '.join(IMPLEMENTATIONS)})")
    entries = read_plan(plan if plan is not None else default_plan(model, sequence))
    paths = [p for p, _ in model.named_modules() if p]
    for pattern, _style in entries:
        if not any(fnmatch.fnmatchcase(p, pattern) for p in paths):
            raise UsageError(f"plan entry {pattern!r} matches no module of the model "
                             f"(modules: {', '.join(paths[:10])}, ...)")
    return TensorParallel(t, entries, sequence, sequence_dim, implementation)


def _local_linear(m, style: str, t: int, path: str):
    import torch
    if not isinstance(m, torch.nn.Linear):
        raise UsageError(f"{path}: tensor parallelism shards nn.Linear modules, not "
                         f"{type(m).__name__}")
    n = m.out_features if style == "colwise" else m.in_features
    if n % t:
        raise UsageError(f"{path}: {n} {'output' if style == 'colwise' else 'input'} "
                         f"features do not split over {t} devices")
    shape = (m.in_features, m.out_features // t) if style == "colwise" \
        else (m.in_features // t, m.out_features)
    local = torch.nn.Linear(*shape, bias=m.bias is not None, device="meta",
                            dtype=m.weight.dtype)
    local.weight.requires_grad_(m.weight.requires_grad)
    return local


@contextmanager
def local_model(model, tp: TensorParallel):
    """``model`` with each planned ``nn.Linear`` swapped for one device's shard, for as
    long as the context lasts (the model is restored after, also on an error)."""
    swapped = []
    try:
        for path, m in list(model.named_modules()):
            style = tp.style(path)
            if style in ("colwise", "rowwise"):
                parent, _, name = path.rpartition(".")
                owner = model.get_submodule(parent) if parent else model
                setattr(owner, name, _local_linear(m, style, tp.t, path))
                swapped.append((owner, name, m))
        yield model
    finally:
        for owner, name, m in reversed(swapped):
            setattr(owner, name, m)


@dataclass
class Sharding:
    """Which operations of the local trace run on 1/t of their tensors under sequence
    parallelism, and the factor of each kept tensor (the engine's scales)."""

    t: sp.Expr = sp.Integer(1)
    ops: set = field(default_factory=set)            # indices of the calls cut along s
    tensors: set = field(default_factory=set)        # keys of tensors cut along s
    storages: set = field(default_factory=set)       # storages kept at 1/t
    loss: bool = False                               # the loss reads a cut tensor
    gathered: set = field(default_factory=set)       # row-parallel outputs: whole before
    # their reduce-scatter (the partial sums), and their gradient whole after its all-gather

    def op(self, index: int) -> sp.Expr:
        return 1 / self.t if index in self.ops else sp.Integer(1)

    def tensor(self, t) -> sp.Expr:
        return 1 / self.t if t.key in self.tensors else sp.Integer(1)

    def storage(self, key) -> sp.Expr:
        return 1 / self.t if key in self.storages else sp.Integer(1)

    def replayed(self, ops: list) -> tuple[int, frozenset, frozenset]:
        """What the memory timeline replays (``ops``: its records) under sequence
        parallelism: t, the storages a device holds 1/t of (those kept cut, and the cut
        tensors no operation keeps whole: torch's column-parallel layer keeps its
        gathered input), and those whole around a collective."""
        kept = set().union(*(k for _call, k, _new in ops))
        cut = {t.storage for call, _k, _n in ops for t in (*call.tensor_args(), *call.outputs)
               if t.key in self.tensors and t.storage not in kept}
        return int(self.t), frozenset(cut | set(self.storages)), frozenset(self.gathered)


def _region(path: str, tp: TensorParallel) -> tuple[str, str] | None:
    """The colwise or rowwise module ``path`` runs in, with its style."""
    parts = path.split(".") if path else []
    for k in range(len(parts), 0, -1):
        prefix = ".".join(parts[:k])
        style = tp.style(prefix)
        if style in ("colwise", "rowwise"):
            return prefix, style
    return None


def communication(trace, tp: TensorParallel) -> tuple[list[Communication], Sharding]:
    """The collectives of one device's step, and (with sequence parallelism) what runs cut
    along the sequence, from the local trace."""
    sharding, regions = _sharded_work(trace, tp)
    comms: list[Communication] = []
    for path, style in sorted(regions, key=lambda r: _order(trace, r[0])):
        comms += _region_collectives(trace, tp, path, style, sharding)
    if tp.sequence:
        comms += _partial_weight_gradients(trace, sharding, tp.implementation)
        sharding.loss = trace.output.key in sharding.tensors
    return comms, sharding


def _sharded_work(trace, tp: TensorParallel) -> tuple[Sharding, set]:
    """What runs cut along the sequence (with sequence parallelism), and the colwise and
    rowwise modules that ran, as (path, style)."""
    sharded: set = set()          # storages split over the devices (heads, features): by
    # storage, so that an in-place operation's result (a new version) stays split
    sharding = Sharding(sp.Integer(tp.t))
    seen_regions: set = set()
    for k, call in enumerate(trace.calls):
        region = _region(call.module, tp)
        if region is not None:
            # a column-parallel module's results are its shard; a row-parallel module's
            # product with its weight is a partial sum (reduced, then replicated)
            reads = call.tensor_args()
            if region[1] == "colwise" or (any(a.storage in sharded for a in reads)
                                          and not any(a.parameter for a in reads)):
                sharded.update(o.storage for o in call.outputs)
            seen_regions.add(region)
            continue
        args = [a for a in call.tensor_args() if a.parameter is None]
        if any(a.storage in sharded for a in args):
            sharded.update(o.storage for o in call.outputs)
            continue
        if tp.sequence and args:
            sharding.ops.add(k)
            sharding.tensors.update(a.key for a in args)
            sharding.tensors.update(o.key for o in call.outputs)
            sharding.storages.update(a.storage for a in args)
            sharding.storages.update(o.storage for o in call.outputs)
    return sharding, seen_regions


def _region_collectives(trace, tp: TensorParallel, path: str, style: str,
                        sharding: Sharding) -> list[Communication]:
    """The collectives around one colwise or rowwise module (``sharding`` learns which
    storages a collective keeps whole)."""
    comms: list[Communication] = []
    if style == "colwise":
        x = trace.module_inputs[path][0]
        grad = x.requires_grad
        if tp.sequence:
            comms.append(Communication(path, "forward", "all-gather", x.numel,
                                       x.itemsize, "its input, cut along the sequence"))
            if tp.implementation == "megatron":
                comms.append(Communication(path, "backward", "all-gather", x.numel,
                                           x.itemsize, "its input again (kept cut)"))
            else:
                sharding.storages.discard(x.storage)
            if grad:
                comms.append(Communication(path, "backward", "reduce-scatter", x.numel,
                                           x.itemsize, "its input's gradient"))
        elif grad:
            comms.append(Communication(path, "backward", "all-reduce", x.numel,
                                       x.itemsize, "its input's gradient"))
    else:
        y = trace.module_outputs[path][0]
        if tp.sequence:
            sharding.gathered.add(y.storage)
            comms.append(Communication(path, "forward", "reduce-scatter", y.numel,
                                       y.itemsize, "its output's partial sums"))
            comms.append(Communication(path, "backward", "all-gather", y.numel,
                                       y.itemsize, "its output's gradient"))
        else:
            comms.append(Communication(path, "forward", "all-reduce", y.numel,
                                       y.itemsize, "its output's partial sums"))
    return comms


def _order(trace, path: str) -> int:
    return next(k for k, c in enumerate(trace.calls)
                if c.module == path or c.module.startswith(path + "."))


def _partial_weight_gradients(trace, sharding: Sharding, implementation: str
                              ) -> list[Communication]:
    """Replicated parameters read by work cut along the sequence: each device's gradient
    is a partial sum, all-reduced after the backward pass (Megatron-LM) or where the
    optimizer's step reads it (torch)."""
    phase, when = (("backward", "after the backward pass") if implementation == "megatron"
                   else ("optimizer", "by the step, at each read"))
    out, seen = [], set()
    trainable = {p.name: p for p in trace.parameters if p.trainable}
    for k in sorted(sharding.ops):
        call = trace.calls[k]
        for a in call.tensor_args():
            if a.parameter in trainable and a.parameter not in seen:
                seen.add(a.parameter)
                p = trainable[a.parameter]
                out.append(Communication(call.module, phase, "all-reduce",
                                         sp.Integer(p.numel), p.itemsize,
                                         f"the gradient of {a.parameter} (partial sums), "
                                         + when))
    return out
