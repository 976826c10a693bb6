"""Pipeline schedules (derivations.pipeline) against torch.distributed.pipelining's own
action tables, and the derived bubble and held activations against the papers'."""

from fractions import Fraction

import pytest

from derivations.pipeline import Action, order, point_to_point, run
from symflop.errors import UsageError

CASES = [(2, 2), (2, 4), (4, 4), (4, 8), (4, 12), (8, 16)]


def _torch_order(schedule: str, stages: int, micro: int, chunks: int) -> dict:
    """torch's table of each rank's actions (forward and full backward, in order), built
    without processes: its schedules compute the table from the sizes alone."""
    from torch.distributed.pipelining import schedules as s
    if schedule == "interleaved-1f1b":
        obj = s.ScheduleInterleaved1F1B.__new__(s.ScheduleInterleaved1F1B)
        obj.pp_group_size, obj.n_local_stages, obj._n_microbatches = stages, chunks, micro
        obj.number_of_rounds = max(1, micro // stages)
        obj.microbatches_per_round = micro // obj.number_of_rounds
        table = {r: obj._calculate_single_rank_operations(r) for r in range(stages)}
    else:
        cls = s.ScheduleGPipe if schedule == "gpipe" else s.Schedule1F1B
        obj = cls.__new__(cls)
        obj._num_stages, obj._n_microbatches = stages, micro
        table = obj._get_pipeline_order()
    kinds = {"FORWARD": "F", "FULL_BACKWARD": "B"}
    return {r: [Action(kinds[a.computation_type.name], a.microbatch_index,
                       a.stage_index // stages)
                for a in acts if a is not None and a.computation_type.name in kinds]
            for r, acts in table.items()}


@pytest.mark.parametrize("stages,micro", CASES)
@pytest.mark.parametrize("schedule,chunks", [("gpipe", 1), ("1f1b", 1),
                                             ("interleaved-1f1b", 2),
                                             ("interleaved-1f1b", 3)])
def test_each_rank_runs_torchs_order(schedule, chunks, stages, micro):
    """torch's action tables: the order a PipelineScheduleMulti (interleaved) runs, and
    the table a PipelineScheduleSingle (GPipe, 1F1B) draws of its order."""
    theirs = _torch_order(schedule, stages, micro, chunks)
    for rank in range(stages):
        ours = order(schedule, stages, micro, rank, chunks)
        if schedule == "1f1b" and rank == stages - 1:
            # torch's 1F1B table for its last stage (no warm-up forward passes) numbers
            # the forward passes from 1 to M, not 0 to M - 1 (it increments its counter
            # before the first one); the order it runs is ours (test below, on gloo)
            theirs[rank] = [Action(a.kind, a.micro - 1 if a.kind == "F" else a.micro)
                            for a in theirs[rank]]
        assert ours == theirs[rank], rank


@pytest.mark.parametrize("schedule,world", [("1f1b", 2), ("1f1b", 4), ("gpipe", 2)])
def test_each_rank_runs_the_derived_order_on_gloo(schedule, world):
    """Schedule1F1B and ScheduleGPipe run on gloo: the forward and backward passes of
    each rank's second step come in the derived order."""
    from validation.pipeline_checks import run as run_pipeline
    for rank, got in enumerate(run_pipeline(world, schedule)):
        ours = [a.kind for a in order(schedule, world, got["micro"], rank)]
        assert got["order"] == ours, rank


@pytest.mark.parametrize("stages,micro", CASES)
def test_bubble_is_the_papers(stages, micro):
    """Narayanan et al. (2021): (P - 1)/M for GPipe and 1F1B, (P - 1)/(v M) interleaved,
    whatever the backward pass costs against the forward."""
    for tb in (Fraction(2), Fraction(3, 2)):
        assert run("gpipe", stages, micro, backward=tb).bubble == Fraction(stages - 1, micro)
        assert run("1f1b", stages, micro, backward=tb).bubble == Fraction(stages - 1, micro)
        for v in (2, 3):
            got = run("interleaved-1f1b", stages, micro, v, backward=tb).bubble
            assert got == Fraction(stages - 1, v * micro)


@pytest.mark.parametrize("stages,micro", CASES)
def test_activations_held(stages, micro):
    """GPipe holds all M micro-batches; 1F1B's stage r at most P - r; interleaved, the
    first device (P - 1) 2 + (v - 1) P + 1 chunks of 1/v stage each (Korthikanti et al.
    2022: P (1 + (P - 1)/(P v)) micro-batches' worth)."""
    assert run("gpipe", stages, micro).in_flight == (micro,) * stages
    assert run("1f1b", stages, micro).in_flight == tuple(min(stages - r, micro)
                                                         for r in range(stages))
    for v in (2, 3):
        first = run("interleaved-1f1b", stages, micro, v).in_flight[0]
        if micro * v >= (stages - 1) * 2 + (v - 1) * stages + 1:
            assert Fraction(first, v) == stages * (1 + Fraction(stages - 1, stages * v))


def test_point_to_point_sends():
    # 4 stages, 8 micro-batches: the first sends 8 activations, the last 8 gradients
    assert point_to_point(4, 8, 1, 0) == {"forward": 8, "backward": 0}
    assert point_to_point(4, 8, 1, 3) == {"forward": 0, "backward": 8}
    # two chunks: rank 0 holds virtual stages 0 and 4 of 8
    assert point_to_point(4, 8, 2, 0) == {"forward": 16, "backward": 8}


def test_bad_schedules_are_refused():
    with pytest.raises(UsageError, match="unknown pipeline schedule"):
        order("zigzag", 2, 2, 0)
    with pytest.raises(UsageError, match="whole groups"):
        order("interleaved-1f1b", 4, 6, 0, 2)
    with pytest.raises(UsageError, match="one chunk"):
        run("1f1b", 4, 8, 2)
