"""The import rules of DESIGN.md's rooms, checked on the source (not by convention).

- simulators/ never imports drivers/ (a simulator must not share the driver's reading of the spec);
- drivers/ import only gateway's public modules, never simulators/ or another driver;
- gateway/ reaches drivers/ and simulators/ only from the CLI commands (and the driver registry
  by name, through importlib);
- gateway/rules/ does no I/O: no imports of networking, database or process modules, and imports
  nothing from gateway outside gateway.rules (its errors are its own: gateway.rules.errors);
- no import cycle among the modules of simulators/core, nor among those of gateway/.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _imports(folder: str) -> Iterator[tuple[Path, str]]:
    for path in sorted((ROOT / folder).rglob("*.py")):
        if "core_pb" in path.parts:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield path, alias.name
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                yield path, node.module


def _top(name: str) -> str:
    return name.split(".")[0]


def test_simulators_never_import_drivers() -> None:
    bad = [f"{p.relative_to(ROOT)}: {m}" for p, m in _imports("simulators") if _top(m) == "drivers"]
    assert not bad, bad


def test_drivers_import_neither_simulators_nor_each_other() -> None:
    bad = []
    for path, module in _imports("drivers"):
        own = path.relative_to(ROOT / "drivers").parts[0]
        if _top(module) == "simulators":
            bad.append(f"{path.relative_to(ROOT)}: {module}")
        if _top(module) == "drivers" and len(module.split(".")) > 1 and module.split(".")[1] != own:
            bad.append(f"{path.relative_to(ROOT)}: {module}")
    assert not bad, bad


def test_gateway_reaches_drivers_and_simulators_only_from_commands() -> None:
    bad = [
        f"{p.relative_to(ROOT)}: {m}"
        for p, m in _imports("gateway")
        if _top(m) in ("drivers", "simulators") and "commands" not in p.parts
    ]
    assert not bad, bad


def test_rule_engine_imports_nothing_from_gateway_outside_rules() -> None:
    bad = []
    for path in sorted((ROOT / "gateway" / "rules").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative: resolve against gateway/rules/<sub>/...
                    here = path.relative_to(ROOT).parent.parts
                    up = here[: len(here) - (node.level - 1)]
                    names = [".".join(up + ((node.module,) if node.module else ()))]
                else:
                    names = [node.module or ""]
                names += [f"{names[0]}.{alias.name}" for alias in node.names]
            for name in names:
                if _top(name) == "gateway" and not (name + ".").startswith("gateway.rules."):
                    bad.append(f"{path.relative_to(ROOT)}: {name}")
    assert not bad, bad


def test_rule_engine_does_no_io() -> None:
    forbidden = {"socket", "asyncio", "aiohttp", "grpc", "sqlalchemy", "subprocess", "requests", "time"}
    bad = [
        f"{p.relative_to(ROOT)}: {m}"
        for p, m in _imports("gateway/rules")
        if _top(m) in forbidden or m == "datetime.datetime.now"
    ]
    assert not bad, bad
    for path in (ROOT / "gateway" / "rules").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert ".now(" not in text and "utcnow(" not in text, f"{path.name} reads the clock"


# ---------------------------------------------------------------- import cycles


def _module_graph(package: str) -> dict[str, set[str]]:
    """Module -> the modules of ``package`` it imports (absolute, relative, ``from pkg import mod``,
    inside functions and under TYPE_CHECKING alike: a cycle is a cycle wherever it is written)."""
    base = ROOT / package.replace(".", "/")
    paths: dict[str, Path] = {}
    for path in base.rglob("*.py"):
        if "core_pb" in path.parts:
            continue
        parts = path.relative_to(ROOT).with_suffix("").parts
        paths[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph: dict[str, set[str]] = {name: set() for name in paths}
    for name, path in paths.items():
        here = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    up = here[: len(here) - (node.level - 1)]
                    source = ".".join(up + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                targets = [source] + [f"{source}.{alias.name}" for alias in node.names]
            graph[name] |= {t for t in targets if t in paths and t != name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
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
    return found


def test_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert _cycles(graph) == [["a", "b", "c"]]


def test_no_import_cycle_among_simulators_core_modules() -> None:
    graph = _module_graph("simulators.core")
    assert "simulators.core.tables" in graph  # the leaf the ledger, identify and the fast path share
    assert not _cycles(graph)


def test_no_import_cycle_among_gateway_modules() -> None:
    graph = _module_graph("gateway")
    assert "gateway.outbox" in graph
    assert not _cycles(graph)


def test_simulators_core_leaf_modules_import_nothing_from_it() -> None:
    graph = _module_graph("simulators.core")
    for leaf in ("simulators.core.tables", "simulators.core.db_errors"):
        assert graph[leaf] == set(), leaf
