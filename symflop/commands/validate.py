"""``symflop validate``: the generated code of catalogue components, or of a component of
the user's own, run against torch by the installed validation suite."""

from __future__ import annotations

import argparse
import json
import sys

from symflop.commands.common import parse_dims
from symflop.errors import UsageError, needs_torch
from symflop.lower.backends import BACKENDS
from symflop.registry import catalogue, get_component, load_object, plugin, user_module_name


def cmd_validate(args: argparse.Namespace) -> int:
    try:
        import torch
    except ImportError:
        raise needs_torch("validate") from None
    suite = plugin("symflop.validation", "a validation suite")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available on this machine")
    if args.device == "cuda" and args.backend == "numpy":
        raise UsageError("--backend numpy runs on the CPU only (drop --device cuda)")
    dtype = {"float32": torch.float32, "float64": torch.float64}[args.dtype]
    if args.from_spec or args.reference or args.dims:
        rows = _validate_user(args, suite, dtype)
        print(json.dumps(suite.to_json(rows, args.device, dtype, args.backend), indent=2)
              if args.json else suite.format_rows(rows, _setting(args)))
        return 0 if all(r.ok for r in rows) else 1
    names = args.names or list(catalogue())
    for name in names:
        if ":" in name or name.endswith(".py"):
            raise UsageError(f"validate {name}: a component of a file goes with --from "
                             "FILE.py:NAME (and --reference FILE.py:FUNC)")
        if name not in catalogue():
            get_component(name)  # raises the usual one-line error, with suggestions

    def progress(k: int, n: int, name: str) -> None:
        print(f"[{k}/{n}] {name}", file=sys.stderr, flush=True)

    rows = suite.validate(names, args.device, dtype, progress, args.backend)
    print(json.dumps(suite.to_json(rows, args.device, dtype, args.backend), indent=2) if args.json
          else suite.format_rows(rows, _setting(args)))
    return 0 if all(r.ok for r in rows) else 1


def _setting(args) -> str:
    """What the validation ran on, said above its table (the dtype was said nowhere)."""
    default = " (the default; --dtype float32 for single precision)" \
        if args.dtype == "float64" else ""
    return f"on {args.device}, in {args.dtype}{default}, the {args.backend} backend"


def _validate_user(args, suite, dtype) -> list:
    """``validate --from FILE.py:NAME --reference FILE.py:FUNC``: the catalogue's checks."""
    if not args.from_spec:
        raise UsageError("--reference and --dims go with --from FILE.py:NAME (a component "
                         "of your own)")
    if args.names:
        raise UsageError("give catalogue names or --from, not both")
    c = get_component(args.from_spec)
    spec = args.reference
    path, _, name = args.from_spec.rpartition(":")
    if spec:
        if not spec.rpartition(":")[0].endswith(".py"):
            raise UsageError(f"--reference {spec!r}: expected FILE.py:FUNC")
        reference = load_object(spec, "a torch reference")
    else:  # a reference declared next to the component: REFERENCES = {NAME: run}
        declared = getattr(sys.modules.get(user_module_name(path)), "REFERENCES", None)
        reference = declared.get(name) if isinstance(declared, dict) else None
        spec = f"{path}:REFERENCES[{name!r}]"
        if reference is None:
            raise UsageError(f"--from {args.from_spec}: no torch reference to check it "
                             "against; give --reference FILE.py:FUNC, or a dict REFERENCES = "
                             f"{{{name!r}: FUNC}} in {path}: FUNC(values) -> results, the "
                             "component's names in and out (gradients as grad_<name>)")
    sizes = parse_dims(args.dims, tuple(c.dims), c.name) if args.dims else None
    try:
        return suite.validate_user(c, reference, args.device, dtype, args.backend, sizes)
    except (TypeError, ValueError) as e:
        raise UsageError(f"--reference {spec}: {e}") from None


def add_parser(sub: argparse._SubParsersAction) -> None:
    v = sub.add_parser("validate", help="check generated code against torch")
    v.add_argument("names", nargs="*", help="components (default: the whole catalogue)")
    v.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="where the code and torch run (default cpu)")
    v.add_argument("--dtype", choices=("float32", "float64"), default="float64",
                   help="precision of the inputs and of both sides (default float64)")
    v.add_argument("--backend", choices=BACKENDS, default="torch",
                   help="what runs the generated code: numpy, torch (eager, blocked "
                        "kernels) or torch-compiled (torch.compile); default torch")
    v.add_argument("--json", action="store_true", help="the rows as JSON")
    v.add_argument("--from", dest="from_spec", metavar="FILE.py:NAME",
                   help="a component of your own (needs --reference)")
    v.add_argument("--reference", metavar="FILE.py:FUNC",
                   help="torch reference of a --from component: run(values) -> results, "
                        "the component's names in and out, gradients as grad_<name>; or a "
                        "validation Reference")
    v.add_argument("--dims", help="sizes for a --from component, e.g. B=4,d=7 (default: "
                                  "small distinct sizes)")
    v.set_defaults(func=cmd_validate)
