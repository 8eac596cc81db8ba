"""Imports between flowsink's modules: no cycle, and no module importing a layer above its own.

The graph is read from the source with ``ast``: every ``import`` and ``from ... import`` anywhere in a file (in
functions and under ``TYPE_CHECKING`` too: a cycle hidden in a function is still a cycle), relative imports
resolved, ``from package import module`` an edge to that module, and importing a package an edge to its
``__init__``. Imports by string (``importlib.import_module``) are not seen.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "ingest" / "flowsink"

# Layers, lowest first: a module may import its own layer and the ones below, never one above. A line holds the
# top-level names (module or package under flowsink/) of one layer; a name in no line is checked for cycles only.
LAYERS: list[tuple[str, ...]] = [
    ("errors", "metrics"),  # import no flowsink module
    ("settings",),  # the settings machinery every component's settings use
    ("log",),  # counts the lines it suppresses in metrics
    ("bulk",),  # the reference bulk-line encoding: pure Python, what the C writers are tested against
    ("native",),  # the C extension and its loader
    ("enrich",),  # what is added to documents: applied by the normalisers and the C writers alike
    ("normalize",),  # records -> ECS documents (with the C writers where they are built)
    ("decode",),  # datagrams -> records, handed to normalize; the C writers do both at once
    ("queue",),
    ("receive",),  # UDP -> queue
    ("sinks",),  # outputs behind the sink seam
    ("pipeline",),  # queue -> decode -> sinks
    ("api",),  # the flows API
    ("server",),  # /metrics /healthz /readyz and the API's routes
    ("config",),  # the composition root: every component's settings, one section each
    ("processes",),  # the node's child processes, composed from the configuration
    ("node", "generate", "stack"),  # flowsink run; test traffic; the whole stack
    ("cli",),
]
# Command-line modules (a `cli.py` or `__main__.py` anywhere) are entry points: they sit above every layer.
ENTRY_POINTS = ("cli", "__main__")


def read_graph(package: Path) -> dict[str, set[str]]:
    """Module name (``flowsink.decode.sflow``; a package is its ``__init__``) -> the package's modules it imports."""
    files = {}
    for path in package.rglob("*.py"):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        files[".".join(parts[:-1] if is_package else parts)] = (path, is_package)

    def known(name: str) -> str | None:  # the module itself, or the nearest package holding the name
        while name and name not in files:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for module, (path, is_package) in files.items():
        here = module if is_package else module.rpartition(".")[0]
        imported: set[str | None] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                imported.update(known(alias.name) for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = here.split(".")[: len(here.split(".")) - (node.level - 1)]
                    base = ".".join([*parent, *([node.module] if node.module else [])])
                for alias in node.names:
                    name = f"{base}.{alias.name}"
                    imported.add(name if name in files else known(base))
        graph[module] = {name for name in imported if name is not None and name != module}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (``[a, b, ..., a]``) per strongly connected group of modules (Tarjan's algorithm)."""
    order: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def visit(module: str) -> None:
        order[module] = low[module] = len(order)
        stack.append(module)
        for target in sorted(graph.get(module, ())):
            if target not in order:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in stack:
                low[module] = min(low[module], order[target])
        if low[module] == order[module]:
            group = []
            while not group or group[-1] != module:
                group.append(stack.pop())
            if len(group) > 1:
                groups.append(sorted(group))

    for module in sorted(graph):
        if module not in order:
            visit(module)
    return [_cycle_in(graph, set(group)) for group in groups]


def _cycle_in(graph: dict[str, set[str]], group: set[str]) -> list[str]:
    """A path from the group's first module back to it, through the group only (breadth first: a shortest one)."""
    start = min(group)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for module in frontier:
            for target in sorted(graph[module] & group):
                if target == start:
                    return [*paths[module], start]
                if target not in paths:
                    paths[target] = [*paths[module], target]
                    following.append(target)
        frontier = following
    raise AssertionError(f"no cycle in {sorted(group)}")


def top(module: str) -> str:
    return module.split(".")[1] if "." in module else module


def layer_of(module: str) -> int | None:
    if module.rpartition(".")[2] in ENTRY_POINTS:
        return len(LAYERS)
    return next((rank for rank, names in enumerate(LAYERS) if top(module) in names), None)


def climbing(graph: dict[str, set[str]]) -> Iterator[tuple[str, str]]:
    """(importer, imported) where the imported module's layer is above the importer's."""
    for module, targets in sorted(graph.items()):
        for target in sorted(targets):
            low, high = layer_of(module), layer_of(target)
            if low is not None and high is not None and high > low:
                yield module, target


GRAPH = read_graph(PACKAGE)
TOP_NAMES = sorted({top(module) for module in GRAPH if "." in module})


@pytest.mark.parametrize("name", TOP_NAMES)
def test_no_import_cycle_through(name: str) -> None:
    found = [cycle for cycle in cycles(GRAPH) if any(top(module) == name for module in cycle)]
    assert not found, "import cycles:\n" + "\n".join("  " + " -> ".join(cycle) for cycle in found)


@pytest.mark.parametrize("name", [name for names in LAYERS for name in names])
def test_no_import_climbs_a_layer_from(name: str) -> None:
    found = [(module, target) for module, target in climbing(GRAPH) if top(module) == name]
    assert not found, "imports of a higher layer (LAYERS, lowest first):\n" + "\n".join(
        f"  {module} (layer of {top(module)!r}) imports {target} (layer of {top(target)!r})"
        for module, target in found
    )


def test_every_layer_name_is_in_the_package() -> None:
    """A misspelt or removed name would silently check nothing."""
    assert {name for names in LAYERS for name in names} <= set(TOP_NAMES)


def test_the_graph_sees_every_kind_of_import(tmp_path: Path) -> None:
    """Imports in functions, under TYPE_CHECKING and relative ones count; a package import means its __init__."""
    package = tmp_path / "flowsink"
    (package / "low").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "low" / "__init__.py").write_text("from . import helper\n")
    (package / "low" / "helper.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..high import Thing\n"
    )
    (package / "high.py").write_text("import os\n\ndef later():\n    from flowsink.low import helper\n")
    (package / "other.py").write_text("import flowsink.low\nfrom .low.helper import name\n")
    graph = read_graph(package)
    assert graph == {
        "flowsink": set(),
        "flowsink.low": {"flowsink.low.helper"},
        "flowsink.low.helper": {"flowsink.high"},
        "flowsink.high": {"flowsink.low.helper"},
        "flowsink.other": {"flowsink.low", "flowsink.low.helper"},
    }
    assert cycles(graph) == [["flowsink.high", "flowsink.low.helper", "flowsink.high"]]
