"""A ``torch.optim.Optimizer`` whose step is a catalogue optimizer's generated code.

    from symflop.optim import Optimizer
    opt = Optimizer(model.parameters(), "adam", lr=1e-3, beta1=0.9, beta2=0.999,
                    epsilon=1e-8)
    ...; loss.backward(); opt.step(); opt.zero_grad()

The component's step pass says what it needs, by role: the one parameter (updated in
place), the one gradient, the state (kept per parameter in ``opt.state[p]``, as
torch.optim keeps it, under the equations' names, at the component's initial values
before the first step) and the hyperparameters (given here by the equations' names,
per parameter group as torch.optim takes them; the component's customary values where
not given).  Each step runs the generated code once over each group's
whole parameter list (``symflop.lower.multi``).  Nothing here knows one optimizer
from another.
"""

from __future__ import annotations

import math

import torch

from symflop.api import component as find_component
from symflop.api import derivation
from symflop.core.model import Component, Role
from symflop.errors import UsageError
from symflop.lower.multi import MultiTensorPass


class Optimizer(torch.optim.Optimizer):
    """Runs ``component``'s generated ``step`` on the parameters (``backend``: "torch",
    eager blocked kernels, or "torch-compiled", through torch.compile)."""

    def __init__(self, params, component: str | Component, *, backend: str = "torch",
                 check_finite: bool = False, flat: bool = True, **hyperparameters: float):
        c = find_component(component)
        d = derivation(c)
        if "step" not in d.programs:
            raise UsageError(f"{d.component}: not an optimizer (it has no step pass; "
                             f"passes: {', '.join(d.programs)})")
        self._step = MultiTensorPass(d.compiled("step"))
        tensors = d.programs["step"].tensors
        inputs = d.compiled("step").signature.inputs
        roles = {n: tensors[n].role for n in inputs}
        shape = self._step.shape
        params_ = [n for n in shape.arrays if roles[n] is Role.PARAMETER]
        grads = [n for n in shape.arrays if roles[n] is Role.INPUT]
        if len(params_) != 1 or len(grads) != 1:
            raise UsageError(f"{d.component}: its step must read one parameter and one "
                             f"gradient; it reads {', '.join(shape.arrays)}")
        self._param, self._grad = params_[0], grads[0]
        self._state_arrays = [n for n in shape.arrays if roles[n] is Role.STATE]
        self._state_scalars = [n for n in shape.scalars if roles[n] is Role.STATE]
        self.hyperparameters = tuple(n for n in shape.scalars if roles[n] is Role.HYPER)
        self._component = d.component
        self._initial = {n: tensors[n].initial or 0.0 for n in self._state_arrays
                         + self._state_scalars}
        self._backend = backend
        self._check = check_finite
        unknown = sorted(set(hyperparameters) - set(self.hyperparameters))
        if unknown:
            raise UsageError(f"{d.component} takes no hyperparameter {unknown[0]!r} (its "
                             f"hyperparameters: {', '.join(self.hyperparameters)})")
        for n, v in hyperparameters.items():
            _number(d.component, n, v)
        defaults = {n: v for n, v in c.defaults.items() if n in self.hyperparameters}
        super().__init__(params, {**defaults, **hyperparameters})
        self._flat = flat
        self._layouts: dict[int, _Flat] = {}  # group index -> its flat buffers
        self._layout_of: dict[int, _Flat] = {}  # id(parameter) -> the buffers holding it
        self._no_grad: set[int] = set()       # ids zeroed to "none" in a flat buffer
        self._hooked: set[int] = set()
        for group in self.param_groups:
            missing = [n for n in self.hyperparameters if n not in group]
            if missing:
                raise UsageError(f"{d.component}: give the hyperparameter(s) "
                                 f"{', '.join(missing)} (by the equations' names; the "
                                 "component has no customary value for them)")

    @torch.no_grad()
    def step(self, closure=None):
        """One update of every parameter that has a gradient."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for index, group in enumerate(self.param_groups):
            hyper = {n: _number(self._component, n, group[n]) for n in self.hyperparameters}
            params = group["params"]
            flat = self._layouts.get(index)
            if flat is not None and flat.ready(params, self._no_grad):
                self._run_flat(flat, hyper)
                continue
            with_grad = [p for p in params if self._has_grad(p)]
            for p in with_grad:
                if p.grad.is_sparse:
                    raise UsageError(f"{self._component}: sparse gradients are not supported")
                if not self.state[p]:
                    self._init_state(p)
            if self._flattens(params, with_grad):
                flat = self._layouts[index] = _Flat(params, self.state, self._state_arrays,
                                                    self._state_scalars)
                for p in params:
                    self._layout_of[id(p)] = flat
                    if id(p) not in self._hooked:  # autograd added to it: it has a gradient
                        p.register_post_accumulate_grad_hook(self._mark_grad)
                        self._hooked.add(id(p))
                self._run_flat(flat, hyper)
                continue
            by_scalars: dict[tuple, list] = {}  # parameters whose scalar state agrees
            for p in with_grad:
                key = tuple(float(self.state[p][n]) for n in self._state_scalars)
                by_scalars.setdefault(key, []).append(p)
            for key, ps in by_scalars.items():
                self._update(ps, dict(zip(self._state_scalars, key)), hyper)
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        """As torch.optim's; a gradient held in a flat buffer is zeroed there and kept, and
        with ``set_to_none`` its parameter counts as having none until autograd adds to
        it again (so the step skips it, as torch's would)."""
        for group in self.param_groups:
            for p in group["params"]:
                flat = self._layout_of.get(id(p))
                if flat is not None and flat.holds_grad(p):
                    if set_to_none:
                        self._no_grad.add(id(p))
                elif p.grad is not None and set_to_none:
                    p.grad = None
                elif p.grad is not None:  # as torch.optim.Optimizer.zero_grad
                    if p.grad.grad_fn is not None:
                        p.grad.detach_()
                    else:
                        p.grad.requires_grad_(False)
                    p.grad.zero_()
        for flat in {id(f): f for f in self._layout_of.values()}.values():
            flat.grad.zero_()

    def load_state_dict(self, state_dict: dict) -> None:
        """As torch.optim's; the state then lives in new tensors, so the flat buffers are
        laid out again at the next step."""
        super().load_state_dict(state_dict)
        self._layouts.clear()
        self._layout_of.clear()

    def _mark_grad(self, p) -> None:
        self._no_grad.discard(id(p))

    def _has_grad(self, p) -> bool:
        if p.grad is None:
            return False
        flat = self._layout_of.get(id(p))
        return not (id(p) in self._no_grad and flat is not None and flat.holds_grad(p))

    def _init_state(self, p) -> None:
        state = self.state[p]
        for n in self._state_arrays:
            state[n] = torch.full_like(p, self._initial[n], memory_format=torch.preserve_format)
        for n in self._state_scalars:
            state[n] = self._initial[n]

    def _flattens(self, params: list, with_grad: list) -> bool:
        """Can the group run as one call on flat buffers with the same result as the
        list?  Every parameter has a gradient, one dtype and device, is contiguous and
        appears once, and the scalar state agrees."""
        if not self._flat or not params or len(with_grad) != len(params):
            return False
        scalars = {tuple(float(self.state[p][n]) for n in self._state_scalars) for p in params}
        kinds = {(p.dtype, p.device) for p in params}
        return (len(scalars) == 1 and len(kinds) == 1 and len({id(p) for p in params})
                == len(params) and all(p.is_contiguous() for p in params))

    def _run_flat(self, flat: _Flat, hyper: dict) -> None:
        flat.take_grads()
        for p in flat.params:
            self._no_grad.discard(id(p))
        values = {self._param: flat.param, self._grad: flat.grad,
                  **{n: flat.state[n] for n in self._state_arrays},
                  **flat.scalars(), **hyper}
        out = self._step.compiled(backend=self._backend, check=self._check, inplace=True,
                                  **values)
        flat.set_scalars({n: float(out[n]) for n in self._state_scalars})
        for n in self._step.shape.new:  # results no input holds (a look-ahead point)
            for d, p, part in zip(flat.dicts, flat.params,
                                  out[n].split([q.numel() for q in flat.params])):
                d[n] = part.view(p.shape)

    def _update(self, params: list, scalars: dict, hyper: dict) -> None:
        values = {self._param: params, self._grad: [p.grad for p in params],
                  **{n: [self.state[p][n] for p in params] for n in self._state_arrays},
                  **scalars, **hyper}
        out = self._step(backend=self._backend, check=self._check, inplace=True, **values)
        for n in self._state_scalars:
            for p in params:
                self.state[p][n] = float(out[n])
        for n in self._step.shape.new:  # results no input holds (a look-ahead point)
            for p, value in zip(params, out[n]):
                self.state[p][n] = value


class _Flat:
    """One group's parameters, gradients and state arrays laid end to end in flat
    buffers, each parameter, gradient and state tensor a view of its part: the step is
    then one call on a few long tensors, the form in which the generated code runs at
    the memory's speed (bench/codegen.py).  Autograd adds into a gradient that exists
    in place, so gradients stay in the buffer from step to step; one that arrives
    elsewhere (after ``p.grad = None``) is copied in."""

    def __init__(self, params: list, state, arrays: list[str], scalars: list[str]):
        ref = params[0]
        total = sum(p.numel() for p in params)
        self.params = list(params)
        self.dicts = [state[p] for p in params]  # each parameter's state, as torch's
        self.arrays, self.scalar_names = arrays, scalars
        self.param = torch.empty(total, dtype=ref.dtype, device=ref.device)
        self.grad = torch.zeros(total, dtype=ref.dtype, device=ref.device)
        self.state = {n: torch.empty(total, dtype=ref.dtype, device=ref.device)
                      for n in arrays}
        self.grad_views = []
        at = 0
        for p, d in zip(params, self.dicts):
            part = slice(at, at + p.numel())
            at += p.numel()
            view = self.param[part].view(p.shape)
            view.copy_(p.detach())
            p.data = view
            self.grad_views.append(self.grad[part].view(p.shape))
            for n in arrays:
                kept = self.state[n][part].view(p.shape)
                kept.copy_(d[n])
                d[n] = kept
        self.param_ptrs = [p.data_ptr() for p in params]
        self.grad_ptrs = {id(p): g.data_ptr() for p, g in zip(params, self.grad_views)}
        self.kept = [[d[n] for n in arrays] for d in self.dicts]

    def holds_grad(self, p) -> bool:
        return p.grad is not None and p.grad.data_ptr() == self.grad_ptrs.get(id(p))

    def ready(self, params: list, no_grad: set) -> bool:
        """Is the group still these parameters, in these buffers (not moved by
        ``module.to``, the state not replaced), each with a gradient, the scalar state
        agreeing?  Identity and address checks only: this runs at every step."""
        if len(params) != len(self.params):
            return False
        for p, q, ptr, d, kept in zip(params, self.params, self.param_ptrs, self.dicts,
                                      self.kept):
            if p is not q or p.data_ptr() != ptr or p.grad is None or (
                    id(p) in no_grad and p.grad.data_ptr() == self.grad_ptrs[id(p)]):
                return False
            if any(d[n] is not v for n, v in zip(self.arrays, kept)):
                return False
        first = self.dicts[0]
        return all(d[n] == first[n] for d in self.dicts for n in self.scalar_names)

    def scalars(self) -> dict:
        return {n: self.dicts[0][n] for n in self.scalar_names}

    def set_scalars(self, values: dict) -> None:
        for d in self.dicts:
            d.update(values)

    def take_grads(self) -> None:
        """Gradients that arrived outside the buffer, copied in (one call); each
        parameter's gradient is then its view of the buffer."""
        stray = [(p, v) for p, v in zip(self.params, self.grad_views)
                 if p.grad.data_ptr() != v.data_ptr()]
        if not stray:
            return
        torch._foreach_copy_([v for _p, v in stray], [p.grad for p, _v in stray])
        for p, v in stray:
            p.grad = v


def _number(component: str, name: str, value) -> float:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value):
        raise UsageError(f"{component}: hyperparameter {name} must be a finite number, "
                         f"got {value!r}")
    return value
