"""``symflop estimate``'s options for a parallel step: tensor, sequence and pipeline
parallelism over ``--devices``, the program a GPU runs, and the precision.

The 3D table comes from the catalogue's entry point ``symflop.parallel`` (the engine
imports no catalogue): its layouts, device presets, networks and precisions.
"""

from __future__ import annotations

import json
from pathlib import Path

from symflop.errors import UsageError
from symflop.registry import plugin

_HALF = {"bf16-mixed": "bfloat16", "fp16-mixed": "float16"}
_AUTOCAST = {"bf16-autocast": "bfloat16", "fp16-autocast": "float16"}
PRECISIONS = ("fp32", *_HALF, *_AUTOCAST)


def add_arguments(e) -> None:
    e.add_argument("--target", choices=("cpu", "cuda"), default="cpu",
                   help="the program counted: the CPU's (traced), or the one torch runs on "
                        "CUDA where it differs (1-byte dropout masks); default cpu")
    e.add_argument("--precision", choices=PRECISIONS,
                   help="bf16-mixed, fp16-mixed: Megatron-LM's mixed precision, the model "
                        "traced in half precision (parameters, activations), float32 "
                        "master weights and optimizer state; bf16-autocast, "
                        "fp16-autocast: float32 parameters, the forward pass under "
                        "autocast (the --target's per-operation types: the CPU's, or "
                        "CUDA's); default: the "
                        "model as its factory builds it, counted as fp32")
    e.add_argument("--tensor-parallel", type=int, metavar="T",
                   help="one of T devices' share of each tensor-parallel layer (with "
                        "--devices: the 3D table)")
    e.add_argument("--sequence-parallel", action="store_true",
                   help="with --tensor-parallel: the rest of the layer cut along the "
                        "sequence (Korthikanti et al. 2022)")
    e.add_argument("--sp-implementation", choices=("torch", "megatron"), default="torch",
                   help="whose sequence parallelism: torch's parallelize_module keeps the "
                        "gathered input of a column-parallel layer, Megatron-LM its shard "
                        "(default torch)")
    e.add_argument("--tp-plan", metavar="FILE.json",
                   help="the tensor-parallel plan as torch writes it: module path or "
                        "pattern -> colwise, rowwise or sequence (default: the usual "
                        "attention and MLP projection names)")
    e.add_argument("--sequence-dim", type=int, default=1,
                   help="the activations' sequence axis (default 1: batch first)")
    e.add_argument("--pipeline-parallel", type=int, metavar="P", default=1,
                   help="with --devices: P pipeline stages (default 1)")
    e.add_argument("--micro-batches", type=int, metavar="M",
                   help="with --devices: micro-batches a step (default P)")
    e.add_argument("--pipeline-schedule", default="1f1b",
                   help="gpipe, 1f1b or interleaved-1f1b (default 1f1b)")
    e.add_argument("--chunks", type=int, default=1, metavar="V",
                   help="with interleaved-1f1b: chunks of layers a device holds")
    e.add_argument("--zero", default="ZeRO-1", help="DDP, ZeRO-1, ZeRO-2 or ZeRO-3 over "
                                                     "the data-parallel devices (default "
                                                     "ZeRO-1)")
    e.add_argument("--device-preset", default="h100", help="h100, h200 or a100 "
                                                            "(default h100)")
    e.add_argument("--network", default="dgx-h100",
                   help="the two-level network: dgx-h100 or dgx-a100 (default dgx-h100)")
    add_network_arguments(e)
    e.add_argument("--micro-batch-size", type=int, metavar="B",
                   help="the micro-batch the 3D table evaluates at (may be 1; the trace "
                        "runs at --at's B)")


def add_network_arguments(p) -> None:
    """Figures of your own for the two-level network, over the preset's."""
    p.add_argument("--intra-gbps", type=float, metavar="GB/S",
                   help="the link inside a node, GB/s per device each way (over "
                        "--network's)")
    p.add_argument("--inter-gbps", type=float, metavar="GB/S",
                   help="the link between nodes, GB/s per device each way")
    p.add_argument("--alpha-us", type=float, metavar="US",
                   help="microseconds a round of a collective, on both links")
    p.add_argument("--devices-per-node", type=int, metavar="K",
                   help="devices a node holds (the fast link's reach)")


