"""The tree keeps its shape: imports point down, no cycles, no module too long to read.

Static (the AST of every module, function-level imports included), so it needs no database and
fails on the commit that breaks a rule, whoever runs it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("cli.py", "commands", "inbox", "connectors", "sandbox")
MAX_LINES = 420
# Generated from the models (`python -m inbox.store.gen`) or written by Alembic.
LONG_ALLOWED = ("inbox/store/tables.py", "inbox/store/migrations/")


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for top in PACKAGES:
        base = ROOT / top
        paths = [base] if base.is_file() else sorted(base.rglob("*.py"))
        for path in paths:
            rel = path.relative_to(ROOT).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """Project modules `name` imports anywhere in its body (resolved to the longest known module)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            targets.add(module)
            targets.update(f"{module}.{a.name}" for a in node.names)
    resolved: set[str] = set()
    for target in targets:
        parts = target.split(".")
        while parts and ".".join(parts) not in MODULES:
            parts.pop()
        found = ".".join(parts)
        # A submodule always imports its own package first (`from sandbox import media` in
        # sandbox.x): that edge is Python's, not a dependency.
        if parts and found != name and not name.startswith(found + "."):
            resolved.add(found)
    return resolved


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _top(name: str) -> str:
    return name.split(".")[0]


def test_no_import_cycle() -> None:
    # Package __init__ modules that only re-export are edges too: a cycle through them still
    # decides which module initialises first.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(GRAPH[v]):
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
                cycles.append(sorted(component))

    import sys

    sys.setrecursionlimit(10000)
    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    assert cycles == []


@pytest.mark.parametrize(
    ("importer", "forbidden"),
    [
        ("inbox", ("sandbox", "cli", "commands")),
        ("connectors", ("sandbox", "cli", "commands", "inbox")),
        ("commands", ("cli",)),
        ("sandbox", ("cli", "commands", "inbox")),
    ],
)
def test_imports_point_down(importer: str, forbidden: tuple[str, ...]) -> None:
    wrong = sorted(
        f"{name} imports {target}"
        for name, targets in GRAPH.items()
        if _top(name) == importer
        for target in targets
        if _top(target) in forbidden
    )
    assert wrong == []


# Imports point down these layers (a module may import its own layer and any below it).
LAYERS = (
    ("cli",),
    ("commands",),
    ("inbox.sync", "inbox.replies", "inbox.ingest", "inbox.intake"),
    ("inbox.tickets", "inbox.dedup"),
    ("inbox.store",),
    ("connectors",),
)
# The reply windows are the channels' reply rules and nothing else (no store, no HTTP): the queue
# filters on them ("window closing") and a ticket row shows them.
UPWARD_ALLOWED = {("inbox.tickets.queue", "inbox.replies.windows")}


def _layer(name: str) -> int | None:
    best: tuple[int, int] | None = None
    for depth, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (name == prefix or name.startswith(prefix + ".")) and (best is None or len(prefix) > best[1]):
                best = (depth, len(prefix))
    return None if best is None else best[0]


def test_imports_follow_the_layers() -> None:
    upward = sorted(
        f"{name} imports {target}"
        for name, targets in GRAPH.items()
        for target in targets
        if (a := _layer(name)) is not None and (b := _layer(target)) is not None and b < a
        and (name, target) not in UPWARD_ALLOWED
    )
    assert upward == []


def test_only_the_demo_imports_the_sandbox() -> None:
    importers = sorted(n for n, t in GRAPH.items() if _top(n) not in ("sandbox",) and any(_top(x) == "sandbox" for x in t))
    assert importers == ["commands.demo"]


def test_no_module_too_long() -> None:
    long = sorted(
        f"{path.relative_to(ROOT)}: {n} lines"
        for path in MODULES.values()
        if not str(path.relative_to(ROOT)).startswith(LONG_ALLOWED)
        and (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    )
    assert long == []


def test_the_graph_is_read() -> None:
    """The checks above see real edges (a parser that found none would pass them all)."""
    assert "inbox.store.models" in GRAPH["inbox.store.tables"] or "inbox.store.types" in GRAPH["inbox.store.tables"]
    assert any(_top(t) == "inbox" for t in GRAPH["cli"] | set().union(*(GRAPH[n] for n in GRAPH if _top(n) == "commands")))


def test_the_library_api_names_what_its_modules_define() -> None:
    import importlib
    import subprocess
    import sys

    import inbox

    for name, module in inbox.API.items():
        assert getattr(importlib.import_module(module), name) is getattr(inbox, name)
    # Importing the package loads none of them (the CLI's start stays light).
    loaded = subprocess.run([sys.executable, "-c", "import sys, inbox; print(sorted(m for m in sys.modules if m.startswith('inbox')))"],
                            capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert loaded.strip() == "['inbox']"
