"""Mirror of simulators.faults.catalogue: the registry, selection, run_one's verdicts (an exception or a
timeout is a FAIL with the evidence), the table, the JSON and the exit status; one cheap real scenario."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from simulators.faults.catalogue import (
    REGISTRY,
    Context,
    Outcome,
    Result,
    Scenario,
    Verdict,
    exit_status,
    figures_text,
    load_scenarios,
    run_catalogue,
    run_one,
    scenario,
    select,
    table,
    to_json,
    write_json,
)

REQUIRED = {
    "ack-lost-replay",
    "kill9-commit-phases",
    "core-blackholed",
    "core-slow",
    "core-flapping",
    "core-restarted",
    "core-goaway",
    "poison-head",
    "disk-full",
    "damaged-outbox",
    "clock-skew",
    "gateway-clock-jump",
    "two-tills-one-balance",
    "offline-overspend",
    "refund-before-sale",
    "webhook-twice",
    "customer-changed",
    "till-crash-hold-lapse",
    "frozen-loop",
    "backlog",
}


def local_registry() -> dict[str, Scenario]:
    reg: dict[str, Scenario] = {}

    @scenario("good", "passes", registry=reg, cheap=True)
    async def good(ctx: Context) -> Outcome:
        return Outcome.judge(True, {"n": 3})

    @scenario("bad", "fails", registry=reg)
    async def bad(ctx: Context) -> Outcome:
        return Outcome.judge(False, {"lost": 2}, why_not="two lost")

    @scenario("skip", "not here", registry=reg)
    async def skip(ctx: Context) -> Outcome:
        return Outcome.not_run("needs a VM")

    @scenario("boom", "raises", registry=reg)
    async def boom(ctx: Context) -> Outcome:
        raise RuntimeError("core exploded")

    @scenario("slow", "times out", registry=reg, timeout_s=0.05)
    async def slow(ctx: Context) -> Outcome:
        await asyncio.sleep(5)
        return Outcome.judge(True, {})

    return reg


def test_every_catalogue_fault_is_registered() -> None:
    names = set(load_scenarios())
    assert REQUIRED <= names, sorted(REQUIRED - names)
    assert all(s.title for s in REGISTRY.values())


def test_run_as_a_module_lists_every_scenario() -> None:
    """``python -m`` makes the file ``__main__``: the scenarios must still be found (one registry)."""
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "simulators.faults.catalogue"],
        env={**os.environ, "POSGW_FAULTS": "list"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert REQUIRED <= {line.split()[0] for line in proc.stdout.splitlines() if line.strip()}


def test_a_name_registers_once() -> None:
    reg = local_registry()
    with pytest.raises(ValueError, match="twice"):
        scenario("good", "again", registry=reg)(reg["good"].run)


def test_select() -> None:
    reg = local_registry()
    assert [s.name for s in select("", reg)] == list(reg)
    assert [s.name for s in select("all", reg)] == list(reg)
    assert [s.name for s in select("skip, good", reg)] == ["good", "skip"]  # registry order
    with pytest.raises(ValueError, match="unknown scenario"):
        select("good,nope", reg)


async def test_run_one_turns_errors_and_timeouts_into_fails(tmp_path: Path) -> None:
    reg = local_registry()
    results = {r.name: r for r in await run_catalogue(reg.values(), tmp_path)}
    assert results["good"].verdict is Verdict.PASS and results["good"].figures == {"n": 3}
    assert not (tmp_path / "good").exists()  # a PASS leaves nothing behind
    assert results["bad"].verdict is Verdict.FAIL and results["bad"].note == "two lost"
    assert (tmp_path / "bad").is_dir()  # kept as evidence
    assert results["skip"].verdict is Verdict.NOT_RUN and results["skip"].note == "needs a VM"
    assert results["boom"].verdict is Verdict.FAIL and "core exploded" in results["boom"].note
    assert results["boom"].figures["error"] == "core exploded" and "RuntimeError" in results["boom"].note
    assert results["slow"].verdict is Verdict.FAIL and "did not finish" in results["slow"].note
    assert exit_status(list(results.values())) == 1
    assert exit_status([results["good"], results["skip"]]) == 0


def test_table_and_json(tmp_path: Path) -> None:
    results = [
        Result("ack-lost-replay", "t", Verdict.PASS, {"replays": 1000, "p99_ms": 3.14159}, "", 12.3),
        Result("disk-full", "t", Verdict.NOT_RUN, {}, "needs root", 0.0),
        Result(
            "refund-before-sale", "t", Verdict.FAIL, {"lost": 5, "by": {"a": [1, 2]}}, "silently dropped", 9.0
        ),
    ]
    text = table(results)
    assert "ack-lost-replay" in text and "PASS" in text and "replays=1000; p99_ms=3.14" in text
    assert "NOT RUN" in text and "needs root" in text
    assert "lost=5; by={a: [1, 2]} -- silently dropped" in text
    assert text.splitlines()[-1] == "PASS 1  FAIL 1  NOT RUN 1"
    data = to_json(results, seed=4)
    assert data["summary"] == {"PASS": 1, "FAIL": 1, "NOT RUN": 1} and data["seed"] == 4
    assert data["results"][2]["verdict"] == "FAIL" and data["results"][2]["figures"]["lost"] == 5
    path = write_json(results, tmp_path / "faults.json")
    assert json.loads(path.read_text(encoding="utf-8"))["results"][0]["name"] == "ack-lost-replay"
    assert figures_text({"x": 12345.6}) == "x=12346"


def test_context_numbers() -> None:
    ctx = Context(Path("."), env={"POSGW_FAULTS_BACKLOG": "500", "EMPTY": " "})
    assert ctx.number("POSGW_FAULTS_BACKLOG", 10) == 500
    assert ctx.number("EMPTY", 7) == 7 and ctx.number("MISSING", 9) == 9


@pytest.mark.e2e
@pytest.mark.timeout(120)
async def test_a_cheap_real_scenario_runs(tmp_path: Path) -> None:
    """The ack-lost-replay scenario against the real stack, with 20 replays instead of 1,000."""
    registry = load_scenarios()
    result = await run_one(registry["ack-lost-replay"], tmp_path, env={"POSGW_FAULTS_REPLAYS": "20"})
    assert result.verdict is Verdict.PASS, (result.figures, result.note)
    assert result.figures["core_count"] == 1 and result.figures["answered_same_key"] == 20
