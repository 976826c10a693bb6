"""``symflop plan``: the layouts of a run that fit the devices' memory, fastest first.

The model is estimated once per tensor-parallel degree and recomputation (each of one
device's shard, by repeated block); the catalogue's ``symflop.parallel`` entry point
searches the layouts over those estimates.
"""

from __future__ import annotations

import re
import sys
import time

from symflop.errors import UsageError
from symflop.estimate import layout_cli
from symflop.registry import plugin

_TOKENS = re.compile(r"^\s*([0-9]+)\s*([KMG]?)\s*$", re.IGNORECASE)


def add_parser(sub) -> None:
    p = sub.add_parser("plan", help="the layouts of a training run over N devices that fit "
                                    "their memory, ranked by predicted step time (needs "
                                    "torch)")
    from symflop.estimate.command import add_model_arguments
    add_model_arguments(p)
    p.add_argument("--input-dtype", default="int64",
                   help="element type of the input (default int64: token ids)")
    p.add_argument("--at", dest="hints", action="append", metavar="L=4096",
                   help="the sizes of a sample (the sequence length)")
    p.add_argument("--devices", type=int, required=True, metavar="N",
                   help="devices of the run")
    p.add_argument("--device-preset", default="h100",
                   help="h100, h200 or a100 (default h100)")
    p.add_argument("--network", default="dgx-h100",
                   help="the two-level network: dgx-h100 or dgx-a100 (default dgx-h100)")
    layout_cli.add_network_arguments(p)
    p.add_argument("--global-batch", required=True, metavar="SAMPLES|TOKENS",
                   help="samples a step, or tokens with a K, M or G suffix (binary: 4M is "
                        "4 x 2^20 tokens), divided by the sequence length")
    p.add_argument("--sequence", default="L", help="the name of the sequence size (for "
                                                   "a global batch in tokens; default L)")
    p.add_argument("--precision", default="bf16-mixed",
                   choices=layout_cli.PRECISIONS,
                   help="as for estimate (default bf16-mixed)")
    p.add_argument("--loss", default="cross-entropy",
                   help="a loss of the catalogue (default cross-entropy)")
    p.add_argument("--top", type=int, default=5, help="layouts to print (default 5)")
    p.add_argument("--sp-implementation", choices=("torch", "megatron"), default="torch",
                   help="whose sequence parallelism, with every t > 1 (default torch)")
    p.add_argument("--sequence-dim", type=int, default=1,
                   help="the activations' sequence axis (default 1: batch first)")
    p.set_defaults(func=cmd_plan)


def global_samples(text: str, hints: dict, sequence: str) -> int:
    """Samples a step from ``--global-batch``."""
    m = _TOKENS.match(text)
    if not m:
        raise UsageError(f"--global-batch {text!r}: a number of samples, or of tokens "
                         "with a K, M or G suffix (e.g. 1024 or 4M)")
    value, suffix = int(m.group(1)), m.group(2).upper()
    if not suffix:
        if value < 1:
            raise UsageError("--global-batch must be positive")
        return value
    tokens = value * {"K": 2**10, "M": 2**20, "G": 2**30}[suffix]
    if sequence not in hints:
        raise UsageError(f"--global-batch {text}: tokens need the sequence length "
                         f"(--at {sequence}=...)")
    if tokens % hints[sequence]:
        raise UsageError(f"--global-batch {text}: {tokens} tokens are not whole sequences "
                         f"of {hints[sequence]}")
    return tokens // hints[sequence]


def cmd_plan(args) -> int:
    from symflop.estimate.command import load_model, model_spec, parse_hints, parse_input
    spec = model_spec(args)
    par = plugin("symflop.parallel", "3D-parallel layouts")
    if args.device_preset not in par["clusters"]:
        raise UsageError(f"--device-preset {args.device_preset!r}: known: "
                         f"{', '.join(par['clusters'])}")
    if args.network not in par["networks"]:
        raise UsageError(f"--network {args.network!r}: known: {', '.join(par['networks'])}")
    if args.devices < 1 or args.top < 1:
        raise UsageError("--devices and --top must be positive")
    shape = parse_input(args.input)
    hints = parse_hints(args.hints, shape)
    samples = global_samples(args.global_batch, hints, args.sequence)
    model = layout_cli.prepare_model(load_model(spec), args)
    cluster, network = par["clusters"][args.device_preset], layout_cli.network(args, par)
    from symflop.estimate.step import estimate
    from symflop.estimate.tensor_parallel import layout
    options = dict(loss=args.loss, hints={"B": 2, **hints}, flop_counter=False,
                   name=spec.rpartition(":")[2], input_dtype=layout_cli.input_dtype(args),
                   target="cuda", by_block=True, autocast=layout_cli.autocast(args))
    began = time.perf_counter()
    whole = estimate(model, shape, **options)
    blocks = [ln.name for ln in whole.lines if ln.what == "block"]
    if len(blocks) < 2:
        raise UsageError("plan cuts the model at its repeated blocks, and it has none")
    estimates: dict = {}
    for t in (k for k in (1, 2, 4, 8, 16) if k <= network.per_node and args.devices % k == 0):
        for recompute in (False, True):
            checkpoint = tuple(blocks) if recompute else ()
            try:
                tp = layout(model, t, sequence=True, sequence_dim=args.sequence_dim,
                            implementation=args.sp_implementation) if t > 1 else None
                estimates[(t, recompute)] = estimate(model, shape, tensor_parallel=tp,
                                                     checkpoint=checkpoint, **options)
            except UsageError as e:
                estimates[(t, recompute)] = str(e)
    traced = time.perf_counter() - began
    result = par["search"](estimates, whole, args.devices, samples, cluster, network,
                           args.precision, {k: v for k, v in hints.items()})
    print(par["render_plan"](result, args.top, samples, traced))
    if not result.fits:
        print("symflop: no layout fits", file=sys.stderr)
        return 1
    return 0
