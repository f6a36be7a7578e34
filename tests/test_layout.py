"""The layout holds: no import circles among crypto/, policy/ and gateway/ (function-local imports included), no
feature reaches into another feature's routes, and the values the Redis stores share import no web framework.

The import graph is built from the source with ``ast`` (nothing is imported), so a circle hidden behind a
function-local import is found as well.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("crypto", "policy", "gateway")
FEATURES = ("scan", "status", "trust", "dispatch", "privacy")
# A feature's surface that only the app may mount: its routes and its install().
ROUTE_MODULES = ("routes", "reports", "feature")


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def _imports(name: str, path: Path, known: dict[str, Path]) -> Iterator[str]:
    """The project modules ``name`` imports, anywhere in its body."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text("utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # ``from pkg import mod`` imports the module pkg.mod when there is one.
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                yield target


def _graph() -> dict[str, set[str]]:
    known = _modules()
    return {name: set(_imports(name, path, known)) for name, path in known.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_graph_sees_the_modules_and_their_imports() -> None:
    graph = _graph()
    # A guard against a graph that is silently empty (the test below would then pass for nothing).
    assert "gateway.scan.scanner" in graph and "gateway.app" in graph
    assert "gateway.scan.store" in graph["gateway.scan.scanner"]
    assert {"gateway.scan.feature", "gateway.dispatch.feature"} <= graph["gateway.app"]


def test_the_cycle_finder_finds_a_circle_hidden_in_a_function() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circles_in_crypto_policy_and_gateway() -> None:
    assert _cycles(_graph()) == []


@pytest.mark.parametrize("feature", FEATURES)
def test_no_feature_imports_another_features_routes(feature: str) -> None:
    graph = _graph()
    foreign = {f"gateway.{other}.{module}" for other in FEATURES if other != feature for module in ROUTE_MODULES}
    reaching = {
        (name, target)
        for name, targets in graph.items()
        if name.startswith(f"gateway.{feature}.")
        for target in targets & foreign
    }
    assert reaching == set()


@pytest.mark.parametrize("module", ["gateway.principals", "gateway.keyspace", "gateway.errors", "gateway.settings",
                                    "gateway.intake", "gateway.scan.scanlog"])
def test_shared_values_import_neither_aiohttp_nor_redis(module: str) -> None:
    path = _modules()[module]
    imported = {
        alias.name.split(".")[0] if isinstance(node, ast.Import) else (node.module or "").split(".")[0]
        for node in ast.walk(ast.parse(path.read_text("utf-8")))
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert not imported & {"aiohttp", "redis"}
