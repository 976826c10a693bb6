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
        self._layout_of: dict = {}            # parameter -> the flat buffers holding it
        self._no_grad: set = set()            # zeroed to "none" in a flat buffer
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
            with_grad = [p for p in group["params"] if self._has_grad(p)]
            for p in with_grad:
                if p.grad.is_sparse:
                    raise UsageError(f"{self._component}: sparse gradients are not supported")
                if not self.state[p]:
                    self._init_state(p)
            if self._flat_step(index, group, with_grad, hyper):
                continue
            by_scalars: dict[tuple, list] = {}  # parameters whose scalar state agrees
            for p in with_grad:
                key = tuple(float(self.state[p][n]) for n in self._state_scalars)
                by_scalars.setdefault(key, []).append(p)
            for key, params in by_scalars.items():
                self._update(params, dict(zip(self._state_scalars, key)), hyper)
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        """As torch.optim's; a gradient held in a flat buffer is zeroed there and kept, and
        with ``set_to_none`` its parameter counts as having none until autograd adds to
        it again (so the step skips it, as torch's would)."""
        for group in self.param_groups:
            for p in group["params"]:
                flat = self._layout_of.get(p)
                if flat is None or p.grad is None or not flat.holds_grad(p):
                    if p.grad is not None and set_to_none:
                        p.grad = None
                    elif p.grad is not None:  # as torch.optim.Optimizer.zero_grad
                        if p.grad.grad_fn is not None:
                            p.grad.detach_()
                        else:
                            p.grad.requires_grad_(False)
                        p.grad.zero_()
                    continue
                if set_to_none:
                    self._no_grad.add(p)
        for flat in set(self._layout_of.values()):
            flat.grad.zero_()

    def _has_grad(self, p) -> bool:
        if p.grad is None:
            return False
        flat = self._layout_of.get(p)
        return not (p in self._no_grad and flat is not None and flat.holds_grad(p))

    def _init_state(self, p) -> None:
        state = self.state[p]
        for n in self._state_arrays:
            state[n] = torch.full_like(p, self._initial[n], memory_format=torch.preserve_format)
        for n in self._state_scalars:
            state[n] = self._initial[n]

    def _flat_step(self, index: int, group: dict, with_grad: list, hyper: dict) -> bool:
        """The whole group in one call on flat buffers, where that gives the same result
        as the list: every parameter has a gradient, shares one dtype and device, is
        contiguous, and the scalar state agrees.  False where it cannot."""
        params = group["params"]
        if not self._flat or len(with_grad) != len(params) or not params:
            return False
        scalars = {tuple(float(self.state[p][n]) for n in self._state_scalars) for p in params}
        kinds = {(p.dtype, p.device) for p in params}
        if len(scalars) != 1 or len(kinds) != 1 or not all(p.is_contiguous() for p in params):
            return False
        if len(set(map(id, params))) != len(params):
            return False
        flat = self._layouts.get(index)
        if flat is None or not flat.bound(params, self.state):
            flat = self._layouts[index] = _Flat(params, self.state, self._state_arrays)
            for p in params:
                self._layout_of[p] = flat
                if id(p) not in self._hooked:  # autograd added to it: it has a gradient
                    p.register_post_accumulate_grad_hook(self._no_grad.discard)
                    self._hooked.add(id(p))
        flat.take_grads(params)
        self._no_grad.difference_update(params)
        values = {self._param: flat.param, self._grad: flat.grad,
                  **{n: flat.state[n] for n in self._state_arrays},
                  **dict(zip(self._state_scalars, next(iter(scalars)))), **hyper}
        out = self._step.compiled(backend=self._backend, check=self._check, inplace=True,
                                  **values)
        for n in self._state_scalars:
            value = float(out[n])
            for p in params:
                self.state[p][n] = value
        for n in self._step.shape.new:
            for p, part in zip(params, out[n].split([q.numel() for q in params])):
                self.state[p][n] = part.view(p.shape)
        return True

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

    def __init__(self, params: list, state, arrays: list[str]):
        ref = params[0]
        total = sum(p.numel() for p in params)
        self.offsets = []
        at = 0
        for p in params:
            self.offsets.append(at)
            at += p.numel()
        self.param = torch.empty(total, dtype=ref.dtype, device=ref.device)
        self.grad = torch.zeros(total, dtype=ref.dtype, device=ref.device)
        self.state = {n: torch.empty(total, dtype=ref.dtype, device=ref.device)
                      for n in arrays}
        self.param_views, self.grad_views = [], []
        for p, at in zip(params, self.offsets):
            part = slice(at, at + p.numel())
            view = self.param[part].view(p.shape)
            view.copy_(p.detach())
            p.data = view
            self.param_views.append(view)
            self.grad_views.append(self.grad[part].view(p.shape))
            for n in arrays:
                kept = self.state[n][part].view(p.shape)
                kept.copy_(state[p][n])
                state[p][n] = kept
        self.grad_ptrs = {id(p): g.data_ptr() for p, g in zip(params, self.grad_views)}
        self.arrays = arrays

    def holds_grad(self, p) -> bool:
        return p.grad is not None and p.grad.data_ptr() == self.grad_ptrs.get(id(p))

    def bound(self, params: list, state) -> bool:
        """Do the parameters and their state still live in these buffers (not moved by
        ``module.to``, nor replaced by ``load_state_dict``)?"""
        return len(params) == len(self.param_views) and all(
            p.data_ptr() == v.data_ptr() and p.shape == v.shape
            and all(state[p][n].data_ptr() == v.data_ptr() - self.param.data_ptr()
                    + self.state[n].data_ptr() for n in self.arrays)
            for p, v in zip(params, self.param_views))

    def take_grads(self, params: list) -> None:
        """Gradients that arrived outside the buffer, copied in (one call); each
        parameter's gradient is then its view of the buffer."""
        stray = [(p, v) for p, v in zip(params, self.grad_views) if not self.holds_grad(p)]
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
