"""Imports point down: resbench's import graph, read from the source (imports inside functions included, those
under `if TYPE_CHECKING:` left out), against the layer table of docs/architecture.md."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ARCHITECTURE = REPO / "docs" / "architecture.md"
LAYER_ROW = re.compile(r"^\|\s*(\d+)\s*\|([^|]*)\|")  # | 3 | `trainer`, `watching` | what they are |


def layer_table(markdown: str, package: str = "resbench") -> dict[str, int]:
    """Module → layer, from the table's rows: `cli` → resbench.cli; `models/` → resbench.models. (the
    package and every module in it, marked by the trailing dot)."""
    layers = {}
    for line in markdown.splitlines():
        if match := LAYER_ROW.match(line):
            for name in re.findall(r"`([^`]+)`", match.group(2)):
                dotted = name.replace("/", ".")
                layers[package if dotted == package else f"{package}.{dotted}"] = int(match.group(1))
    return layers


def module_names(root: Path, package: str = "resbench") -> dict[str, Path]:
    """Dotted name → source file of every module of the package under `root`."""
    names = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def _type_checking_only(tree: ast.AST) -> set[int]:
    """ids of the nodes under an `if TYPE_CHECKING:` (they never run)."""
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped |= {id(inner) for inner in ast.walk(node)}
    return skipped


def _imported(module: str, is_package: bool, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The dotted names an import statement reaches: a `from X import name` may name a module or an object."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:
        anchor = module.split(".") if is_package else module.split(".")[:-1]
        anchor = anchor[: len(anchor) - (node.level - 1)]
        base = ".".join([*anchor, *([node.module] if node.module else [])])
    else:
        base = node.module or ""
    return [f"{base}.{alias.name}" for alias in node.names]


def import_graph(root: Path, package: str = "resbench") -> dict[str, set[str]]:
    """Module → the package's modules it imports. Importing a package's own parent package (which Python has
    initialised before the module) is no edge."""
    modules = module_names(root, package)
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skipped = _type_checking_only(tree)
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)) or id(node) in skipped:
                continue
            for target in _imported(name, path.name == "__init__.py", node):
                while target not in modules and "." in target:  # `from pkg.mod import function` → pkg.mod
                    target = target.rsplit(".", 1)[0]
                if target in modules and target != name and not name.startswith(f"{target}."):
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while not component or component[-1] != node:
                component.append(stack.pop())
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def layer_of(module: str, layers: dict[str, int]) -> int | None:
    """The layer of `module`: its own row, or that of a package (`models/`) holding it."""
    if module in layers:
        return layers[module]
    return next((layer for name, layer in layers.items() if name.endswith(".") and f"{module}.".startswith(name)),
                None)


def layer_problems(graph: dict[str, set[str]], layers: dict[str, int]) -> list[str]:
    """One line per module missing from the table, per import from a higher layer, and per import of a
    layer-0 module (which imports nothing of the package's)."""
    problems = [f"{module} has no layer in the table" for module in sorted(graph) if layer_of(module, layers) is None]
    for module, targets in sorted(graph.items()):
        own = layer_of(module, layers)
        for target in sorted(targets):
            theirs = layer_of(target, layers)
            if own is None or theirs is None:
                continue
            if theirs > own:
                problems.append(f"{module} (layer {own}) imports {target} (layer {theirs})")
            elif own == 0:
                problems.append(f"{module} (layer 0) imports {target}: layer 0 imports nothing of ours")
    return problems


# ---- resbench itself -----------------------------------------------------------------------------------------


def test_the_table_names_every_layer_and_only_modules_that_exist():
    layers = layer_table(ARCHITECTURE.read_text(encoding="utf-8"))
    assert sorted(set(layers.values())) == [0, 1, 2, 3, 4, 5]
    modules = module_names(REPO)
    assert [name for name in layers if name.rstrip(".") not in modules] == []


def test_resbench_has_no_import_cycle():
    assert cycles(import_graph(REPO)) == []


def test_every_import_points_down_the_layers():
    layers = layer_table(ARCHITECTURE.read_text(encoding="utf-8"))
    assert layer_problems(import_graph(REPO), layers) == []


def test_import_resbench_loads_no_torch():
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", "import resbench"], capture_output=True,
                          text=True, check=True, cwd=REPO)
    imported = [line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if "|" in line]
    assert "resbench" in imported
    assert [name for name in imported if name.split(".")[0] in ("torch", "hydra", "pandas")] == []


# ---- the checks can fail --------------------------------------------------------------------------------------

PLANTED_TABLE = """
| layer | modules | what |
|---|---|---|
| 2 | `top` | |
| 1 | `middle`, `sub/` | |
| 0 | `base` | |
"""


def plant(root: Path, files: dict[str, str]) -> Path:
    """A package `resbench` under `root` with these modules (path → source)."""
    for relative, source in {"resbench/__init__.py": "", **files}.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source, encoding="utf-8")
    return root


def test_a_cycle_through_a_function_local_import_is_found(tmp_path):
    root = plant(tmp_path, {
        "resbench/top.py": "from resbench import middle\n",
        "resbench/middle.py": "def late():\n    from .top import thing\n    return thing\n",
        "resbench/base.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from resbench import top\n",
    })
    graph = import_graph(root)
    assert graph["resbench.middle"] == {"resbench.top"}
    assert graph["resbench.base"] == set()  # under TYPE_CHECKING: never runs
    assert cycles(graph) == [["resbench.middle", "resbench.top"]]


def test_an_upward_import_and_an_unplaced_module_are_named(tmp_path):
    root = plant(tmp_path, {
        "resbench/top.py": "import resbench.middle\n",
        "resbench/middle.py": "from . import base\n",
        "resbench/sub/__init__.py": "",
        "resbench/sub/deep.py": "from ..top import run\n",
        "resbench/base.py": "from resbench.sub import deep\n",
        "resbench/stray.py": "",
    })
    layers = layer_table(PLANTED_TABLE)
    layers["resbench"] = 2
    assert layer_problems(import_graph(root), layers) == [
        "resbench.stray has no layer in the table",
        "resbench.base (layer 0) imports resbench.sub.deep (layer 1)",
        "resbench.sub.deep (layer 1) imports resbench.top (layer 2)",
    ]
    assert cycles(import_graph(root)) == [["resbench.base", "resbench.middle", "resbench.sub.deep",
                                           "resbench.top"]]


@pytest.mark.parametrize("source, imported", [
    ("from resbench.report.load import load\n", {"resbench.report.load"}),  # a function of a module
    ("from resbench.report import load\n", {"resbench.report.load"}),  # a module of a package
    ("from resbench.report import ReportInputError\n", {"resbench.report"}),  # a name of the package
    ("import resbench.report.load as loader\n", {"resbench.report.load"}),
])
def test_each_spelling_of_an_import_is_an_edge(tmp_path, source, imported):
    root = plant(tmp_path, {"resbench/report/__init__.py": "", "resbench/report/load.py": "",
                            "resbench/cli.py": source})
    assert import_graph(root)["resbench.cli"] == imported
