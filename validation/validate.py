"""The cross-check harness behind ``symflop validate``.

For one component, one device and one dtype it draws seeded random inputs at
several sizes (the reference's sizes, all sizes odd, a batch of one), runs the
generated torch code and torch's own implementation, and compares every output
and gradient; optimizers are compared as trajectories over several steps from a
fresh state, schedules at every step of a run.  Inputs at the edge of their
domain (``Reference.extreme``) must give finite results that still match.  A NaN
or Inf among the inputs is reported as such, never as a mismatch.  Tolerances
are those of ``validation.tolerances``.
"""

from __future__ import annotations

import inspect
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch

from symflop import Component, InputError
from symflop.compose import derive_any
from symflop.core.functions import uniform
from symflop.core.model import Role
from symflop.derive import Derivation
from symflop.lower.backends import get_backend
from validation.executed import compare, compare_passes
from validation.harness import run_pass, run_passes
from validation.identities_torch import numeric_check as identity_check
from validation.inputs import torch_inputs
from validation.ref_common import Reference
from validation.references import REFERENCES
from validation.tolerances import TOLERANCES

OPTIMIZER_STEPS = 5


@dataclass
class Row:
    """One line of the report: a component's pass, checked at some sizes."""

    component: str
    pass_name: str
    checked: str
    max_abs: float = 0.0
    max_rel: float = 0.0
    verdict: str = "pass"
    notes: list[str] = field(default_factory=list)
    compared: int = 0            # results compared with the reference's
    symbolic: int | None = None  # FLOPs the engine counts for the arrays (one size set)
    executed: int | None = None  # FLOPs torch's dispatcher saw the generated code run
    count_notes: list[str] = field(default_factory=list)

    def counts_text(self) -> str:
        if self.executed is None:
            return "-"
        same = self.executed == self.symbolic
        return f"{self.symbolic:,} {'=' if same else 'vs'} {self.executed:,}"

    def set_counts(self, ex) -> None:
        """Attach a ``validation.executed.Row``: counted and executed totals must agree."""
        self.symbolic, self.executed = sum(ex.array.values()), sum(ex.executed.values())
        self.count_notes = ex.notes
        if ex.unknown:
            self._fail(f"operations the counter does not know: {', '.join(ex.unknown)}")
        if not ex.matches:
            self._fail("executed and counted operations differ")

    @property
    def ok(self) -> bool:
        return self.verdict in ("pass", "nothing to compare")

    def merge(self, got, want, tol: dict, key: str, slack=None) -> None:
        """Fold the comparison of one result into this row; ``slack`` (elementwise) widens
        the tolerance by what torch's own computation is allowed to be off."""
        self.compared += 1
        got = torch.as_tensor(got, dtype=torch.float64).cpu()
        want = torch.as_tensor(want, dtype=torch.float64).cpu()
        if got.shape != want.shape:
            self._fail(f"{key}: shape {tuple(got.shape)} != torch's {tuple(want.shape)}")
            return
        # both sides finite, or the same infinity on both: a difference with an infinite
        # or NaN reference is no comparison (|x - inf| <= atol + rtol inf holds for any x)
        same_inf = torch.isinf(got) & (got == want)
        if not (torch.isfinite(got) | same_inf).all():
            self._fail(f"{key}: non-finite values")
            return
        if not (torch.isfinite(want) | same_inf).all():
            bad = int((~(torch.isfinite(want) | same_inf)).sum())
            self._fail(f"{key}: the reference gives {bad} non-finite value"
                       f"{'s' * (bad != 1)} where ours is finite: nothing to compare them with")
            return
        got, want = got[~same_inf], want[~same_inf]
        if slack is not None:
            slack = torch.as_tensor(slack, dtype=torch.float64).cpu().expand(
                same_inf.shape)[~same_inf]
        diff = (got - want).abs()
        if diff.numel():
            self.max_abs = max(self.max_abs, float(diff.max()))
            # relative to what the tolerance can tell apart: a value below atol (a softmax
            # of 1e-20 that ours rounds to 0) has no meaningful relative error
            rel = diff / want.abs().clamp_min(max(tol["atol"], torch.finfo(torch.float64).tiny))
            self.max_rel = max(self.max_rel, float(torch.where(diff == 0, 0.0, rel).max()))
            allowed = tol["atol"] + tol["rtol"] * want.abs()
            if slack is not None:
                allowed = allowed + torch.as_tensor(slack, dtype=torch.float64).cpu()
            if not bool((diff <= allowed).all()):
                self._fail(f"{key}: outside rtol {tol['rtol']:g}, atol {tol['atol']:g}")

    def _fail(self, note: str) -> None:
        self.verdict = "FAIL"
        self.notes.append(note)