def network(args, par):
    """The preset network with the figures given over it."""
    from dataclasses import replace
    net = par["networks"][args.network]
    given = {"intra": args.intra_gbps, "inter": args.inter_gbps,
             "per_node": args.devices_per_node}
    if any(v is not None and v <= 0 for v in (*given.values(), args.alpha_us)):
        raise UsageError("--intra-gbps, --inter-gbps, --alpha-us and --devices-per-node "
                         "must be positive")
    changes = {k: (v * 1e9 if k in ("intra", "inter") else v)
               for k, v in given.items() if v is not None}
    if args.alpha_us is not None:
        changes.update(alpha_intra=args.alpha_us * 1e-6, alpha_inter=args.alpha_us * 1e-6)
    if not changes:
        return net
    figures = ", ".join(f"{k} {v:g}" for k, v in given.items() if v is not None)
    if args.alpha_us is not None:
        figures += f", alpha {args.alpha_us:g} us"
    return replace(net, name=net.name + " (your figures)", **changes,
                   source=net.source + f"; over it, your figures: {figures}")


def parallel_requested(args) -> bool:
    """Whether the 3D table is asked for (rather than the data-parallel one)."""
    return bool(args.tensor_parallel and args.tensor_parallel > 1 and args.devices
                or args.pipeline_parallel > 1 or args.micro_batches
                or args.micro_batch_size)


def check_arguments(args) -> None:
    """Refuse, before any tracing, what the options cannot mean together."""
    if args.sequence_parallel and not args.tensor_parallel:
        raise UsageError("--sequence-parallel goes with --tensor-parallel")
    if args.tp_plan and not args.tensor_parallel:
        raise UsageError("--tp-plan goes with --tensor-parallel")
    if args.tensor_parallel is not None and args.tensor_parallel < 1:
        raise UsageError("--tensor-parallel must be 1 or more")
    if args.micro_batch_size is not None and args.micro_batch_size < 1:
        raise UsageError("--micro-batch-size must be 1 or more")
    if parallel_requested(args):
        if args.devices is None:
            raise UsageError("--pipeline-parallel, --micro-batches and --micro-batch-size "
                             "go with --devices N")
        t, p = args.tensor_parallel or 1, args.pipeline_parallel
        if args.devices % (t * p):
            raise UsageError(f"--devices {args.devices} is not a multiple of tensor x "
                             f"pipeline = {t} x {p}")
        par = plugin("symflop.parallel", "3D-parallel layouts")
        for flag, value, known in (("--device-preset", args.device_preset, par["clusters"]),
                                   ("--network", args.network, par["networks"]),
                                   ("--zero", args.zero, par["stages"]),
                                   ("--pipeline-schedule", args.pipeline_schedule,
                                    par["schedules"])):
            if value not in known:
                raise UsageError(f"{flag} {value!r}: known: {', '.join(known)}")
        par["check"](_layout(args, par))
        network(args, par)


def _layout(args, par):
    t, p = args.tensor_parallel or 1, args.pipeline_parallel
    return par["Layout"](args.devices // (t * p), t, p, args.micro_batches or p,
                         args.pipeline_schedule, args.chunks, args.zero,
                         args.precision or "fp32")


def prepare_model(model, args):
    """The model at the precision asked for (a half-precision copy on the meta device
    costs nothing)."""
    if args.precision in _HALF:
        import torch
        return model.to(getattr(torch, _HALF[args.precision]))
    return model


def autocast(args) -> str | None:
    """The element type torch.autocast runs in, if the precision asks for it."""
    return _AUTOCAST.get(args.precision)


def input_dtype(args) -> str:
    """A floating input follows the model into half precision."""
    if args.precision in _HALF and args.input_dtype.startswith("float"):
        return _HALF[args.precision]
    return args.input_dtype


def tensor_layout(args, model):
    """The tensor-parallel layout asked for, or None."""
    if not args.tensor_parallel:
        return None
    from symflop.estimate.tensor_parallel import layout
    plan = None
    if args.tp_plan:
        try:
            plan = json.loads(Path(args.tp_plan).read_text())
        except (OSError, ValueError) as e:
            raise UsageError(f"--tp-plan {args.tp_plan}: {e}") from None
    return layout(model, args.tensor_parallel, plan, args.sequence_parallel,
                  args.sequence_dim, args.sp_implementation)


def parallel_table(args, est, whole):
    """The 3D table for ``est`` (one tensor-parallel device's share, by block); ``whole``
    the unparallel estimate, for the model's FLOPs."""
    par = plugin("symflop.parallel", "3D-parallel layouts")
    sizes = {"B": args.micro_batch_size} if args.micro_batch_size else {}
    model_flops = whole.at(whole.flops("forward") + whole.flops("backward"), **sizes)
    return par["table"](est, [_layout(args, par)], par["clusters"][args.device_preset],
                        network(args, par), model_flops, sizes)
