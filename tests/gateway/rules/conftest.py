"""Fixtures for the rule-engine tests: the five program files and small builders."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.rules.program import Program, load_program

PROGRAMS = Path(__file__).resolve().parents[3] / "config" / "programs"


@pytest.fixture(scope="session")
def seeds() -> dict[str, Program]:
    return {f"seed00{i}": load_program(PROGRAMS / f"seed00{i}.toml") for i in range(5)}
