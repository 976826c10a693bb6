"""Activation checkpointing under a memory budget: the modules to recompute that cost the
fewest recomputed FLOPs while the step's memory stays under the budget (what torch's
``sac_ilp`` does from measurements, here from derived figures).

Each candidate module c saves, when checkpointed, what its operations keep for backward
less its inputs (which a checkpoint keeps), and costs the FLOPs of its forward run again
(torch stops recomputing once every kept tensor exists again).  Both come from two
estimates: none checkpointed and every candidate checkpointed.  Savings add up across
candidates that share no kept tensor; the chosen set is then estimated once more, and
the figures reported are that estimate's.  The search is exact: candidates with the same
saving and cost are grouped, and the Pareto frontier of (saving, cost) is built group by
group.  That is the budget on the step's memory sum (``on="sum"``: parameters,
gradients, optimizer state, kept tensors), which savings add up in.

The budget on the peak (``on="peak"``, the default: the larger of the first and a later
step's, ``symflop.estimate.timeline``) is not a sum: a checkpoint lowers the memory of
every moment between its module's forward and its backward, and adds its recomputation
at that backward.  The timeline is replayed with each candidate alone checkpointed
(the traced operations do not change, only the replay), which gives each candidate's
change of the memory at every moment of the step.  Those changes add up where the
candidates' kept tensors are disjoint; a 0-1 integer program over them finds the
cheapest set whose memory stays under the budget at every moment, and the replay of
that set decides (a set the replay puts over the budget is excluded and the program
solved again).
"""

from __future__ import annotations

from dataclasses import dataclass

from symflop.errors import UsageError

GRANULARITIES = ("blocks", "children")
BASES = ("peak", "sum")


@dataclass
class Choice:
    modules: tuple[str, ...]
    memory: int              # the step's memory with them checkpointed (bytes)
    recomputed: int          # FLOPs run again
    budget: int
    without: int             # the step's memory with nothing checkpointed
    candidates: int
    estimate: object = None
    peak: int | None = None  # the chosen step's larger peak, first or later step
    on: str = "sum"          # what the budget holds: "peak" or "sum"


def candidates(est, granularity: str) -> list[str]:
    """Module paths to choose from, in the order they run: the repeated blocks, or their
    direct children."""
    if granularity not in GRANULARITIES:
        raise UsageError(f"unknown granularity {granularity!r} (known: "
                         f"{', '.join(GRANULARITIES)})")
    names = [ln.name for ln in est.lines]
    from symflop.estimate.network import module_list
    blocks = module_list(names, least=1)
    if blocks is None:
        raise UsageError("checkpointing under a budget chooses among repeated blocks, and "
                         "the model has none")
    keep = 2 if granularity == "blocks" else 3
    out: list[str] = []
    for name in names:
        if not name.startswith(blocks + "."):
            continue
        rest = name[len(blocks) + 1:].split(".")
        if len(rest) >= keep - 1:
            path = ".".join([blocks, *rest[:keep - 1]])
            if path not in out:
                out.append(path)
    return out


def _inside(est, path: str) -> int:
    return sum(est.at(ln.saved_bytes) for ln in est.lines
               if ln.name == path or ln.name.startswith(path + "."))


def _frontier(items: list[tuple[int, int, str]]) -> list[tuple[int, int, tuple]]:
    """Pareto frontier of (saving, cost, chosen) over subsets of ``items``."""
    groups: dict = {}
    for saving, cost, name in items:
        groups.setdefault((saving, cost), []).append(name)
    front = [(0, 0, ())]
    for (saving, cost), names in groups.items():
        grown = list(front)
        for k in range(1, len(names) + 1):
            grown += [(s + k * saving, c + k * cost, chosen + tuple(names[:k]))
                      for s, c, chosen in front]
        grown.sort(key=lambda x: (-x[0], x[1]))
        front, best = [], None
        for entry in grown:                   # most saving first: keep strictly cheaper
            if best is None or entry[1] < best:
                front.append(entry)
                best = entry[1]
    return front


def choose(run, budget: int, granularity: str = "children", on: str = "peak") -> Choice:
    """``run(checkpoint)``: the estimate with those modules checkpointed; ``on``: what
    the budget holds, the step's peak or its memory sum."""
    if on not in BASES:
        raise UsageError(f"unknown budget basis {on!r} (known: {', '.join(BASES)})")
    return (_choose_peak if on == "peak" else _choose_sum)(run, budget, granularity)


def _largest_peak(est) -> int:
    return max(est.at(est.peak.total), est.at(est.first_step_peak.total))


def _recomputed(est) -> int:
    return sum(_recompute_costs(est).values())


def _recompute_costs(est) -> dict[str, int]:
    """Each checkpointed module's FLOPs run again, by its path."""
    return {ln.name.removesuffix(" (recomputed)"): est.at(ln.flops)
            for ln in est.lines if ln.name.endswith(" (recomputed)")}