def default_shapes(sizes: dict) -> list[dict]:
    """The reference's sizes, all sizes odd, and a batch of one (where there is a B)."""
    out = [dict(sizes)]
    odd = {k: v if v % 2 else v + 1 for k, v in sizes.items()}
    if odd != sizes:
        out.append(odd)
    if "B" in sizes and sizes["B"] != 1:
        out.append({**sizes, "B": 1})
    return out


def _text(sizes: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in sizes.items()) or "scalar"


def _drawn(d: Derivation) -> set[str]:
    return {st.lhs for p in d.programs.values() for st in p.steps if st.body.has(uniform)}


def _producer(d: Derivation, key: str) -> str:
    for p in d.passes:
        if p != "gradient" and key in d.sources[p][1].outputs:
            return p
    return "?"


def reference_results(run: Callable, values: dict, c: Component) -> dict:
    """What a reference returns, checked: a dict of the component's tensors by name.
    Its mistakes (it raises, returns something else, names a tensor the component lacks)
    are one-line errors naming what is wrong."""
    try:
        out = run(values)
    except Exception as e:  # noqa: BLE001 - the reference's own failure, said in one line
        first = (str(e).strip().splitlines() or [""])[0]
        raise ValueError(f"the reference raised {type(e).__name__}: {first}") from None
    if not isinstance(out, dict):
        raise ValueError(f"the reference returned {type(out).__name__}, not a dict of "
                         "results by name (e.g. {'y': ..., 'grad_x': ...})")
    known = set(c.tensors) | {f"grad_{n}" for n in c.tensors}
    for key in out:
        if key not in known:
            names = [n for n, t in c.tensors.items() if t.role in (Role.OUTPUT, Role.STATE)]
            names += [f"grad_{n}" for n in c.wrt]
            raise ValueError(f"the reference returned {key!r}, which {c.name} does not "
                             f"have (its results: {', '.join(names)})")
    return out


def _uncompared(rows: list[Row], d: Derivation) -> list[Row]:
    """A pass none of whose results the reference gave was not checked: "nothing to
    compare", never a pass."""
    for r in rows:
        if r.compared == 0 and r.verdict == "pass":
            r.verdict = "nothing to compare"
            base = r.pass_name.split(" (")[0]
            outputs = sorted(d.sources[base][1].outputs) if base in d.sources else []
            r.notes.append("the reference gave none of its results"
                           + (f" ({', '.join(outputs)})" if outputs else ""))
    return rows


def check_passes(name: str, c: Component, d: Derivation, device: str, dtype,
                 shapes: list[dict], seed: int = 0, scale: dict | None = None,
                 suffix: str = "", backend: str = "torch", ref: Reference | None = None
                 ) -> list[Row]:
    """Every pass of a component with a torch ``run`` reference, at each size set."""
    ref = ref or REFERENCES[name]
    tol = TOLERANCES[dtype]
    rows: dict[str, Row] = {}
    grad_pass = c.grad_pass or next(iter(c.passes))

    def row(pass_name: str) -> Row:
        label = pass_name + suffix
        if label not in rows:
            rows[label] = Row(name, label, "; ".join(_text(s) for s in shapes))
        return rows[label]

    for k, sizes in enumerate(shapes):
        values = torch_inputs(c, d, ref, sizes, seed + k, dtype, device, scale=scale)
        if ref.extreme and scale is None and suffix:
            values = ref.extreme(values)
        try:
            ours = run_passes(d, values, backend=backend, seed=seed + k)
            fused = (run_passes(d, values, backend=backend, seed=seed + k,
                                passes=(grad_pass, "gradient"))
                     if "gradient" in d.passes else {})
        except InputError as e:
            r = row("all passes")
            r.verdict = "input NaN/Inf" if "NaN" in str(e) else "input error"
            r.notes.append(str(e))
            continue
        if k == 0 and not suffix:  # counts once per pass, at the first size set
            for ex in compare_passes(d, values, sizes, seed + k):
                row(ex.pass_name).set_counts(ex)
        draws = {n: ours[n] for n in _drawn(d) if n in ours}
        theirs = reference_results(ref.run, {**values, **draws}, c)
        slack = {}
        if suffix and dtype != torch.float64:
            # At the edge of the domain a low-precision reference is not the truth: compare
            # with torch in float64 on the same inputs, allowing twice torch's own error.
            exact = reference_results(ref.run, {
                k: (v.double() if isinstance(v, torch.Tensor) and v.is_floating_point()
                    else v) for k, v in {**values, **draws}.items()}, c)
            slack = {k: 2 * (theirs[k].double() - exact[k]).abs() for k in theirs}
            theirs = exact
        for key, want in theirs.items():
            if key not in ours and c.tensors[key].role is Role.INTERMEDIATE:
                continue  # computed inside a kernel of the lowered code, never stored
            row(_producer(d, key)).merge(ours[key], want, tol, key, slack.get(key))
            if key.startswith("grad_") and key in fused:
                row("gradient").merge(fused[key], want, tol, key, slack.get(key))
    return _uncompared(list(rows.values()), d)


