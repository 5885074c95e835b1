"""The fault catalogue: every fault as an automated scenario with a verdict and figures (``make faults``).

Owns the plumbing, not the scenarios:

- :class:`Scenario` and the registry (:data:`REGISTRY`, filled by the :func:`scenario` decorator
  in the scenario modules under :mod:`simulators.faults.scenarios`, imported by
  :func:`load_scenarios`);
- :class:`Verdict` (``PASS``, ``FAIL``, ``NOT RUN``) and :class:`Outcome`, what a scenario
  returns: the verdict, its figures (plain JSON values) and a note (why NOT RUN; what failed);
- :func:`run_one` / :func:`run_catalogue`: each scenario in a fresh work dir under a time limit;
  an exception is a FAIL carrying the error (never hidden, never a crash of the whole run);
- :func:`table` (the text table) and :func:`to_json` / :func:`write_json`
  (``reports/faults.json``, generated at run time, never committed).

``python -m simulators.faults.catalogue`` runs every scenario (or those named in
``POSGW_FAULTS``, comma separated; ``POSGW_FAULTS=list`` lists them), prints the table, writes
the JSON and exits 1 when any scenario FAILed. NOT RUN is not a failure: it says why.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import tempfile
import textwrap
import time
import traceback
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
REPORTS = ROOT / "reports"
SCENARIO_MODULES = (
    "simulators.faults.scenarios.delivery",
    "simulators.faults.scenarios.network",
    "simulators.faults.scenarios.business",
)


class Verdict(StrEnum):
    PASS = "PASS"
    FAIL = "FAIL"
    NOT_RUN = "NOT RUN"


@dataclass(frozen=True)
class Outcome:
    """What a scenario found: a verdict, figures (JSON values) and a note."""

    verdict: Verdict
    figures: dict[str, Any] = field(default_factory=dict)
    note: str = ""

    @classmethod
    def judge(cls, ok: bool, figures: dict[str, Any], note: str = "", *, why_not: str = "") -> Outcome:
        """PASS when ``ok``, else FAIL (``why_not`` joins the note)."""
        if ok:
            return cls(Verdict.PASS, figures, note)
        return cls(Verdict.FAIL, figures, "; ".join(x for x in (why_not, note) if x))

    @classmethod
    def not_run(cls, why: str, figures: dict[str, Any] | None = None) -> Outcome:
        return cls(Verdict.NOT_RUN, figures or {}, why)


@dataclass(frozen=True)
class Context:
    """What a scenario gets: its own work dir, the seed and the environment (for sizes)."""

    workdir: Path
    seed: int = 1
    env: Mapping[str, str] = field(default_factory=dict)

    def number(self, name: str, default: int) -> int:
        raw = self.env.get(name, "").strip()
        return int(raw) if raw else default


Run = Callable[[Context], Awaitable[Outcome]]


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    run: Run
    cheap: bool = False  # seconds, safe for make test
    timeout_s: float = 300.0


REGISTRY: dict[str, Scenario] = {}


def scenario(
    name: str,
    title: str,
    *,
    cheap: bool = False,
    timeout_s: float = 300.0,
    registry: dict[str, Scenario] | None = None,
) -> Callable[[Run], Run]:
    """Register the decorated ``async def (ctx) -> Outcome`` under ``name`` (unique)."""
    target = REGISTRY if registry is None else registry

    def register(fn: Run) -> Run:
        if name in target:
            raise ValueError(f"scenario {name!r} registered twice")
        target[name] = Scenario(name, title, fn, cheap, timeout_s)
        return fn

    return register


def load_scenarios() -> dict[str, Scenario]:
    """Import the scenario modules (they register themselves); the registry in catalogue order."""
    import importlib

    for module in SCENARIO_MODULES:
        importlib.import_module(module)
    return REGISTRY


def select(names: str, registry: Mapping[str, Scenario]) -> list[Scenario]:
    """``""`` or ``"all"``: every scenario; else the comma-separated names, in registry order."""
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    if not wanted or wanted == ["all"]:
        return list(registry.values())
    unknown = [n for n in wanted if n not in registry]
    if unknown:
        raise ValueError(f"unknown scenario(s) {unknown}; known: {', '.join(registry)}")
    return [s for n, s in registry.items() if n in wanted]


@dataclass(frozen=True)
class Result:
    name: str
    title: str
    verdict: Verdict
    figures: dict[str, Any]
    note: str
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "verdict": self.verdict.value,
            "figures": self.figures,
            "note": self.note,
            "seconds": round(self.seconds, 1),
        }


async def run_one(
    item: Scenario, root: Path, *, seed: int = 1, env: Mapping[str, str] | None = None, keep: bool = False
) -> Result:
    """Run one scenario in ``root/<name>`` under its time limit; an exception or a timeout is a FAIL."""
    workdir = root / item.name
    workdir.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    try:
        outcome = await asyncio.wait_for(item.run(Context(workdir, seed, dict(env or {}))), item.timeout_s)
    except TimeoutError:
        outcome = Outcome(
            Verdict.FAIL, {"timeout_s": item.timeout_s}, f"did not finish in {item.timeout_s:g} s"
        )
    except Exception as exc:  # a scenario's error is its verdict, with the evidence
        text = [line.strip() for line in str(exc).splitlines() if line.strip()]
        last = text[-1] if text else traceback.format_exception(exc)[-1].strip()
        first = text[0] if text else ""
        outcome = Outcome(
            Verdict.FAIL, {"error": last[:240]}, f"scenario raised {type(exc).__name__}: {first}"[:240]
        )
    if outcome.verdict is Verdict.PASS and not keep:
        shutil.rmtree(workdir, ignore_errors=True)
    return Result(
        item.name, item.title, outcome.verdict, outcome.figures, outcome.note, time.monotonic() - began
    )


async def run_catalogue(
    items: Iterable[Scenario],
    root: Path,
    *,
    seed: int = 1,
    env: Mapping[str, str] | None = None,
    progress: Callable[[Result], None] | None = None,
) -> list[Result]:
    out = []
    for item in items:
        result = await run_one(item, root, seed=seed, env=env)
        if progress is not None:
            progress(result)
        out.append(result)
    return out


def figures_text(figures: Mapping[str, Any]) -> str:
    def show(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
        if isinstance(v, dict):
            return "{" + ", ".join(f"{k}: {show(x)}" for k, x in v.items()) + "}"
        if isinstance(v, list | tuple):
            return "[" + ", ".join(show(x) for x in v) + "]"
        return str(v)

    return "; ".join(f"{k}={show(v)}" for k, v in figures.items())


def table(results: Sequence[Result], *, width: int = 150) -> str:
    """The verdict table: scenario, verdict, seconds, then figures and note wrapped underneath."""
    name_w = max([len(r.name) for r in results] + [8])
    lines = [f"{'scenario':<{name_w}}  {'verdict':<7}  {'time':>6}  figures / note", "-" * width]
    indent = " " * (name_w + 19)
    for r in results:
        body = figures_text(r.figures) + (f" -- {r.note}" if r.note else "")
        wrapped = textwrap.wrap(body, width - len(indent)) or [""]
        lines.append(f"{r.name:<{name_w}}  {r.verdict.value:<7}  {r.seconds:>5.1f}s  {wrapped[0]}")
        lines += [indent + w for w in wrapped[1:]]
    counts = {v: sum(r.verdict is v for r in results) for v in Verdict}
    lines += ["-" * width, "  ".join(f"{v.value} {n}" for v, n in counts.items())]
    return "\n".join(lines)


def to_json(results: Sequence[Result], *, seed: int = 1) -> dict[str, Any]:
    return {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "seed": seed,
        "summary": {v.value: sum(r.verdict is v for r in results) for v in Verdict},
        "results": [r.to_json() for r in results],
    }


def write_json(results: Sequence[Result], path: Path | None = None, *, seed: int = 1) -> Path:
    path = path or REPORTS / "faults.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(to_json(results, seed=seed), ensure_ascii=False, indent=2), encoding="utf-8")
    return path


def exit_status(results: Sequence[Result]) -> int:
    """1 when any scenario FAILed (NOT RUN is not a failure), else 0."""
    return 1 if any(r.verdict is Verdict.FAIL for r in results) else 0


async def _main(env: Mapping[str, str]) -> int:
    registry = load_scenarios()
    if env.get("POSGW_FAULTS", "").strip() == "list":
        for s in registry.values():
            print(f"{s.name:<28} {s.title}")
        return 0
    items = select(env.get("POSGW_FAULTS", ""), registry)
    seed = int(env.get("POSGW_FAULTS_SEED", "1") or 1)
    root = Path(tempfile.mkdtemp(prefix="posgw-faults-"))
    print(
        f"fault catalogue: {len(items)} scenarios, seed {seed}, work dir {root} (kept for failures)",
        flush=True,
    )

    def progress(r: Result) -> None:
        print(
            f"  {r.verdict.value:<7} {r.name} ({r.seconds:.1f} s) {figures_text(r.figures)[:200]}", flush=True
        )

    results = await run_catalogue(items, root, seed=seed, env=env, progress=progress)
    print()
    print(table(results))
    print(f"report: {write_json(results, seed=seed)}")
    return exit_status(results)


def main() -> int:
    return asyncio.run(_main(os.environ))


if __name__ == "__main__":
    # Run as a module this file is ``__main__``, while the scenario modules register into the imported
    # ``simulators.faults.catalogue``: hand over to that one, so there is one registry and one Verdict.
    from simulators.faults.catalogue import main as catalogue_main

    sys.exit(catalogue_main())
