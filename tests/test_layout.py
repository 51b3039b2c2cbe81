"""The code's shape, checked: no import circle among the project's modules (counting imports made inside functions
and for type checking only), modules of a readable size, and the decode workers' imports free of torch and store."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

PACKAGES = ("clipsearch", "indexer", "search")
MAX_LINES = 350  # cli.py holds only the commands' declarations and calls, and may be longer
# Past the guide, each for a reason of its own (a bound, not a quota). segments: the format's one owner (layout,
# checksums, append, compaction, cut to the last commit). writer: the one writer's transaction coordinates the
# catalog's rows, the segments and the index files' changes (issue 30 gave each of those parts its own owner, the
# model's rule to ``embedding_model``).
LONGER = {"clipsearch.store.segments": 460, "clipsearch.store.writer": 410, "clipsearch.store.migrations": 360}


def _modules() -> dict[str, Path]:
    found = {"cli": ROOT / "cli.py"}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(module: str, path: Path, known: set[str]) -> set[str]:
    """Every project module ``module`` imports, wherever the import statement stands."""
    out: set[str] = set()
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".") if is_package else module.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            # "from package import submodule" reaches the submodule; "from package import name", the package
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module:
                out.add(name)
    return out


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
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

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_import_circle_among_the_projects_modules() -> None:
    modules = _modules()
    graph = {name: _imports(name, path, set(modules)) for name, path in modules.items()}
    # the checker sees imports
    assert graph["indexer.run"] >= {"indexer.plan", "indexer.engine", "indexer.pipeline", "indexer.write"}
    assert _cycles(graph) == []


def test_the_shared_core_imports_none_of_its_users() -> None:
    """The layers of clipsearch/app/__init__.py: the shared core (every clipsearch module but the application layer
    and the CLI's printing) imports neither indexer nor search nor the layers above it; indexer and search never
    import the application layer or the CLI's printing, and only the front ends import the printing."""
    modules = _modules()
    graph = {name: _imports(name, path, set(modules)) for name, path in modules.items()}
    above_core = ("indexer", "search", "clipsearch.app", "clipsearch.console", "cli")

    def within(name: str, prefixes: tuple[str, ...]) -> bool:
        return any(name == p or name.startswith(p + ".") for p in prefixes)

    core = [m for m in graph if m.startswith("clipsearch") and not within(m, ("clipsearch.app", "clipsearch.console"))]
    assert "clipsearch.store.catalog" in core and "clipsearch.app.index" not in core
    assert {m: sorted(i for i in graph[m] if within(i, above_core)) for m in core if any(
        within(i, above_core) for i in graph[m])} == {}
    lower = [m for m in graph if within(m, ("indexer", "search")) and not within(m, ("search.server", "search.routes"))]
    assert {m: sorted(i for i in graph[m] if within(i, ("clipsearch.app", "clipsearch.console", "cli")))
            for m in lower if any(within(i, ("clipsearch.app", "clipsearch.console", "cli")) for i in graph[m])} == {}
    printing_users = {m for m in graph if any(within(i, ("clipsearch.console",)) for i in graph[m])}
    assert printing_users <= {"cli"} | {m for m in graph if within(m, ("clipsearch.console",))}


def test_the_checker_finds_a_circle_made_only_for_type_checking() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]


def test_modules_stay_readable_in_size() -> None:
    long = {name: n for name, path in _modules().items()
            if name != "cli" and (n := len(path.read_text().splitlines())) > LONGER.get(name, MAX_LINES)}
    assert long == {}


def test_a_decode_worker_imports_neither_torch_nor_the_store() -> None:
    """What a decode worker process loads (the fork server's preload): no torch (seconds of start-up and hundreds
    of MB per worker) and no store code (workers hash; they never touch the index)."""
    code = ("import sys, indexer.decode_pool as p\n"
            "[__import__(m) for m in p.PRELOAD]\n"
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('clipsearch.store')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
