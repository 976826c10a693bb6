"""Checks every catalogue component gets: generated code against an element-wise SymPy
run, gradients against torch.autograd, and the CLI under every convention."""

import json

import numpy as np
import pytest
import torch
from checks import DEVICES, inputs, to_numpy
from conftest import derived

from derivations import CATALOGUE
from symflop import CONVENTIONS, Component
from symflop.cli import main
from symflop.core.model import Role
from validation.harness import run_passes
from validation.references import REFERENCES
from validation.sympy_eval import evaluate
from validation.tolerances import TOLERANCES

ALL = list(CATALOGUE)
NAMES = [n for n in ALL if isinstance(CATALOGUE[n](), Component)]  # composites have no code
WITH_GRADIENT_REFERENCE = [n for n in NAMES if REFERENCES[n].run is not None
                           and CATALOGUE[n]().differentiate is not None]


def test_every_component_has_a_reference():
    assert sorted(REFERENCES) == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_generated_numpy_and_torch_agree_with_sympy(name):
    c, d = derived(name)
    ref = REFERENCES[name]
    dims = ref.tiny or ref.sizes
    values = inputs(name, dims, seed=7)
    as_numpy = {k: (to_numpy(v) if isinstance(v, torch.Tensor) else v) for k, v in values.items()}
    np_out = run_passes(d, as_numpy, backend="numpy", seed=11)
    torch_out = run_passes(d, values, backend="torch", seed=11)
    env = dict(as_numpy)
    tainted = _depends_on_draws(d.programs.values())
    checked = 0
    for pass_name, program in d.programs.items():
        random_draws = {k: np_out[k] for k in np_out if k in _drawn(program)}
        sym = evaluate(program, {**env, **random_draws}, dims)
        env.update(sym)
        for key, want in sym.items():
            if key in np_out and key not in random_draws:
                np.testing.assert_allclose(np_out[key], want, rtol=1e-10, atol=1e-12,
                                           err_msg=f"{name}.{pass_name}: {key} (numpy)")
                if key not in tainted:
                    np.testing.assert_allclose(to_numpy(torch_out[key]), want, rtol=1e-10,
                                               atol=1e-12,
                                               err_msg=f"{name}.{pass_name}: {key} (torch)")
                checked += 1
    assert checked >= sum(1 for p in d.programs.values() if p.steps)


def _drawn(program):
    from symflop.core.functions import uniform
    return {st.lhs for st in program.steps if st.body.has(uniform)}


def _depends_on_draws(programs):
    """Tensors computed from random draws, in any pass (numpy and torch draw differently)."""
    from symflop.core.program import ref_name, tensor_refs
    tainted: set = set()
    for program in programs:
        tainted |= _drawn(program)
        for st in program.steps:
            if {ref_name(r) for r in tensor_refs(st.body, program.tensors)} & tainted:
                tainted.add(st.lhs)
    return tainted


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", WITH_GRADIENT_REFERENCE)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gradients_match_torch_autograd(name, seed, device):
    c, d = derived(name)
    values = inputs(name, seed=seed, device=device)
    ours = run_passes(d, values, backend="torch", seed=seed)
    # The reference sees our random draws (so both use the same mask), nothing else of ours.
    draws = {k: ours[k] for p in d.programs.values() for k in _drawn(p) if k in ours}
    theirs = REFERENCES[name].run({**values, **draws})
    grad_pass = c.grad_pass or next(iter(c.passes))
    fused = run_passes(d, values, backend="torch", passes=(grad_pass, "gradient"), seed=seed)
    tol = TOLERANCES[torch.float64]
    for key, expected in theirs.items():
        if key not in ours:  # an intermediate the lowered code computes but does not store
            assert c.tensors[key].role is Role.INTERMEDIATE, f"{name}: {key} not returned"
            continue
        torch.testing.assert_close(ours[key], expected, **tol, msg=f"{name}: {key}")
        if key.startswith("grad_") and key in fused:
            torch.testing.assert_close(fused[key], expected, **tol,
                                       msg=f"{name}: fused {key}")


@pytest.mark.parametrize("name", ALL)
def test_count_and_show_under_every_convention(capsys, name):
    for conv in CONVENTIONS:
        assert main(["count", name, "--json", "--convention", conv]) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["convention"] == conv and report["passes"]
        assert main(["show", name, "--convention", conv]) == 0
        assert name in capsys.readouterr().out
