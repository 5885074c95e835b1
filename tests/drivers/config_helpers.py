"""Loading one driver's ``[drivers.<name>]`` section through the real config loader, for the
drivers' config tests: the model it validates to, or every problem it reports."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from gateway.config import ConfigErrors, load_config


def write_section(tmp_path: Path, name: str, options: str) -> Path:
    """A gateway config file enabling driver ``name`` with ``options`` (TOML lines)."""
    path = tmp_path / "gw.toml"
    path.write_text(f"[drivers.{name}]\nenabled = true\n{options}", encoding="utf-8")
    return path


def load_section(tmp_path: Path, name: str, options: str = "",
                 environ: dict[str, str] | None = None) -> BaseModel:
    """The driver's validated config model."""
    return load_config(write_section(tmp_path, name, options), environ=environ or {}).driver_config(name)


def section_problems(tmp_path: Path, name: str, options: str) -> list[tuple[str, str, str]]:
    """(key, problem, fix) of every problem; each names the file."""
    path = write_section(tmp_path, name, options)
    with pytest.raises(ConfigErrors) as info:
        load_config(path, environ={})
    assert {e.file for e in info.value.errors} == {str(path)}
    return [(e.key, e.problem, e.fix) for e in info.value.errors]
