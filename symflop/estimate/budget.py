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
group.  The budget holds on the step's memory sum (parameters, gradients, optimizer
state, kept tensors), which savings add up in; the chosen set's peak (the timeline,
recomputation replayed) is reported beside it.  A budget on the peak itself is not
additive: the Pareto frontier of the sums misses subsets that lower the peak more.
"""

from __future__ import annotations

from dataclasses import dataclass

from symflop.errors import UsageError

GRANULARITIES = ("blocks", "children")


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


def candidates(est, granularity: str) -> list[str]:
    """Module paths to choose from, in the order they run: the repeated blocks, or their
    direct children."""
    if granularity not in GRANULARITIES:
        raise UsageError(f"unknown granularity {granularity!r} (known: "
                         f"{', '.join(GRANULARITIES)})")
    names = [ln.name for ln in est.lines]
    from symflop.estimate.step import module_list
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


def choose(run, budget: int, granularity: str = "children") -> Choice:
    """``run(checkpoint)``: the estimate with those modules checkpointed."""
    base = run(())
    memory = base.at(base.memory_bytes)
    names = candidates(base, granularity)
    if memory <= budget:
        return Choice((), memory, 0, budget, memory, len(names), base)
    every = run(tuple(names))
    recompute = {ln.name.removesuffix(" (recomputed)"): every.at(ln.flops)
                 for ln in every.lines if ln.name.endswith(" (recomputed)")}
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
            peak = max(est.at(est.peak.total), est.at(est.first_step_peak.total)) \
                if est.peak is not None else None
            return Choice(order, est.at(est.memory_bytes),
                          sum(est.at(ln.flops) for ln in est.lines
                              if ln.name.endswith(" (recomputed)")),
                          budget, memory, len(names), est, peak)
    raise UsageError("the savings of the candidates overlap: no choice verified under the "
                     "budget")