def check_optimizer(name: str, c: Component, d: Derivation, device: str, dtype,
                    shapes: list[dict], seed: int = 0, backend: str = "torch",
                    ref: Reference | None = None) -> list[Row]:
    """The generated step, repeated from a fresh state, against torch.optim's trajectory
    (a user's reference: its own step, repeated): in its pure call form and in its
    in-place one (state updated in its buffers)."""
    from validation.ref_optimizers import TRAJECTORY_REFERENCES
    user = ref is not None
    ref = ref or REFERENCES[name]
    tol = TOLERANCES[dtype]
    hypers = {k: ref.hypers.get(k, c.defaults.get(k)) for k, t in c.tensors.items()
              if t.role is Role.HYPER}
    row = Row(name, "step", f"{OPTIMIZER_STEPS} steps at " + "; ".join(map(_text, shapes)))
    reference: Callable = (_stepped(ref.run, c, hypers) if user
                           else TRAJECTORY_REFERENCES[name])
    step = d.compiled("step")
    for k, sizes in enumerate(shapes):
        gen = torch.Generator().manual_seed(seed + k)
        P = sizes["P"]
        theta0 = torch.randn(P, dtype=dtype, generator=gen).to(device)
        grads = [torch.randn(P, dtype=dtype, generator=gen).to(device)
                 for _ in range(OPTIMIZER_STEPS)]
        state = {"theta": theta0}
        for n, t in c.tensors.items():
            if t.role is Role.STATE:
                state[n] = initial_state(c, n, P, dtype, device)
        if k == 0:
            first = {"g": grads[0], **hypers,
                     **{n: v for n, v in state.items() if n in step.signature.inputs}}
            row.set_counts(compare(d, "step", first, sizes))
        takes = inspect.signature(reference).parameters
        want = reference(theta0, grads, **{k: v for k, v in hypers.items() if k in takes})
        xp = get_backend(backend)
        for inplace in (False, True):
            run = {n: (v.clone() if isinstance(v, torch.Tensor) else v)
                   for n, v in state.items()}
            for g in grads:
                out = run_pass(step, xp, {"g": g, **hypers, **{
                    n: v for n, v in run.items() if n in step.signature.inputs}},
                    inplace=inplace)
                if inplace and xp.name != "numpy":  # the state buffers hold the new values
                    moved = [n for n in out if n in step.signature.inputs and n in run
                             and isinstance(run[n], torch.Tensor) and run[n].ndim
                             and out[n] is not run[n]]
                    if moved:
                        row._fail(f"in place, {', '.join(moved)} came back in new buffers")
                run.update({n: out[n] for n in out if n in run or n in c.tensors
                            and c.tensors[n].role is Role.OUTPUT})
            for key, value in want.items():
                row.merge(run[key], value, tol, key + (" (in place)" if inplace else ""))
    return [row]


