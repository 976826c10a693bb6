"""``symflop estimate``: the command line of the training-step estimate."""

from __future__ import annotations

import re
import sys

from symflop.errors import UsageError, needs_torch
from symflop.registry import call_user, load_object

DEFAULT_IMPL = {"cpu": "for-loop", "cuda": "foreach"}   # torch.optim's default on each
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_HINT = re.compile(r"^\s*([A-Za-z][A-Za-z0-9_]*)\s*=\s*([0-9]{1,9})\s*$")


def parse_input(text: str) -> tuple:
    """"3x224x224" -> ("B", 3, 224, 224); names are sizes left symbolic ("Lx512"); the
    batch B comes first unless the text names it."""
    parts = [p.strip() for p in text.split("x")]
    shape: list = []
    for p in parts:
        if p.isascii() and p.isdigit() and len(p) <= 9 and int(p) > 0:
            shape.append(int(p))
        elif _NAME.match(p):
            shape.append(p)
        else:
            raise UsageError(f"--input {text!r}: each size is a positive integer or a name "
                             "(e.g. 3x224x224, or Lx512 for a sequence of L tokens)")
    names = [s for s in shape if isinstance(s, str)]
    if len(set(names)) != len(names):
        raise UsageError(f"--input {text!r}: a size name appears twice")
    return tuple(shape) if "B" in names else ("B", *shape)


def parse_hints(text: str | list[str] | None, shape: tuple) -> dict[str, int]:
    """"L=128,B=4" (or several such, one per ``--at``): the values the trace runs at (and
    the tables evaluate at)."""
    if isinstance(text, list):
        text = ",".join(text)
    out: dict[str, int] = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        m = _HINT.match(item)
        if not m:
            raise UsageError(f"--at {item.strip()!r}: expected NAME=VALUE with a positive "
                             "integer value (e.g. B=32)")
        name, value = m.group(1), int(m.group(2))
        if name not in shape:
            raise UsageError(f"--at {name}: not a size of --input ({', '.join(map(str, shape))})")
        if value < 2:
            raise UsageError(f"--at {name}={value}: trace at 2 or more (torch fixes sizes 0 "
                             "and 1); the counts hold for every size")
        if name in out:
            raise UsageError(f"--at {name}: given twice ({name}={out[name]}, {name}={value})")
        out[name] = value
    return out


def add_model_arguments(p) -> None:
    """The model and one sample's shape (``estimate`` and ``plan``)."""
    p.add_argument("model", nargs="?", metavar="MODULE:FACTORY",
                   help="a function returning a torch.nn.Module (or a module object), "
                        "e.g. validation.resnet50:resnet50")
    p.add_argument("--from", dest="from_spec", metavar="FILE.py:FACTORY",
                   help="the same, from a file of your own")
    p.add_argument("--input", required=True,
                   help="one sample's shape, e.g. 3x224x224 or Lx512; the batch B is put "
                        "first; names are sizes left symbolic")


def model_spec(args) -> str:
    """MODULE:FACTORY or FILE.py:FACTORY, whichever was given (exactly one)."""
    if bool(args.model) == bool(args.from_spec):
        raise UsageError("give the model as MODULE:FACTORY or with --from FILE.py:FACTORY "
                         "(one of the two)")
    if args.from_spec and not args.from_spec.rpartition(":")[0].endswith(".py"):
        raise UsageError(f"--from {args.from_spec!r}: expected FILE.py:FACTORY")
    return args.model or args.from_spec


def add_parser(sub) -> None:
    e = sub.add_parser("estimate", help="one training step of a torch model: FLOPs by layer "
                                        "and kind, memory (needs torch)")
    add_model_arguments(e)
    _add_step_arguments(e)
    _add_output_arguments(e)
    e.add_argument("--checkpoint", metavar="MODULE,...",
                   help="modules run under torch.utils.checkpoint: they keep only their "
                        "inputs, and their forward is counted again in the backward")
    _add_devices_arguments(e)
    from symflop.estimate.layout_cli import add_arguments
    add_arguments(e)
    _add_budget_arguments(e)
    e.add_argument("--timeline", metavar="FILE.png",
                   help="also draw the memory of the first and a later step, operation by "
                        "operation (the peak's timeline)")
    e.add_argument("--strict", action="store_true",
                   help="exit 1 if any operation of the step has no cost (after printing)")
    e.add_argument("--no-flop-counter", action="store_true",
                   help="leave out the FlopCounterMode column")
    e.set_defaults(func=cmd_estimate)


