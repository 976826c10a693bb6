"""Trace one forward pass of a torch model with symbolic sizes.

Why this way: torch's own fake tensors with a ``ShapeEnv`` (the machinery behind
``torch.compile(dynamic=True)``) run the model's real Python code, every branch and
every functional call included, without allocating memory, and carry the batch size
(and any other size left symbolic) through every operation as a SymPy expression.
A ``TorchDispatchMode`` then sees each aten operation with those symbolic shapes, and
module hooks say which module ran it.  ``torch.fx`` tracing fails on data-dependent
Python (TransformerEncoder's fast-path checks); ``torch.export`` needs more from the
model and is slower; a dispatch trace at one concrete batch would give numbers, not
polynomials in B.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

import sympy as sp
import torch
from torch._dispatch.python import enable_python_dispatcher
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.fx.experimental.symbolic_shapes import (
    DimDynamic,
    ShapeEnv,
    StatelessSymbolicContext,
)
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map

from symflop.core.model import size_symbol
from symflop.errors import UsageError
from symflop.estimate.calls import OpCall, TensorRef
from symflop.estimate.cuda_autocast import cuda_autocast


@dataclass(frozen=True)
class Parameter:
    name: str
    shape: tuple[int, ...]
    itemsize: int
    trainable: bool

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n


@dataclass(frozen=True)
class Trace:
    """The forward pass as aten operations, and what the model holds."""

    calls: tuple[OpCall, ...]
    input: TensorRef
    output: TensorRef
    parameters: tuple[Parameter, ...]
    buffers: tuple[Parameter, ...]
    symbols: dict[str, sp.Symbol]      # the sizes left symbolic, by name (B first)
    hints: dict[str, int]              # the value each symbolic size had in the trace
    module_inputs: dict[str, tuple[TensorRef, ...]] | None = None  # each module's first inputs
    module_outputs: dict[str, tuple[TensorRef, ...]] | None = None  # and its first outputs
    specialized: tuple[str, ...] = ()  # sizes the model's code fixed to their trace value


def _specialized(env: ShapeEnv, symmap: dict) -> tuple[str, ...]:
    """The sizes that the trace fixed to the value it ran at: torch replaced the size's
    symbol by a number, or guarded on its equality to one (the model's code turned the
    size into a Python int: ``nn.Upsample``'s scale, an unrolled loop over L)."""
    out = []
    for torch_sym, ours in symmap.items():
        fixed = env.replacements.get(torch_sym)
        eq = any(isinstance(g.expr, sp.Eq) and torch_sym in g.expr.free_symbols
                 and len(g.expr.free_symbols) == 1 for g in env.guards)
        if (fixed is not None and fixed.is_number) or eq:
            out.append(ours.name)
    return tuple(out)


def _fake(mode: FakeTensorMode, t: torch.Tensor) -> torch.Tensor:
    """A fake copy of a parameter or buffer; one on the meta device (a model built without
    memory) becomes a fake CPU tensor, so that torch picks the kernels it picks on CPU."""
    if t.device.type != "meta":
        return mode.from_tensor(t, static_shapes=True)
    with mode:
        return torch.empty_strided(t.shape, t.stride(), dtype=t.dtype, device="cpu")


def _decomposition(func):
    """torch's own decomposition of an aten operation, if it has one."""
    from torch._decomp import decomposition_table
    return decomposition_table.get(func)


class _Recorder(TorchDispatchMode):
    """Records each aten operation; one that no rule knows (``known`` is false for it) is
    replaced by torch's own decomposition where it has one, so that its parts are
    recorded instead (bilinear upsampling becomes index reads, products and sums)."""

    def __init__(self, convert, stack: list[str], types: dict[str, str], known=None):
        super().__init__()
        self.convert = convert
        self.stack = stack
        self.types = types
        self.known = known or (lambda _name: True)
        self.calls: list[OpCall] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func.namespace == "prim" or func in _SIZE_QUERIES:
            return func(*args, **kwargs)
        if not self.known(f"aten.{func.overloadpacket.__name__}"):
            decomposition = _decomposition(func)
            if decomposition is not None:
                with self:
                    out = decomposition(*args, **kwargs)
                if out is not NotImplemented:
                    return out
            if func.has_kernel_for_dispatch_key(torch._C.DispatchKey.CompositeImplicitAutograd):
                with self:
                    return func.decompose(*args, **kwargs)
        _check_dtypes(func, args)
        before = tree_map(self.convert, (args, kwargs))
        out = func(*args, **kwargs)
        outs = [self.convert(t, after=True) for t in tree_flatten(out)[0]
                if isinstance(t, torch.Tensor)]
        module = self.stack[-1] if self.stack else ""
        self.calls.append(OpCall(f"{func.namespace}.{func.overloadpacket.__name__}",
                                 str(func), module, self.types.get(module, ""),
                                 tuple(before[0]), before[1], tuple(outs),
                                 tuple(self.stack)))
        return out


# Products and convolutions: torch's CPU kernels refuse operands of two floating dtypes;
# their meta kernels, which a fake tensor runs, do not check.
_SAME_DTYPE = frozenset(("mm", "addmm", "bmm", "baddbmm", "addbmm", "addmv", "mv", "dot",
                         "convolution", "_convolution"))


def _check_dtypes(func, args) -> None:
    """Raise, as torch's kernel would, on a product of operands of different dtypes."""
    if func.overloadpacket.__name__ not in _SAME_DTYPE:
        return
    dtypes = {a.dtype for a in args if isinstance(a, torch.Tensor) and a.is_floating_point()}
    if len(dtypes) > 1:
        names = " and ".join(sorted(str(d).removeprefix("torch.") for d in dtypes))
        raise RuntimeError(f"{func.overloadpacket.__name__}: operands of dtypes {names} "
                           "(torch's kernel refuses them: give --input-dtype the model's)")


_SIZE_QUERIES = frozenset((torch.ops.aten.size.default, torch.ops.aten.sym_size.int,
                           torch.ops.aten.stride.default, torch.ops.aten.sym_numel.default,
                           torch.ops.aten.dim.default, torch.ops.aten.is_contiguous.default))


@contextmanager
def _torch_logging_quiet():
    """torch's fake tensors log a traceback (at ERROR) before they raise on a shape
    mistake; the estimate reports the error in one line of its own."""
    log = logging.getLogger("torch._subclasses.fake_tensor")
    was = log.level
    log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        log.setLevel(was)


@contextmanager
def onednn_off():
    """oneDNN's kernels off for a while (``torch.backends.mkldnn.flags`` would also set
    its TF32 flag, with a warning about Intel GPUs on every call)."""
    was = torch._C._get_mkldnn_enabled()
    torch._C._set_mkldnn_enabled(False)
    try:
        yield
    finally:
        torch._C._set_mkldnn_enabled(was)


def _default_hints(shape: tuple, hints: dict[str, int] | None) -> dict[str, int]:
    """The trace value of each symbolic size: the given one, or distinct defaults."""
    hints = dict(hints or {})
    names = [s for s in shape if isinstance(s, str)]
    for k, n in enumerate(names):
        hints.setdefault(n, 8 if k == 0 else 8 + 3 * k)  # distinct, and never 0 or 1
    return hints


def _fake_input(mode: FakeTensorMode, shape: tuple, hints: dict[str, int],
                dtype: torch.dtype) -> tuple[torch.Tensor, dict]:
    """A fake input of ``shape`` whose named sizes are torch's symbols, and the map from
    those symbols to ours."""
    concrete = [hints[s] if isinstance(s, str) else int(s) for s in shape]
    context: StatelessSymbolicContext[Any, Any] = StatelessSymbolicContext(dynamic_sizes=[
        DimDynamic.DYNAMIC if isinstance(s, str) else DimDynamic.STATIC for s in shape])
    x = mode.from_tensor(torch.empty(concrete, dtype=dtype), symbolic_context=context)
    symmap = {}
    sizes: Any = x.shape          # torch.SymInt where a size is named
    for s, v in zip(shape, sizes, strict=True):
        if isinstance(s, str):
            symmap[v.node.expr] = size_symbol(s)
    return x, symmap


class _Converter:
    """A traced value as the estimate's: a symbolic size as a SymPy expression in the
    sizes left symbolic, a tensor as a ``TensorRef`` (the parameter's name where it is
    one, in ``owners``: storage -> name)."""

    def __init__(self, symmap: dict, names: list[str]):
        self.symmap, self.names = symmap, names
        self.keep: list = []   # keep traced tensors alive: storage identities are never reused
        self.owners: dict[int, str] = {}

    def sym(self, v) -> sp.Expr:
        if isinstance(v, torch.SymInt):
            e = sp.sympify(v.node.expr).xreplace(self.symmap)
            if e.free_symbols - set(self.symmap.values()):
                raise UsageError(f"a size in the trace depends on {e}, not only on the sizes "
                                 f"left symbolic ({', '.join(self.names)})")
            return sp.expand(e)
        return sp.Integer(int(v))

    def __call__(self, t, after: bool = False):
        if not isinstance(t, torch.Tensor):
            return self.sym(t) if isinstance(t, torch.SymInt) else t
        self.keep.append(t)
        storage = StorageWeakRef(t.untyped_storage()).cdata
        itemsize = t.element_size()
        sym = self.sym
        return TensorRef(hash((id(t), t._version)), storage, tuple(sym(s) for s in t.shape),
                         sp.expand(sym(t.untyped_storage().nbytes()) / itemsize), itemsize,
                         str(t.dtype).removeprefix("torch."), bool(t.requires_grad),
                         self.owners.get(storage))


def _fake_parameters(model: torch.nn.Module, mode: FakeTensorMode, owners: dict[int, str]
                     ) -> tuple[list[Parameter], list[Parameter], dict[str, torch.Tensor]]:
    """The model's parameters and buffers, and a fake copy of each by name (``owners``
    receives each copy's storage -> its name)."""
    params, fakes = [], {}
    for name, p in model.named_parameters():
        f = _fake(mode, p.detach()).requires_grad_(p.requires_grad)
        fakes[name] = f
        owners[StorageWeakRef(f.untyped_storage()).cdata] = name
        params.append(Parameter(name, tuple(p.shape), p.element_size(), p.requires_grad))
    buffers = []
    for name, b in model.named_buffers():
        f = _fake(mode, b)
        fakes[name] = f
        owners[StorageWeakRef(f.untyped_storage()).cdata] = name
        buffers.append(Parameter(name, tuple(b.shape), b.element_size(), False))
    return params, buffers, fakes


class _ModuleHooks:
    """Which module runs now (``stack``, innermost last), each module's type, and each
    module's first inputs and outputs; hooked in, with the model in training mode, for
    as long as the context lasts."""

    def __init__(self, model: torch.nn.Module, convert: _Converter, loss=None):
        self.model, self.convert = model, convert
        self.paths = {id(m): n for n, m in model.named_modules()}
        self.types = {n: type(m).__name__ for n, m in model.named_modules()}
        if loss is not None:
            self.types[loss[0]] = "loss"
        self.stack: list[str] = []
        self.inputs: dict[str, tuple[TensorRef, ...]] = {}
        self.outputs: dict[str, tuple[TensorRef, ...]] = {}

    def _tensors(self, values) -> tuple[TensorRef, ...]:
        return tuple(self.convert(t) for t in tree_flatten(values)[0]
                     if isinstance(t, torch.Tensor))

    def _pre(self, module, args) -> None:
        path = self.paths.get(id(module), type(module).__name__)
        self.stack.append(path)
        if path not in self.inputs and id(module) not in self.paths:
            self.inputs[path] = self._tensors(args)

    def _own_inputs(self, module, args, kwargs) -> None:
        """A module's inputs, keyword ones too (what a checkpoint of it keeps)."""
        path = self.paths[id(module)]
        if path not in self.inputs:
            self.inputs[path] = self._tensors((args, kwargs))

    def _post(self, module, _args, out) -> None:
        path = self.stack.pop()
        if path not in self.outputs:
            self.outputs[path] = self._tensors(out)

    def __enter__(self) -> _ModuleHooks:
        self.was_training = self.model.training
        self.model.train()
        self.handles = [
            torch.nn.modules.module.register_module_forward_pre_hook(self._pre),
            torch.nn.modules.module.register_module_forward_hook(self._post, always_call=True),
            *(m.register_forward_pre_hook(self._own_inputs, with_kwargs=True)
              for m in self.model.modules())]
        return self

    def __exit__(self, *_exc) -> None:
        for h in self.handles:
            h.remove()
        self.model.train(self.was_training)


def _record(model: torch.nn.Module, x: torch.Tensor, fakes: dict, mode: FakeTensorMode,
            recorder: _Recorder, python_dispatcher: bool, loss, autocast: str | None,
            autocast_device: str) -> tuple[TensorRef, TensorRef]:
    """Run the model (and the loss on its first output) under the recorder; the input's
    and the output's ``TensorRef``."""
    convert, stack = recorder.convert, recorder.stack
    dispatcher = enable_python_dispatcher() if python_dispatcher else nullcontext()
    # oneDNN off: nn.LSTM and nn.GRU run torch's own cell-by-cell kernels, whose
    # operations the trace sees (oneDNN's fused RNN is one opaque operation)
    with dispatcher, onednn_off(), _torch_logging_quiet(), mode, recorder, \
            torch.enable_grad():
        input_ref = convert(x)
        cast = nullcontext() if not autocast else \
            cuda_autocast(getattr(torch, autocast)) if autocast_device == "cuda" else \
            torch.autocast("cpu", dtype=getattr(torch, autocast))
        with cast:
            out = torch.func.functional_call(model, fakes, (x,))
            first = next((t for t in tree_flatten(out)[0]
                          if isinstance(t, torch.Tensor)), None)
            if first is None:
                raise UsageError("the model returned no tensor")
            output_ref = convert(first)
            if loss is not None:
                stack.append(loss[0])
                loss[1](first)
                stack.pop()
    return input_ref, output_ref


def trace(model: torch.nn.Module, shape: tuple, hints: dict[str, int] | None = None,
          dtype: torch.dtype = torch.float32, known=None,
          python_dispatcher: bool = False, loss=None, autocast: str | None = None,
          autocast_device: str = "cpu") -> Trace:
    """Run ``model`` once in training mode on a fake input of ``shape``, whose entries are
    ints (fixed sizes) or names (symbolic sizes, such as "B" and "L").  ``known(op)``
    says whether a rule costs an aten operation ("aten.mul"); one it does not know is
    decomposed where torch can.  ``python_dispatcher``: run torch's Python kernels of
    composite operations (``nn.LSTM``'s loop, whose C++ kernel needs concrete sizes).
    ``loss``: (module path, function of the output) run after the model and recorded
    under that path, as the training step calls it.  ``autocast`` ("bfloat16",
    "float16"): the forward pass and the loss under autocast, with the per-operation
    types of ``autocast_device``'s lists: the CPU's, or ``"cuda"``'s (softmax,
    the norms and the losses in float32; ``symflop.estimate.cuda_autocast``)."""
    hints = _default_hints(shape, hints)
    names = [s for s in shape if isinstance(s, str)]
    env = ShapeEnv(duck_shape=False, specialize_zero_one=True)
    on_meta = any(p.device.type == "meta" for p in model.parameters())
    # A model built on the meta device may make meta tensors of its own while it runs
    # (an empty cache): those are taken in as fake tensors.
    mode = FakeTensorMode(shape_env=env, allow_non_fake_inputs=on_meta)
    x, symmap = _fake_input(mode, shape, hints, dtype)
    convert = _Converter(symmap, names)
    params, buffers, fakes = _fake_parameters(model, mode, convert.owners)
    hooks = _ModuleHooks(model, convert, loss)
    recorder = _Recorder(convert, hooks.stack, hooks.types, known)
    with hooks:
        input_ref, output_ref = _record(model, x, fakes, mode, recorder, python_dispatcher,
                                        loss, autocast, autocast_device)
    return Trace(tuple(recorder.calls), input_ref, output_ref, tuple(params), tuple(buffers),
                 {n: size_symbol(n) for n in names}, {n: hints[n] for n in names},
                 hooks.inputs, hooks.outputs, _specialized(env, symmap))
