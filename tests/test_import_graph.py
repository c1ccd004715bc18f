"""fmnist's modules import each other without cycles, and each one imports on its own.

A cycle works only while the import order happens to suit it (a deferred import inside a
function, a name imported for type checking only) and breaks when someone moves a line.
Edges are every import of an fmnist module anywhere in a file, deferred ones and those for
type checkers included; only a module-level ``__getattr__`` (PEP 562 lazy re-exports of a
public name, resolved when the name is first used) is left out.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import fmnist

SRC = Path(fmnist.__file__).parents[1]
MODULES = {
    ".".join(p.relative_to(SRC).with_suffix("").parts[:-1] if p.name == "__init__.py"
             else p.relative_to(SRC).with_suffix("").parts): p
    for p in sorted((SRC / "fmnist").rglob("*.py"))
}


def imports_of(name: str, path: Path) -> set[str]:
    """The fmnist modules that ``name`` (at ``path``) imports, anywhere but a module __getattr__."""
    tree = ast.parse(path.read_text(), str(path))
    lazy = {id(n) for f in tree.body if isinstance(f, ast.FunctionDef) and f.name == "__getattr__"
            for n in ast.walk(f)}
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if id(node) in lazy:
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base else []))
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base)
    return {m for m in found if m in MODULES and m != name}


GRAPH = {name: imports_of(name, path) for name, path in MODULES.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = 2
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycles():
    cycle = find_cycle(GRAPH)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_known_edges_are_seen():
    # A deferred import and one under TYPE_CHECKING count as edges (the kinds cycles hide in).
    assert "fmnist.training.checkpoint" in GRAPH["fmnist.training.callbacks"]  # inside a method
    assert "fmnist.data._download" in GRAPH["fmnist.data._discover"]
    assert "fmnist.models.network" in GRAPH["fmnist.models.registry"]  # imported inside create_model


@pytest.mark.parametrize("name", [n for n in MODULES if n != "fmnist.__main__"])
def test_each_module_imports_alone_in_a_fresh_interpreter(name):
    subprocess.run([sys.executable, "-c", f"import {name}"], check=True, env={"PYTHONPATH": str(SRC), "PATH": ""},
                   capture_output=True)