def _add_step_arguments(e) -> None:
    """The step: the input's type, the loss, the optimizer and its implementation, the
    schedule, the counting convention."""
    e.add_argument("--input-dtype", default="float32",
                   help="element type of the input (float32; int64 for token ids)")
    e.add_argument("--loss", default="cross-entropy",
                   help="a loss of the catalogue (default cross-entropy)")
    e.add_argument("--optimizer", default="adam",
                   help="an optimizer of the catalogue (default adam)")
    e.add_argument("--optimizer-impl", choices=("for-loop", "foreach", "fused"),
                   help="torch's implementation of the optimizer step, whose temporaries "
                        "the peak memory holds (default: torch's for the --target device, "
                        "for-loop on a CPU, foreach on CUDA)")
    e.add_argument("--schedule", help="a learning-rate schedule of the catalogue (default "
                                      "none)")
    e.add_argument("--convention", default="default", help="counting convention")


def _add_output_arguments(e) -> None:
    """What is printed, and at which sizes."""
    e.add_argument("--format", choices=("text", "markdown", "latex", "json"), default="text",
                   help="default text")
    e.add_argument("--standalone", action="store_true",
                   help="with --format latex: a whole document that compiles on its own")
    e.add_argument("--depth", type=int, help="merge layers below this depth of module path "
                                             "(1: the model's children)")
    e.add_argument("--at", dest="hints", metavar="B=8,L=...", action="append",
                   help="sizes the trace runs at and the tables evaluate at (default B=8; "
                        "repeat it or separate by commas)")


def _add_devices_arguments(e) -> None:
    """The step data-parallel on N devices (the distributed-step table)."""
    e.add_argument("--devices", type=int, metavar="N",
                   help="also the step trained data-parallel on N devices, per device, "
                        "for each ZeRO stage on each preset device (the distributed-step "
                        "table with this model's parameters, FLOPs and activations; "
                        "mixed-precision Adam; batch B per device)")
    e.add_argument("--alpha-ns", type=int, metavar="NS",
                   help="with --devices: seconds per round of a collective, in ns "
                        "(default 5000; fit yours with bench/collectives.py)")
    e.add_argument("--link-gbps", type=int, metavar="GBPS",
                   help="with --devices: each device's link, GB/s each way (default "
                        "NVLink's; e.g. 50 for 400 Gb/s InfiniBand)")


def _add_budget_arguments(e) -> None:
    """Checkpointing chosen under a memory budget (``symflop.estimate.budget``)."""
    e.add_argument("--checkpoint-budget", metavar="BYTES",
                   help="choose the modules to checkpoint: the fewest recomputed FLOPs "
                        "that keep the step's peak memory under BYTES (e.g. 24GB, 500MB, "
                        "1000000)")
    e.add_argument("--budget-on", choices=("peak", "sum"), default="peak",
                   help="with --checkpoint-budget: what stays under it, the step's peak "
                        "(default; the larger of the first and a later step's) or its "
                        "memory sum")
    e.add_argument("--checkpoint-granularity", choices=("children", "blocks"),
                   default="children",
                   help="with --checkpoint-budget: choose among the repeated blocks' "
                        "children (default) or the blocks")


def load_model(spec: str):
    """The user's model, built on the meta device where its factory allows (a 70B
    configuration needs no memory then); otherwise built as the factory builds it."""
    try:
        import torch
    except ImportError:
        raise needs_torch("symflop estimate") from None
    factory = load_object(spec, "a torch model")
    model = None
    if callable(factory):  # built on the meta device: no memory for its parameters
        try:
            with torch.device("meta"):
                model = factory()
        except Exception:  # noqa: BLE001, S110 - the factory needs real tensors: build it so
            model = None
    if model is None:
        model = call_user(factory, spec)
    if not isinstance(model, torch.nn.Module):
        raise UsageError(f"{spec} gave {type(model).__name__}, not a torch.nn.Module")
    return model


_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(GB|MB|KB|B)?\s*$", re.IGNORECASE)


def parse_bytes(text: str) -> int:
    """"24GB" (10^9), "500MB", "1000000" -> bytes."""
    m = _SIZE.match(text)
    if not m:
        raise UsageError(f"--checkpoint-budget {text!r}: bytes, e.g. 24GB, 500MB or 1000000")
    scale = {"GB": 10**9, "MB": 10**6, "KB": 10**3, "B": 1}[(m.group(2) or "B").upper()]
    value = int(float(m.group(1)) * scale)
    if value < 1:
        raise UsageError("--checkpoint-budget must be positive")
    return value


