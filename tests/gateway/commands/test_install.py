"""posgw install: the installed config has no placeholder left and reads its keys from the
credentials; the unit check is real (a unit whose binary does not exist is refused, nothing
started); the first failure is one line with the fix."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.commands import install

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = (ROOT / "config" / "posgw.example.toml").read_text(encoding="utf-8")


def test_installed_config_reads_the_credentials() -> None:
    text = install.installed_config(EXAMPLE)
    assert "change-me" not in text.replace("# ", "")
    assert 'admin_api_key_file = "admin_api_key"\n' in text
    assert 'api_keys_file = "native_api_keys"\n' in text


def test_an_example_that_changed_is_refused() -> None:
    with pytest.raises(install.InstallError, match="no longer has"):
        install.installed_config(EXAMPLE.replace('admin_api_key = ""\n', ""))


def test_the_repository_unit_runs_the_default_prefix() -> None:
    assert install.UNIT_BINARY in (ROOT / "systemd" / "posgw.service").read_text()


def test_missing_source_and_relative_exec(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["install", "--root", str(tmp_path), "--source", str(tmp_path)]) == 1
    assert "is missing (fix: pass --source" in capsys.readouterr().err
    assert main(["install", "--root", str(tmp_path), "--exec", "posgw"]) == 1
    assert "must be an absolute path" in capsys.readouterr().err


@pytest.mark.skipif(shutil.which("systemd-analyze") is None or os.geteuid() != 0,
                    reason="needs the systemd tools and root (CI has both)")
def test_a_unit_whose_binary_is_missing_fails_verification(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(["install", "--root", str(tmp_path), "--exec", "/nonexistent/bin/posgw"])
    out, err = capsys.readouterr()
    assert code == 1
    assert err.startswith("posgw install: cannot verify the unit: ") and "/nonexistent/bin/posgw" in err
    assert len(err.strip().splitlines()) == 1 or "(fix: " in err
    assert "ok: user posgw" in out  # the steps before were done and said so
