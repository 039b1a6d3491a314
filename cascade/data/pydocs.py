"""A corpus that needs no download: the docstrings of Python's standard library.

Each module, class and function with a docstring becomes one document whose id is its
dotted name (``json.decoder.JSONDecoder.decode``). Source files are parsed with ``ast``,
never imported.

>>> docs = python_docstrings(limit=5)
>>> len(list(docs))
5

:func:`python_module_docs` makes long documents instead: one per module, all its docstrings
at full length as one Markdown text (the module's, then each definition's under a heading
naming it), for passage indexes and long-document tests.

>>> doc = next(d for d in python_module_docs() if d.id == "heapq")
>>> doc.text.splitlines()[0], "## heapq.merge" in doc.text
('# heapq', True)
"""

from __future__ import annotations

import ast
import os
import sysconfig
from pathlib import Path
from typing import Iterator

from cascade.core.types import Doc

_SKIP_DIRS = {"site-packages", "dist-packages", "test", "tests", "idlelib", "turtledemo", "lib2to3", "__pycache__"}
_DEFINITIONS = (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def _module_files(root: Path) -> Iterator[tuple[str, Path]]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS and not d.startswith("."))
        for name in sorted(filenames):
            if name.endswith(".py"):
                path = Path(dirpath) / name
                parts = list(path.relative_to(root).with_suffix("").parts)
                if parts[-1] == "__init__":
                    parts.pop()
                if parts:
                    yield ".".join(parts), path


def _docstrings(module: str, tree: ast.Module) -> Iterator[Doc]:
    if doc := ast.get_docstring(tree):
        yield Doc(id=module, title=module, text=doc, meta={"kind": "module"})
    stack: list[tuple[str, ast.AST]] = [(module, tree)]
    while stack:
        prefix, node = stack.pop()
        for child in ast.iter_child_nodes(node):
            if isinstance(child, _DEFINITIONS):
                name = f"{prefix}.{child.name}"
                if doc := ast.get_docstring(child):
                    kind = "class" if isinstance(child, ast.ClassDef) else "function"
                    yield Doc(id=name, title=name, text=doc, meta={"kind": kind})
                stack.append((name, child))


def python_docstrings(root: str | os.PathLike[str] | None = None, limit: int | None = None) -> Iterator[Doc]:
    """Docstrings of the Python standard library (or of any source tree at ``root``)."""
    base = Path(root) if root is not None else stdlib_root()
    seen: set[str] = set()
    count = 0
    for module, path in _module_files(base):
        try:
            tree = ast.parse(path.read_bytes())
        except (SyntaxError, ValueError, OSError):
            continue  # a file this Python cannot parse is simply not part of the corpus
        for doc in _docstrings(module, tree):
            if doc.id in seen:  # e.g. a property's getter and setter
                continue
            seen.add(doc.id)
            yield doc
            count += 1
            if limit is not None and count >= limit:
                return


def _module_markdown(module: str, tree: ast.Module) -> str:
    """Every docstring of a module as Markdown: ``# module`` and its docstring, then each
    definition in source order under a heading whose depth follows its nesting."""
    parts = [f"# {module}"]
    if doc := ast.get_docstring(tree):
        parts.append(doc)

    def visit(prefix: str, node: ast.AST, depth: int) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, _DEFINITIONS):
                name = f"{prefix}.{child.name}"
                if doc := ast.get_docstring(child):
                    parts.append(f"{'#' * min(depth, 6)} {name}")
                    parts.append(doc)
                visit(name, child, depth + 1)

    visit(module, tree, 2)
    return "\n\n".join(parts)


def python_module_docs(root: str | os.PathLike[str] | None = None, min_words: int = 0,
                       limit: int | None = None) -> Iterator[Doc]:
    """One long document per standard-library module (or module under ``root``): id and title
    the dotted module name, text every docstring of the module as Markdown (see the module
    docstring); modules with fewer than ``min_words`` words of docstrings are left out."""
    base = Path(root) if root is not None else stdlib_root()
    count = 0
    for module, path in _module_files(base):
        try:
            tree = ast.parse(path.read_bytes())
        except (SyntaxError, ValueError, OSError):
            continue
        text = _module_markdown(module, tree)
        if "\n" not in text or len(text.split()) < min_words:
            continue
        yield Doc(id=module, title=module, text=text, meta={"kind": "module"})
        count += 1
        if limit is not None and count >= limit:
            return
