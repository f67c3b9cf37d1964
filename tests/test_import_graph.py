"""The package's modules import each other without a cycle (TYPE_CHECKING imports included: a
cycle a reader has to follow is a cycle), and the registrar's parts know none of each other:
only the reconciler (and the worker that runs it) ties them together."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Set

PACKAGE = Path(__file__).resolve().parent.parent / "asterisk_consul"
# The registrar's parts: each may use the link, the notifications and the pure core, not
# another part.
PARTS = {"asterisk", "catalog", "checks", "kvsession", "maintenance", "retired", "service",
         "pending", "watch", "tokenfile"}
SHARED = {"link", "notify", "status", "choices", "wanted", "commands"}


def module_names() -> Dict[str, Path]:
    names = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        names[name] = path
    return names


def imports_of(name: str, path: Path, known: Dict[str, Path]) -> Set[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for alias in node.names:
                submodule = f"{module}.{alias.name}"
                found.add(submodule if submodule in known else module)
    return {m for m in found if m in known and m != name}


def import_graph() -> Dict[str, Set[str]]:
    known = module_names()
    return {name: imports_of(name, path, known) for name, path in known.items()}


def cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    found: List[List[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for successor in sorted(graph[node]):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_package_has_no_import_cycle():
    assert cycles(import_graph()) == []


def test_the_cycle_finder_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]


def test_the_registrars_parts_import_no_other_part():
    graph = import_graph()
    for part in PARTS:
        name = f"asterisk_consul.registrar.{part}"
        others = {m.rpartition(".")[2] for m in graph[name]
                  if m.startswith("asterisk_consul.registrar.")}
        assert others <= SHARED, f"{part} imports {sorted(others - SHARED)}"


def test_the_pure_core_does_no_io_and_reads_no_clock():
    """choices.py and wanted.py import no client, thread or socket and read no clock: their
    time comes in as an argument."""
    allowed = {"__future__", "dataclasses", "typing", "time", "asterisk_consul.health",
               "asterisk_consul.registration", "asterisk_consul.settings",
               "asterisk_consul.registrar.choices"}
    for core in ("choices", "wanted"):
        path = PACKAGE / "registrar" / f"{core}.py"
        tree = ast.parse(path.read_text(encoding="utf-8"))
        imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                    for alias in node.names}
        imported |= imports_of(f"asterisk_consul.registrar.{core}", path, module_names())
        imported |= {node.module for node in ast.walk(tree)
                     if isinstance(node, ast.ImportFrom) and not node.level and node.module}
        assert imported <= allowed, f"{core} imports {sorted(imported - allowed)}"
        clocks = [node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)
                  and node.attr in ("time", "monotonic") and getattr(node.value, "id", "") == "time"]
        assert clocks == [], f"{core} reads the clock"
