"""The package's shape: no import cycles among fsapps modules.

Every ``import`` / ``from ... import`` of an fsapps module is an edge, at module level or
inside a function (a function-level import only hides a cycle until the function runs); only
imports under ``if TYPE_CHECKING:`` are left out (they never run). A cycle is a strongly
connected component of more than one module.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "fsapps"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _statements(node: ast.AST) -> Iterator[ast.AST]:
    """Every statement under ``node`` except the bodies of ``if TYPE_CHECKING:``."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _type_checking(child):
            for other in child.orelse:
                yield other
                yield from _statements(other)
            continue
        yield child
        yield from _statements(child)


def imported(name: str, path: Path) -> set[str]:
    """The fsapps modules ``name`` imports (a ``from package import module`` names the
    module)."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found: set[str] = set()
    for node in _statements(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - (node.level - 1)]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            for alias in node.names:
                sub = f"{module}.{alias.name}"
                found.add(sub if sub in MODULES else module)
    return {m for m in found if m in MODULES and m != name}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_checker_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]


def test_no_import_cycles_among_fsapps_modules() -> None:
    graph = {name: imported(name, path) for name, path in MODULES.items()}
    assert graph["fsapps.server.app"], "the import graph is empty: the checker is broken"
    found = cycles(graph)
    edges = {" ".join(c): sorted(f"{a} -> {b}" for a in c for b in graph[a] if b in c)
             for c in found}
    assert not found, f"import cycles: {edges}"


# Modules that may be missing where the code runs: imported where they are used.
OPTIONAL = {"freeswitch", "nats", "pika"}


def function_level_imports(path: Path) -> list[str]:
    """``line: module`` of every import inside a function of ``path`` (``if TYPE_CHECKING:``
    left out)."""
    found: list[str] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _type_checking(child):
                continue
            if in_function and isinstance(child, ast.Import):
                found.extend(f"{child.lineno}: {a.name}" for a in child.names)
            elif in_function and isinstance(child, ast.ImportFrom):
                found.append(f"{child.lineno}: {child.module}")
            visit(child, in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef))

    visit(ast.parse(path.read_text(encoding="utf-8")), False)
    return found


def test_the_server_services_and_switch_commands_import_at_module_level() -> None:
    """A function-level import hides a dependency (and a cycle) until the function runs: the
    CTI server, the services and the switch-command modules import at their top, but for a
    module that may be missing where they run."""
    paths = [*sorted((PACKAGE / "server").rglob("*.py")),
             *sorted((PACKAGE / "services").rglob("*.py")),
             PACKAGE / "switch" / "commands.py", PACKAGE / "switch" / "nodecommands.py"]
    hidden = {str(p.relative_to(ROOT)): [i for i in function_level_imports(p)
                                         if i.split(": ")[1].split(".")[0] not in OPTIONAL]
              for p in paths}
    assert not {p: i for p, i in hidden.items() if i}


def test_the_events_and_domain_modules_import_at_module_level() -> None:
    """The same for fsapps/events and fsapps/domain: nats and pika stay lazy (only a process
    whose NATS / AMQP publisher runs loads them)."""
    paths = [*sorted((PACKAGE / "events").rglob("*.py")),
             *sorted((PACKAGE / "domain").rglob("*.py"))]
    hidden = {str(p.relative_to(ROOT)): [i for i in function_level_imports(p)
                                         if i.split(": ")[1].split(".")[0] not in OPTIONAL]
              for p in paths}
    assert not {p: i for p, i in hidden.items() if i}
