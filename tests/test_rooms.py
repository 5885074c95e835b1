"""The import rules of DESIGN.md's rooms, checked on the source (not by convention).

- simulators/ never imports drivers/ (a simulator must not share the driver's reading of the spec);
- drivers/ import only gateway's public modules, never simulators/ or another driver;
- gateway/ reaches drivers/ and simulators/ only from the CLI commands (and the driver registry
  by name, through importlib);
- gateway/rules/ does no I/O: no imports of networking, database or process modules.
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