def _choose_sum(run, budget: int, granularity: str) -> Choice:
    base = run(())
    memory = base.at(base.memory_bytes)
    names = candidates(base, granularity)
    if memory <= budget:
        return Choice((), memory, 0, budget, memory, len(names), base)
    every = run(tuple(names))
    recompute = _recompute_costs(every)
    items = [(_inside(base, n) - _inside(every, n), recompute.get(n, 0), n) for n in names]
    need = memory - budget
    fits = [e for e in _frontier([i for i in items if i[0] > 0]) if e[0] >= need]
    if not fits:
        least = every.at(every.memory_bytes)
        raise UsageError(f"no choice of modules brings the step under {budget:,} bytes: "
                         f"every candidate recomputed still needs {least:,}")
    for _saving, _cost, chosen in sorted(fits, key=lambda e: (e[1], -e[0])):
        order = tuple(n for n in names if n in chosen)
        est = run(order)
        if est.at(est.memory_bytes) <= budget:
            return Choice(order, est.at(est.memory_bytes), _recomputed(est),
                          budget, memory, len(names), est, _largest_peak(est))
    raise UsageError("the savings of the candidates overlap: no choice verified under the "
                     "budget")


def _moments(peaks) -> list[int]:
    """The memory at each moment of the two steps, aligned across checkpoint choices:
    a recomputation's moments are folded into the backward operation that needs them."""
    out = []
    for peak in peaks:
        pending = 0
        for phase, _where, nbytes in peak.curve:
            if phase == "recompute":
                pending = max(pending, nbytes)
                continue
            out.append(max(nbytes, pending))
            pending = 0
    return out


def _choose_peak(run, budget: int, granularity: str) -> Choice:
    import numpy as np

    base = run(())
    replay = base.replay
    names = candidates(base, granularity)
    without = _largest_peak(base)
    if without <= budget:
        return Choice((), without, 0, budget, without, len(names), base, without, "peak")
    cost = _recompute_costs(run(tuple(names)))
    start = np.array(_moments((base.peak, base.first_step_peak)), dtype=np.int64)
    change = {}
    for n in names:
        moments = np.array(_moments(replay.peaks((n,))), dtype=np.int64)
        if moments.shape != start.shape:
            raise UsageError(f"{n}: its checkpointed step does not align with the plain one")
        if (moments < start).any():
            change[n] = moments - start
    useful = [n for n in names if n in change]
    excluded: set = set()
    for _ in range(64):
        chosen = _cheapest(start, [change[n] for n in useful], [cost.get(n, 0) for n in useful],
                           budget, excluded)
        if chosen is None:
            raise UsageError(f"no choice of modules brings the step's peak under {budget:,} "
                             f"bytes (without checkpointing: {without:,})")
        order = tuple(n for n in names if n in {useful[i] for i in chosen})
        later, first = replay.peaks(order)
        if max(replay.at(later.total), replay.at(first.total)) <= budget:
            est = run(order)
            return Choice(order, _largest_peak(est), _recomputed(est), budget, without,
                          len(names), est, _largest_peak(est), "peak")
        excluded.add(frozenset(chosen))
    raise UsageError("the candidates' savings overlap too much to verify a choice under "
                     "the budget")


def _cheapest(start, changes: list, costs: list, budget: int, excluded: set):
    """The cheapest set of candidates (indices) whose summed changes keep every moment
    of ``start`` under ``budget``, not one of ``excluded``; None if there is none.  A
    0-1 integer program (scipy's ``milp``, HiGHS' branch and cut): a moment is a
    constraint only where the candidates could put it over the budget."""
    import numpy as np
    try:
        from scipy.optimize import Bounds, LinearConstraint, milp
    except ImportError:
        raise UsageError("a budget on the peak needs scipy (pip install scipy), or budget "
                         "the memory sum (--budget-on sum)") from None

    n = len(costs)
    if n == 0:
        return () if start.max() <= budget and frozenset() not in excluded else None
    change = np.stack(changes, axis=1)                    # moments x candidates
    worst = start + np.maximum(change, 0).sum(axis=1)
    rows = np.unique(np.column_stack([change, start])[worst > budget], axis=0)
    constraints = []
    if len(rows):
        constraints.append(LinearConstraint(rows[:, :n].astype(float), -np.inf,
                                            (budget - rows[:, n]).astype(float)))
    for chosen in excluded:                                # not that set again
        cut = np.array([1.0 if i in chosen else -1.0 for i in range(n)])
        constraints.append(LinearConstraint(cut[None, :], -np.inf, len(chosen) - 1))
    result = milp(np.array(costs, dtype=float), constraints=constraints,
                  integrality=np.ones(n), bounds=Bounds(0, 1),
                  options={"mip_rel_gap": 0.0})           # proven optimal, not near it
    if result.status == 2 or result.x is None:            # infeasible
        return None
    if result.status != 0:
        raise UsageError(f"the checkpointing search stopped: {result.message}")
    return tuple(i for i in range(n) if result.x[i] > 0.5)
