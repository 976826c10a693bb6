"""Fingerprint what symflop prints and writes, to show a refactor changed none of it.

``python scripts/same_outputs.py --save F`` records, per command, the SHA-256 of its
standard output (and, for ``report``, of every text file it writes); ``--check F``
runs the same commands again and lists every one whose output differs. A refactor
that moves code without changing behaviour must leave this list empty.
The report's PDF and PNG files are left out: their bytes hold a creation time.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESNET = ["validation.resnet50:resnet50", "--input", "3x224x224"]

COMMANDS: dict[str, list[str]] = {
    "list": ["list"],
    "show batchnorm": ["show", "batchnorm"],
    "show adam --stages": ["show", "adam", "--stages"],
    "grad cross-entropy": ["grad", "cross-entropy"],
    "code batchnorm": ["code", "batchnorm"],
    "count layernorm": ["count", "layernorm"],
    "summary": ["summary"],
    "claims": ["claims"],
    "claims --json": ["claims", "--json"],
    "identities": ["identities"],
    "table all": ["table", "optimizer-comparison"],
    "example resnet50-memory": ["example", "resnet50-memory"],
    "validate": ["validate"],
    "validate numpy": ["validate", "--backend", "numpy", "--dtype", "float32"],
    "estimate resnet50": ["estimate", *RESNET, "--loss", "cross-entropy",
                          "--optimizer", "adam", "--at", "B=32"],
    "estimate resnet50 json": ["estimate", *RESNET, "--format", "json", "--depth", "2"],
    "estimate llama tp": ["estimate", "validation.zoo:llama", "--input", "L",
                         "--input-dtype", "int64", "--tensor-parallel", "2",
                         "--checkpoint", "model.model.layers.0", "--at", "B=2,L=16"],
    "estimate mixtral": ["estimate", "validation.zoo:mixtral", "--input", "L",
                         "--input-dtype", "int64", "--devices", "4", "--at", "B=2,L=16"],
    "plan llama": ["plan", "validation.zoo:llama", "--input", "L", "--at", "L=16",
                   "--devices", "8", "--global-batch", "64"],
}


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# How long a step took, which `plan` prints and no refactor should be blamed for.
_TIMING = re.compile(rb"in \d+\.\d+ s\b")


def _run(args: list[str]) -> str:
    done = subprocess.run([sys.executable, "-m", "symflop", *args], cwd=ROOT,
                          capture_output=True)
    return _digest(_TIMING.sub(b"<s>", done.stdout) + b"\n--rc %d--\n" % done.returncode)


def fingerprints(only: str = "") -> dict[str, str]:
    """Each command's output digest, and each text file of the report's.

    ``only`` keeps the commands whose name holds it ("report" for the report's files).
    """
    prints = {name: _run(args) for name, args in COMMANDS.items() if only in name}
    if only not in "report":
        return prints
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "report"
        subprocess.run([sys.executable, "-m", "symflop", "report", "--out", str(out)],
                       cwd=ROOT, capture_output=True, check=True)
        for path in sorted(out.rglob("*")):
            if path.is_file() and path.suffix not in {".pdf", ".png", ".log", ".aux"}:
                prints[f"report/{path.relative_to(out)}"] = _digest(path.read_bytes())
    return prints


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--save", type=Path)
    group.add_argument("--check", type=Path)
    parser.add_argument("--only", default="",
                        help="check only the commands whose name holds this")
    args = parser.parse_args()
    prints = fingerprints(args.only)
    if args.save:
        args.save.write_text(json.dumps(prints, indent=1, sort_keys=True) + "\n")
        print(f"{len(prints)} outputs fingerprinted")
        return 0
    before = json.loads(args.check.read_text())
    if args.only:
        report_ran = args.only in "report"
        before = {k: v for k, v in before.items()
                  if (report_ran if k.startswith("report/") else args.only in k)}
    changed = sorted(k for k in before.keys() | prints.keys()
                     if before.get(k) != prints.get(k))
    for name in changed:
        print(f"differs: {name}")
    print(f"{len(prints)} outputs, {len(changed)} differ")
    return 1 if changed else 0


if __name__ == "__main__":
    sys.exit(main())
