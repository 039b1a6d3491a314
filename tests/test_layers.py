"""The package layers point one way (docs/ARCHITECTURE.md): every import of one cascade package
by another goes down or sideways, never up, and the package graph has no cycle. Imports inside
functions and under ``if TYPE_CHECKING:`` count too."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "cascade"

# lower numbers sit lower; a package may import its own layer or any layer below
LAYERS = {
    "core": 0,
    "text": 1, "data": 1, "filters": 1, "kernels": 1,
    "index": 2,
    "models": 3, "retrieve": 3, "rerank": 3, "fuse": 3, "llm": 3, "context": 3,
    "pipeline": 4, "evaluation": 4, "rag": 4, "train": 4,
    "server": 5, "cli": 5, "scale": 5, "adapters": 5,
}


def package_of(module: str) -> str | None:
    """``cascade.index.segment`` -> ``index``; the facade ``cascade`` itself -> None."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "cascade" else None


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """Every cascade module ``path`` imports, wherever the import statement is."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    me = module_name(path) if path.is_relative_to(ROOT) else path.stem
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("cascade"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = me.split(".")[: -node.level] if path.name != "__init__.py" else \
                    me.split(".")[: len(me.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("cascade"):
                out.add(target)
    return out


def package_edges() -> dict[tuple[str, str], list[str]]:
    """(importing package, imported package) -> the modules where it happens."""
    edges: dict[tuple[str, str], list[str]] = {}
    for path in sorted(ROOT.rglob("*.py")):
        source = package_of(module_name(path)) or ""
        if not source:
            continue  # the facade (cascade/__init__.py) re-exports every layer lazily
        for target in imports_of(path):
            dest = package_of(target)
            if dest and dest != source:
                edges.setdefault((source, dest), []).append(module_name(path))
    return edges


def test_every_package_has_a_layer() -> None:
    found = {package_of(module_name(p)) for p in ROOT.rglob("*.py")} - {None}
    assert found <= set(LAYERS), f"add {sorted(found - set(LAYERS))} to LAYERS (and to docs/ARCHITECTURE.md)"


def test_imports_never_point_up() -> None:
    upward = {f"{a} -> {b} (in {', '.join(sorted(set(where)))})"
              for (a, b), where in package_edges().items() if LAYERS[a] < LAYERS[b]}
    assert not upward, "imports against the layers:\n" + "\n".join(sorted(upward))


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of ``graph`` as [a, b, ..., a], or None (depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
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
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_no_import_cycle_between_packages() -> None:
    graph: dict[str, set[str]] = {}
    for a, b in package_edges():
        graph.setdefault(a, set()).add(b)
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle between packages: " + " -> ".join(cycle or [])


def test_the_checks_can_fail(tmp_path: Path) -> None:
    """An import hidden in a function is seen, and a cycle is found when there is one."""
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from cascade.index.index import Index\n    import cascade.core.errors\n")
    assert imports_of(module) == {"cascade.index.index", "cascade.core.errors"}
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}}) is None


def runtime_imports_of(path: Path) -> set[str]:
    """Every cascade module or name ``path`` imports at run time (inside functions too, but
    not under ``if TYPE_CHECKING:``): ``from cascade.a import b`` gives ``cascade.a`` and
    ``cascade.a.b``, since ``b`` may be a module."""
    out: set[str] = set()

    def walk(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.ImportFrom) and not child.level and (child.module or "").startswith("cascade"):
                out.add(child.module or "")
                out.update(f"{child.module}.{alias.name}" for alias in child.names)
            elif isinstance(child, ast.Import):
                out.update(alias.name for alias in child.names if alias.name.startswith("cascade"))
            walk(child)

    walk(ast.parse(path.read_text(encoding="utf-8")))
    return out


def module_graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in ROOT.rglob("*.py")}
    return {name: {t for t in runtime_imports_of(path) if t in modules and t not in (name, "cascade")}
            for name, path in modules.items() if name != "cascade"}


def test_no_import_cycle_between_modules() -> None:
    """No two modules import each other, even through an import hidden in a function."""
    cycle = find_cycle(module_graph())
    assert cycle is None, "import cycle between modules: " + " -> ".join(cycle or [])


def test_the_module_check_can_fail(tmp_path: Path) -> None:
    package = tmp_path / "cascade" / "pkg"
    package.mkdir(parents=True)
    (package / "a.py").write_text("from cascade.pkg.b import g\n")
    (package / "b.py").write_text("def g():\n    from cascade.pkg import a\n")
    module = package / "c.py"
    module.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from cascade.pkg.a import x\n")
    assert runtime_imports_of(module) == set()  # type-only imports make no cycle
    graph = {f"cascade.pkg.{p.stem}": runtime_imports_of(p) for p in (package / "a.py", package / "b.py")}
    assert "cascade.pkg.a" in graph["cascade.pkg.b"]  # the import inside g() is seen
    assert find_cycle(graph) == ["cascade.pkg.a", "cascade.pkg.b", "cascade.pkg.a"]
