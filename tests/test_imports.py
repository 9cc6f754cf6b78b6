"""No import cycles among the project's modules (lib/, models/, data/): the graph of
module-level imports is acyclic, so every module imports the same way in a fresh
interpreter whichever is imported first. Imports inside functions (deferred on
purpose, e.g. optional backends) are not edges."""
from __future__ import annotations

import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("lib", "models", "data")


def _modules() -> dict[str, str]:
    """module name -> file path for every .py under the packages."""
    found = {}
    for package in PACKAGES:
        for folder, _, files in os.walk(os.path.join(ROOT, package)):
            for name in files:
                if name.endswith(".py"):
                    rel = os.path.relpath(os.path.join(folder, name), ROOT)[:-3].replace(os.sep, ".")
                    found[rel[: -len(".__init__")] if rel.endswith(".__init__") else rel] = os.path.join(folder, name)
    return found


def _top_level_imports(path: str) -> set[str]:
    """Modules imported when the file runs: import statements outside def/class
    bodies (also inside top-level if/try)."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    names: set[str] = set()
    stack = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        for field in ("body", "orelse", "handlers", "finalbody"):
            stack.extend(getattr(node, field, []) or [])
    return names


def import_graph() -> dict[str, set[str]]:
    """module -> project modules whose code runs when it is imported (a module's
    parent packages too, except its own, which is already initialising)."""
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        own_parents = {name.rsplit(".", k)[0] for k in range(1, name.count(".") + 1)}
        edges = set()
        for target in _top_level_imports(path):
            parts = target.split(".")
            for k in range(1, len(parts) + 1):
                prefix = ".".join(parts[:k])
                if prefix in modules and prefix not in own_parents and prefix != name:
                    edges.add(prefix)
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a list of modules (first = last), or None."""
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        state[node] = 2
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_cycle_finder_finds_a_known_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_graph_sees_the_render_backends():
    graph = import_graph()
    assert "lib.render.constants" in graph["lib.render.torch_backend"]
    assert "lib.render.rasterize" not in graph["lib.render.torch_backend"]


def test_no_import_cycles():
    cycle = find_cycle(import_graph())
    assert cycle is None, " -> ".join(cycle)


def test_lib_never_imports_models_or_data():
    graph = import_graph()
    offenders = [(m, t) for m, targets in graph.items() if m.startswith("lib") for t in targets
                 if t.split(".")[0] in ("models", "data")]
    assert not offenders, offenders