def check_schedule(name: str, c: Component, d: Derivation, backend: str = "torch",
                   ref: Reference | None = None) -> list[Row]:
    """eta(t) at every step of a run against torch.optim.lr_scheduler (or a user's
    reference, asked for each t)."""
    from validation.ref_schedules import torch_lrs
    user = ref is not None
    ref = ref or REFERENCES[name]
    steps = ref.steps or 50
    want = ([float(_eta(reference_results(ref.run, {"t": float(t), **ref.hypers}, c)))
             for t in range(steps)] if user else torch_lrs(name, ref.hypers, steps))
    fn = d.compiled("schedule")
    xp = get_backend(backend)
    got = [float(run_pass(fn, xp, {"t": float(t), **ref.hypers})["eta"])
           for t in range(steps)]
    row = Row(name, "schedule", f"t = 0..{steps - 1}")
    row.set_counts(compare(d, "schedule", {"t": 1.0, **ref.hypers}, {}))
    row.merge(torch.tensor(got), torch.tensor(want), TOLERANCES[torch.float64], "eta")
    return [row]


def _eta(results: dict):
    if "eta" not in results:
        raise ValueError("the reference returned no 'eta' (the schedule's value at t)")
    return results["eta"]


def check_component(name: str, device: str = "cpu", dtype=torch.float64,
                    component: Component | None = None, backend: str = "torch",
                    reference: Reference | None = None) -> list[Row]:
    """Every check that applies to one catalogue component (or to ``component``, checked
    against the reference of the catalogue entry ``name``, or against ``reference``),
    running the generated code on ``backend`` (the executed-operation counts are always
    those of the eager torch code: a dispatcher sees neither NumPy nor the compiled
    kernels)."""
    from derivations import CATALOGUE
    c = component if component is not None else CATALOGUE[name]()
    d = derive_any(c)  # a changed equation is a new cache key, so caching stays safe
    if not isinstance(c, Component):
        return [Row(name, "all", "composite", verdict="nothing to compare",
                    notes=["a composite: its parts are validated as components"])]
    ref = reference or REFERENCES[name]
    shapes = list(ref.shapes) or default_shapes(ref.sizes)
    if "schedule" in c.passes:
        return check_schedule(name, c, d, backend, reference)
    if "step" in c.passes:
        return check_optimizer(name, c, d, device, dtype, shapes, backend=backend,
                               ref=reference)
    if ref.run is None:
        steps = sum(len(p.steps) for p in d.programs.values())
        return [Row(name, "all", "no computation" if not steps else "no torch reference",
                    verdict="nothing to compare" if not steps else "FAIL",
                    notes=[f"{steps} steps"])]
    rows = check_passes(name, c, d, device, dtype, shapes, backend=backend, ref=ref)
    if ref.extreme:
        rows += check_passes(name, c, d, device, dtype, shapes[:1], seed=100,
                             suffix=" (extreme inputs)", backend=backend, ref=ref)
    return rows


def initial_state(c: Component, name: str, P: int, dtype, device: str):
    """A state tensor's value before the first step: zeros, or the value the component
    declares (``c.state(..., initial=1.0)``)."""
    value = float(getattr(c.tensors[name], "initial", 0.0) or 0.0)
    if not c.tensors[name].shape:
        return value
    return torch.full((P,), value, dtype=dtype, device=device)


def _stepped(run: Callable, c: Component, hypers: dict) -> Callable:
    """A user's one-step reference, ``run(values) -> results``, as a trajectory: each
    step is given the last step's parameters and state."""
    state_names = [n for n, t in c.tensors.items() if t.role is Role.STATE]

    def trajectory(theta0, grads, **_hypers):
        theta = theta0.clone()
        state = {n: initial_state(c, n, theta0.numel(), theta0.dtype, theta0.device)
                 for n in state_names}
        out: dict = {}
        for g in grads:
            out = reference_results(run, {"theta": theta, "g": g, **hypers, **state}, c)
            if "theta" not in out:
                raise ValueError("the reference's step returned no 'theta' (the updated "
                                 "parameters)")
            theta = out["theta"]
            state = {n: out.get(n, state[n]) for n in state_names}
        return {k: v for k, v in out.items() if k == "theta" or k in state_names}
    return trajectory