def _under_budget(args, model, shape, tp, parallel, options):
    """The estimate with the modules ``symflop.estimate.budget`` chooses checkpointed."""
    from symflop.estimate.budget import choose
    from symflop.estimate.step import estimate
    budget = parse_bytes(args.checkpoint_budget)
    rest = {k: v for k, v in options.items() if k != "checkpoint"}

    def run(checkpoint):
        return estimate(model, shape, flop_counter=False, tensor_parallel=tp,
                        by_block=parallel, checkpoint=checkpoint, **rest)

    c = choose(run, budget, args.checkpoint_granularity, args.budget_on)
    est = c.estimate
    chosen = ", ".join(c.modules) or "none"
    what = "peak" if c.on == "peak" else "memory"
    est.notes.append(f"checkpointed under a budget of {budget:,} bytes on the step's {what} "
                     f"(without: {c.without:,}): {chosen}; {what} {c.memory:,} bytes, "
                     f"{c.recomputed:,} FLOPs recomputed, the fewest of any choice among "
                     f"{c.candidates} candidates ({args.checkpoint_granularity})"
                     + (f"; its peak {c.peak:,} bytes" if c.on == "sum" else ""))
    return est


def _checked(args) -> tuple[str, dict, bool]:
    """The model's spec, the data-parallel network's options and whether a 3D layout was
    asked, once the arguments are checked together."""
    spec = model_spec(args)
    if args.depth is not None and args.depth < 1:
        raise UsageError("--depth must be 1 or more")
    network = {k: v for k, v in (("alpha_ns", args.alpha_ns),
                                 ("link_GBps", args.link_gbps)) if v is not None}
    if network and args.devices is None:
        raise UsageError("--alpha-ns and --link-gbps go with --devices")
    if any(v < 1 for v in network.values()):
        raise UsageError("--alpha-ns and --link-gbps must be positive")
    from symflop.estimate import layout_cli
    layout_cli.check_arguments(args)
    if args.checkpoint_budget and args.checkpoint:
        raise UsageError("--checkpoint-budget chooses the modules: leave --checkpoint out")
    parallel = layout_cli.parallel_requested(args)
    if args.devices is not None and not parallel:
        from symflop.estimate.distributed import check_devices
        check_devices(args.devices, args.optimizer)
    if parallel and network:
        raise UsageError("--alpha-ns and --link-gbps go with the data-parallel table; the "
                         "3D table takes --network")
    if args.timeline:
        import os
        folder = os.path.dirname(os.path.abspath(args.timeline))
        if not args.timeline.endswith(".png") or not os.path.isdir(folder):
            raise UsageError(f"--timeline {args.timeline}: a .png file in an existing "
                             "folder")
    return spec, network, parallel


def _options(args, spec: str, hints: dict[str, int]) -> dict:
    """``estimate``'s keyword arguments from the command line (but the layout's)."""
    from symflop.estimate import layout_cli
    return dict(loss=args.loss, optimizer=args.optimizer, schedule=args.schedule,
                convention=args.convention, hints=hints, name=spec.rpartition(":")[2],
                input_dtype=layout_cli.input_dtype(args),
                optimizer_impl=args.optimizer_impl or DEFAULT_IMPL[args.target],
                target=args.target,
                autocast=layout_cli.autocast(args),
                checkpoint=tuple(p.strip() for p in (args.checkpoint or "").split(",")
                                 if p.strip()))


def cmd_estimate(args) -> int:
    spec, network, parallel = _checked(args)
    shape = parse_input(args.input)
    hints = parse_hints(args.hints, shape)
    from symflop.estimate import layout_cli
    model = layout_cli.prepare_model(load_model(spec), args)
    from symflop.estimate.step import estimate
    from symflop.estimate.table import render_estimate
    options = _options(args, spec, hints)
    tp = layout_cli.tensor_layout(args, model)
    if args.checkpoint_budget:
        est = _under_budget(args, model, shape, tp, parallel, options)
    else:
        est = estimate(model, shape, flop_counter=not args.no_flop_counter and tp is None,
                       tensor_parallel=tp, by_block=parallel, **options)
    if args.timeline:
        if est.peak is None or not est.peak.curve:
            raise UsageError("--timeline: no timeline for this step")
        from symflop.estimate.timeline_plot import plot_timeline
        plot_timeline({"first step": est.first_step_peak, "later step": est.peak},
                      args.timeline, est.model)
    extra = []
    if parallel:
        whole = est if tp is None else estimate(model, shape, flop_counter=False, **options)
        extra.append(layout_cli.parallel_table(args, est, whole))
    elif args.devices is not None:
        from symflop.estimate.distributed import distributed_table
        extra.append(distributed_table(est, args.devices, args.convention, network))
    print(render_estimate(est, args.format, args.depth, args.standalone, extra), end="")
    if args.strict and est.unknown:
        from symflop.estimate.distributed import unknown_summary
        print(f"symflop: --strict: {unknown_summary(est)}", file=sys.stderr)
        return 1
    return 0
