"""The engine's folders are layers: each imports only the layers below it."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "symflop"
# Lowest first; a module may import from its own layer and the layers before it.
LAYERS = [
    {"errors", "core"},
    {"cost"},
    {"rewrite"},
    {"lower"},
    {"cache", "derive", "compose", "registry"},
    {"report"},
    {"estimate"},
    {"cli", "commands", "api", "optim", "__main__", "__init__"},
]


def _layer(name: str) -> int:
    return next(n for n, layer in enumerate(LAYERS) if name in layer)


def _imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and \
                node.module.split(".")[0] == "symflop":
            parts = node.module.split(".")
            out |= {parts[1]} if len(parts) > 1 else {a.name for a in node.names}
        elif isinstance(node, ast.Import):
            out |= {a.name.split(".")[1] for a in node.names
                    if a.name.startswith("symflop.")}
    return out


def test_each_layer_imports_only_the_layers_below_it():
    checked = 0
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT)
        own = rel.parts[0] if len(rel.parts) > 1 else rel.stem
        for name in _imports(path):
            if name in ("errors",):
                continue
            assert _layer(name) <= _layer(own), f"{rel} imports symflop.{name}"
        checked += 1
    assert checked > 30


def test_the_engine_imports_neither_the_catalogue_nor_validation():
    for path in ROOT.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) \
                    else [node.module or ""]
                assert not any(n.split(".")[0] in ("derivations", "validation")
                               for n in names), path


def test_the_suite_and_its_subprocesses_write_no_bytecode(tmp_path):
    """Subprocesses the tests start (with this environment) once wrote __pycache__ into
    the repository; conftest turns bytecode off for them and for this process."""
    import os
    import subprocess
    import sys
    (tmp_path / "probe_module.py").write_text("X = 1\n")
    subprocess.run([sys.executable, "-c", "import probe_module"], cwd=tmp_path, check=True,
                   env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert sys.dont_write_bytecode and os.environ["PYTHONDONTWRITEBYTECODE"] == "1"
    assert not (tmp_path / "__pycache__").exists()


def test_subprocesses_given_their_own_environment_turn_bytecode_off():
    """A test that starts a subprocess with an environment of its own (not a copy of
    os.environ) must say PYTHONDONTWRITEBYTECODE, or the child writes __pycache__ into
    the repository (test_plots once did)."""
    import re
    from pathlib import Path
    for path in sorted(Path(__file__).parent.glob("test_*.py")):
        if path.name == Path(__file__).name:
            continue  # this test's own text
        for m in re.finditer(r"env=\{(.*?)\}", path.read_text(), re.S):
            body = m.group(1)
            if "**os.environ" not in body:
                assert "PYTHONDONTWRITEBYTECODE" in body, f"{path.name}: env={{{body[:60]}}}"


def test_the_quick_subset_leaves_out_only_modules_that_exist():
    """The slow modules named in conftest.py are test modules of this suite (a renamed
    module would silently join the quick subset)."""
    from pathlib import Path

    from conftest import SLOW_MODULES
    here = {p.stem for p in Path(__file__).parent.glob("test_*.py")}
    assert SLOW_MODULES <= here, SLOW_MODULES - here


def _readme_layout() -> list[str]:
    """The engine's entries of README's Layout, in order: each line indented six spaces
    under ``symflop/`` names one folder or a comma-separated list of modules."""
    return list(_readme_entries())


def test_readme_lists_the_layers_in_order():
    """README's Layout lists every layer of the engine, lowest first, as LAYERS does."""
    names = _readme_layout()
    layers = [_layer(n) for n in names]
    assert layers == sorted(layers), list(zip(names, layers))
    missing = set().union(*LAYERS) - set(names) - {"errors", "__main__", "__init__"}
    assert not missing, missing


def _readme_entries() -> dict[str, str]:
    """README's Layout text of each entry under ``symflop/``: its name and description,
    up to the next entry."""
    text = (ROOT.parent / "README.md").read_text()
    block = text[text.index("    symflop/"):text.index("    derivations/")]
    entries: dict[str, str] = {}
    names: list[str] = []
    for line in block.splitlines()[1:]:
        if line.startswith("      ") and not line.startswith("       "):
            entry = line.strip().split("  ")[0]  # "cli.py, commands/, api.py": one entry
            names = [n.strip().rstrip("/").removesuffix(".py") for n in entry.split(",")]
        for name in names:
            entries[name] = entries.get(name, "") + " " + line.strip()
    return entries


def _unnamed_modules(entries: dict[str, str], folder: Path) -> list[str]:
    words = set(re.findall(r"[A-Za-z_]+", entries.get(folder.name, "")))
    return sorted(m.stem for m in folder.glob("*.py")
                  if m.stem != "__init__" and m.stem not in words)


def test_readme_names_every_module_of_each_folder():
    """Each module of a folder in symflop/ is named in that folder's Layout entry, so the
    README cannot fall behind a split or a new module."""
    entries = _readme_entries()
    folders = sorted(p for p in ROOT.iterdir() if (p / "__init__.py").is_file())
    assert len(folders) >= 7
    unnamed = {f.name: _unnamed_modules(entries, f) for f in folders}
    assert not any(unnamed.values()), f"README's Layout entries leave out {unnamed}"


def test_the_readme_check_finds_an_unnamed_module():
    """With ``codegen`` taken out of its entry, the check names it."""
    entries = _readme_entries()
    entries["lower"] = entries["lower"].replace("codegen", "")
    assert _unnamed_modules(entries, ROOT / "lower") == ["codegen"]


def _module_graph() -> dict[str, set[str]]:
    """Every import between the modules of symflop/, derivations/ and validation/, at
    module level or inside a function (a lazy import is still a dependency)."""
    top = ROOT.parent
    mods = {}
    for pkg in ("symflop", "derivations", "validation"):
        for p in (top / pkg).rglob("*.py"):
            name = ".".join(p.relative_to(top).with_suffix("").parts)
            mods[name.removesuffix(".__init__")] = p
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for m, p in mods.items():
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                subs = [f"{node.module}.{a.name}" for a in node.names
                        if f"{node.module}.{a.name}" in mods]
                targets = subs if len(subs) == len(node.names) else [node.module, *subs]
            else:
                continue
            for t in targets:
                while t and t not in mods:
                    t = t.rpartition(".")[0]
                if t and t != m:
                    graph[m].add(t)
    return graph


def _circles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                group.add(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(group)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_circle():
    """No two modules import each other, directly or around a ring (prose and tables,
    generic_ops and network, parallel3d and plan, the estimate's step, table, cached and
    distributed were four circles)."""
    graph = _module_graph()
    assert len(graph) > 100 and graph["symflop.estimate.step"]  # the graph is read
    assert _circles(graph) == []


def test_the_circle_finder_finds_a_ring():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert _circles(graph) == [{"a", "b", "c"}]