def user_reference(c: Component, reference, sizes: dict | None = None) -> Reference:
    """A user's reference: a ``Reference``, or a function ``run(values) -> results`` (the
    component's names in and out, gradients as ``grad_<name>``); checked at ``sizes`` (or
    the reference's, or small distinct sizes), all sizes odd, and a batch of one."""
    if isinstance(reference, Reference):
        return reference if not sizes else replace(reference, sizes=sizes, shapes=())
    if not callable(reference):
        raise TypeError(f"a reference is a function or a Reference, not "
                        f"{type(reference).__name__}")
    missing = set(sizes or {}) - set(c.dims)
    if missing:
        raise ValueError(f"{c.name} has no size {', '.join(sorted(missing))}")
    dims = {n: (sizes or {}).get(n, 3 + k) for k, n in enumerate(c.dims)}
    return Reference(sizes=dims, run=reference)


def validate(names: list[str], device: str = "cpu", dtype=torch.float64,
             progress: Callable[[int, int, str], None] | None = None,
             backend: str = "torch") -> list[Row]:
    rows: list[Row] = []
    for k, name in enumerate(names):
        if progress:
            progress(k + 1, len(names), name)
        try:
            rows += check_component(name, device, dtype, backend=backend)
        except Exception as e:  # noqa: BLE001 - one broken component must not hide the rest
            rows.append(Row(name, "all", "", verdict="ERROR",
                            notes=[f"{type(e).__name__}: {e}"]))
    return rows


def format_rows(rows: list[Row], setting: str = "") -> str:
    """The report as a table; ``setting`` (device and dtype) heads it."""
    head = ("component", "pass", "checked", "max abs err", "max rel err",
            "FLOPs symbolic vs executed", "verdict")
    body = [(r.component, r.pass_name, r.checked,
             *((f"{r.max_abs:.2e}", f"{r.max_rel:.2e}") if r.verdict != "nothing to compare"
               else ("-", "-")),
             r.counts_text(), r.verdict) for r in rows]
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h)
              for i, h in enumerate(head[:-1])]
    lines = [setting] if setting else []
    lines.append("  ".join(f"{h:<{w}}" for h, w in zip(head, widths)) + "  " + head[-1])
    for r, b in zip(rows, body):
        lines.append("  ".join(f"{x:<{w}}" for x, w in zip(b, widths)) + "  " + b[-1])
        for note in r.notes if r.verdict != "pass" else ():  # why, on lines of their own
            lines += textwrap.wrap(note, width=100, initial_indent="    ",
                                   subsequent_indent="      ")
    failed = sum(not r.ok for r in rows)
    idle = sum(r.verdict == "nothing to compare" for r in rows)
    notes = [(r, n) for r in rows for n in r.count_notes]
    if notes:
        lines.append("\nwhere executed and symbolic counts differ (at the first size set; the "
                     "symbolic count of array work, Python-number work excluded):")
        lines.extend(f"  {r.component} {r.pass_name}: {n}" for r, n in notes)
    lines.append(f"{len(rows) - failed - idle} passed, {failed} failed, "
                 f"{idle} with nothing to compare")
    return "\n".join(lines)


def to_json(rows: list[Row], device: str, dtype, backend: str = "torch") -> dict:
    return {"device": device, "dtype": str(dtype).replace("torch.", ""), "backend": backend,
            "passed": all(r.ok for r in rows),
            "rows": [{"component": r.component, "pass": r.pass_name, "checked": r.checked,
                      "max_abs_err": r.max_abs, "max_rel_err": r.max_rel,
                      "symbolic_flops": r.symbolic, "executed_flops": r.executed,
                      "count_notes": r.count_notes,
                      "verdict": r.verdict, "notes": r.notes} for r in rows]}


def validate_user(c: Component, reference, device: str = "cpu", dtype=torch.float64,
                  backend: str = "torch", sizes: dict | None = None) -> list[Row]:
    """A user's component against the user's reference, by the catalogue's checks."""
    ref = user_reference(c, reference, sizes)
    return check_component(c.name, device, dtype, component=c, backend=backend,
                           reference=ref)


class Suite:
    """What ``symflop validate`` calls, through the entry point ``symflop.validation``
    (the command line knows no module of this package), and the identities' numeric
    checks by name (``symflop identities`` and the report: symflop.report.identities)."""

    validate = staticmethod(validate)
    identity_check = staticmethod(identity_check)
    validate_user = staticmethod(validate_user)
    format_rows = staticmethod(format_rows)
    to_json = staticmethod(to_json)


SUITE = Suite()
