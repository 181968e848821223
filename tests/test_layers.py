"""The straight stack: no import circle among deploy/ modules; tasks sees only the API and the output."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "deploy"


def imports() -> dict[str, set[str]]:
    """deploy module -> the deploy modules it imports (at the top or inside a function)."""
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        name = ".".join(rel.parts).removesuffix(".__init__")
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("deploy"):
                if node.module == "deploy":
                    found |= {f"deploy.{a.name}" for a in node.names}
                else:
                    found.add(node.module)
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names if a.name.startswith("deploy")}
        graph[name] = {m for m in found if m != name}
    return graph


def test_no_import_circle() -> None:
    graph = imports()
    graph["deploy"] = set()  # the package's own __init__ re-exports the API: nothing below imports it back
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                raise AssertionError("import circle: " + " -> ".join([*path, node, nxt]))
            if nxt not in state:
                visit(nxt, [*path, node])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])


def test_tasks_import_only_the_api_and_the_output() -> None:
    assert imports()["deploy.tasks"] <= {"deploy.api", "deploy.output"}


def test_fleet_reaches_hosts_only_through_release() -> None:
    """fleet may name host's types (PrepareArgs, Facts) but calls no host operation: those go through release.Ops."""
    tree = ast.parse((PACKAGE / "fleet.py").read_text())
    calls = {
        n.attr
        for n in ast.walk(tree)
        if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == "host" and n.attr[0].islower()
    }
    assert calls == set(), calls
    assert "deploy.api" not in imports()["deploy.fleet"] and "deploy.api" not in imports()["deploy.release"]
