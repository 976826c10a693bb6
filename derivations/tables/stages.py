"""The table of the pipeline's stages: every pass of the catalogue as written, optimized
and as the generated code runs it, with the bytes its backward pass reads at each."""

from __future__ import annotations

import derivations
from derivations.tables.options import Opts, derived
from symflop.core.model import Component
from symflop.core.stages import stage_name
from symflop.report.tables import Table


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
        _, d = derived(name)
        for k, p in enumerate(d.passes):
            saved = ("", "")
            if k == 0 and "backward" in d.passes:
                saved = tuple(o.poly(d.memory_at(s).bytes("saved", o.dtype))
                              for s in ("differentiated", "optimized"))
            t.add(name if k == 0 else "", p,
                  *(o.flops(d.counts(p, o.conv, s)) for s in ("written", "optimized", "code")),
                  *saved)
    return t


TABLES = {"catalogue-stages": catalogue_stages}
