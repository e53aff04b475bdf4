"""The package's layers: every import of asyncmq, including those inside functions, follows
the table below, and no import circle exists. The README's architecture section draws it.

Imports under `if TYPE_CHECKING:` are left out: they never run, they only name types.
Importing `a.b.c` also runs the package `a.b`, so that counts as an import of `a.b` too,
except from inside `a.b` itself (Python has begun it already) and for the top package,
whose `__init__` only gathers the public names.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path

import asyncmq

PACKAGE = Path(asyncmq.__file__).parent

#: Each module's layer, by the longest matching name.
LAYERS = {
    "asyncmq.errors": "model",
    "asyncmq.logging": "model",
    "asyncmq.version": "model",
    "asyncmq.backoff": "model",
    "asyncmq.schedule": "model",
    "asyncmq.job": "model",
    "asyncmq.transitions": "model",
    "asyncmq.dependencies": "model",
    "asyncmq.registry": "model",
    "asyncmq.core": "seam",
    "asyncmq.backends": "backends",
    "asyncmq.conf": "conf",
    "asyncmq.observability": "observability",
    "asyncmq.runtime": "runtime",
    "asyncmq.context": "engine",
    "asyncmq.options": "model",
    "asyncmq.deduplication": "model",
    "asyncmq.limits": "model",
    "asyncmq.worker": "engine",
    "asyncmq.scheduler": "engine",
    "asyncmq.queues": "engine",
    "asyncmq.results": "engine",
    "asyncmq.flow": "engine",
    "asyncmq.jobs": "engine",
    "asyncmq.tasks": "engine",
    "asyncmq": "apps",  # the top package, the CLI, the benchmark and the demo
}

#: What each layer may import (its own layer included where listed).
ALLOWED = {
    "model": {"model"},
    "seam": {"model", "seam"},
    "backends": {"model", "seam", "backends"},
    "conf": {"model", "conf"},
    "observability": {"model", "seam", "backends", "conf", "observability"},
    "runtime": {"model", "backends", "conf", "observability"},
    "engine": {"model", "seam", "backends", "conf", "runtime", "engine"},
    "apps": {"model", "seam", "backends", "conf", "observability", "runtime", "engine", "apps"},
}


def layer_of(module: str) -> str:
    for prefix in sorted(LAYERS, key=len, reverse=True):
        if module == prefix or module.startswith(prefix + "."):
            return LAYERS[prefix]
    raise AssertionError(f"{module} is in no layer: add it to LAYERS")


def module_sources(root: Path = PACKAGE) -> dict[str, str]:
    sources = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        sources[".".join(parts)] = path.read_text()
    return sources


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imported_names(tree: ast.AST, module: str, is_package: bool, known: set[str]) -> Iterator[str]:
    """Every module imported anywhere in `tree`, outside TYPE_CHECKING blocks: for
    `from package import name`, the submodule `package.name` if there is one, else `package`."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            skipped.update(id(child) for stmt in node.body for child in ast.walk(stmt))
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                yield submodule if submodule in known else base


def import_graph(sources: Mapping[str, str]) -> dict[str, set[str]]:
    """Module -> the package modules it runs when imported (see the module docstring)."""
    graph: dict[str, set[str]] = {}
    for module, text in sources.items():
        is_package = any(other.startswith(module + ".") for other in sources)
        targets: set[str] = set()
        for name in _imported_names(ast.parse(text), module, is_package, set(sources)):
            if name in sources:
                targets.add(name)
                parts = name.split(".")
                for depth in range(2, len(parts)):  # the packages it runs on the way
                    parent = ".".join(parts[:depth])
                    if not module.startswith(parent + ".") and module != parent:
                        targets.add(parent)
        targets.discard(module)
        graph[module] = targets
    return graph


def crossings(graph: Mapping[str, set[str]]) -> list[str]:
    found = []
    for module, targets in graph.items():
        layer = layer_of(module)
        for target in sorted(targets):
            if layer_of(target) not in ALLOWED[layer]:
                found.append(f"{module} ({layer}) imports {target} ({layer_of(target)})")
    return found


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
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


def test_every_import_of_the_package_follows_the_layer_table() -> None:
    assert crossings(import_graph(module_sources())) == []


def test_the_package_has_no_import_circle() -> None:
    assert cycles(import_graph(module_sources())) == []


def test_backends_and_settings_import_no_engine_and_settings_no_backend() -> None:
    graph = import_graph(module_sources())
    for module, targets in graph.items():
        if module.startswith(("asyncmq.backends", "asyncmq.conf")):
            assert not {t for t in targets if t.startswith(("asyncmq.queues", "asyncmq.worker"))}, module
        if module.startswith("asyncmq.conf"):
            assert not {t for t in targets if t.startswith(("asyncmq.backends", "asyncmq.observability"))}


def test_the_checks_catch_a_crossing_import_inside_a_function_and_a_circle() -> None:
    sources = module_sources()
    sources["asyncmq.backends.memory"] += "\n\ndef _later() -> None:\n    from asyncmq.conf import settings\n"
    assert crossings(import_graph(sources)) == [
        "asyncmq.backends.memory (backends) imports asyncmq.conf (conf)"
    ]
    sources = module_sources()
    sources["asyncmq.job"] += "\nimport asyncmq.schedule\n"
    sources["asyncmq.schedule"] += "\nfrom asyncmq import job\n"
    assert ["asyncmq.job", "asyncmq.schedule"] in cycles(import_graph(sources))


def test_imports_under_type_checking_are_left_out() -> None:
    source = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from asyncmq.queues import Queue\n"
    graph = import_graph({"asyncmq.job": source, "asyncmq.queues": ""})
    assert graph["asyncmq.job"] == set()
