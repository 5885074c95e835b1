"""scripts/install.sh into a temporary root (--no-venv reuses this test's environment): the posgw
user and directories from sysusers/tmpfiles, generated keys, a config that loads with them and
has no placeholder left, the unit running the installed posgw and passing systemd-analyze verify;
a second run keeps what exists. What this cannot show: systemd starting the unit (no running
systemd here), and the venv step (tests/gateway/commands/test_install.py covers the rest;
docs/INSTALL.md says how the venv install was tried)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.commands.check_config import findings
from gateway.config import load_config

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "install.sh"
TOOLS = ("systemd-sysusers", "systemd-tmpfiles", "systemd-analyze")

pytestmark = [
    pytest.mark.skipif(any(shutil.which(t) is None for t in TOOLS), reason="systemd tools not installed"),
    pytest.mark.skipif(os.geteuid() != 0, reason="install.sh runs as root (CI runs as root)"),
]


def install(root: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SCRIPT), "--root", str(root), "--no-venv", "--python", sys.executable, *extra],
                          capture_output=True, text=True, timeout=180, check=False)


def test_install_into_a_temporary_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "root"
    root.mkdir()
    done = install(root)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ok: systemd-analyze verify" in done.stdout

    passwd = (root / "etc" / "passwd").read_text()
    user = next(line.split(":") for line in passwd.splitlines() if line.startswith("posgw:"))
    uid = int(user[2])
    state = root / "var" / "lib" / "posgw"
    assert (state.stat().st_uid, state.stat().st_mode & 0o777) == (uid, 0o700)
    creds = root / "etc" / "posgw" / "credentials"
    assert creds.stat().st_mode & 0o777 == 0o700
    keys = {}
    for name in ("admin_api_key", "native_api_keys"):
        path = creds / name
        assert (path.stat().st_uid, path.stat().st_mode & 0o777) == (0, 0o600)
        keys[name] = path.read_text().strip()
        assert len(keys[name]) >= 32
    assert keys["admin_api_key"] != keys["native_api_keys"]

    unit = (root / "etc" / "systemd" / "system" / "posgw.service").read_text()
    posgw = str(Path(sys.executable).parent.resolve() / "posgw")
    assert f"ExecStart={posgw} run --config /etc/posgw/posgw.toml" in unit.splitlines()
    assert f"ExecStartPre={posgw} check-config /etc/posgw/posgw.toml" in unit.splitlines()
    assert "/opt/posgw/venv/bin/posgw" not in unit
    assert os.readlink(root / "usr" / "local" / "bin" / "posgw") == posgw  # posgw on the PATH

    config_path = root / "etc" / "posgw" / "posgw.toml"
    assert config_path.stat().st_mode & 0o777 == 0o640
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))  # as systemd's LoadCredential= gives them
    config = load_config(config_path)
    assert config.gateway.admin_api_key.get_secret_value() == keys["admin_api_key"]
    native_keys = [k.get_secret_value() for k in config.driver_options("native")["api_keys"]]
    assert native_keys == [keys["native_api_keys"]]
    refused = [p for p in findings(config) if p.level == "FAIL"]
    assert [p.key for p in refused] == ["gateway.data_dir"]  # /var/lib/posgw of the real machine only
    assert (root / "etc" / "posgw" / "posgw.example.toml").read_text() == (
        ROOT / "config" / "posgw.example.toml").read_text()

    again = install(root)  # a re-install keeps the config and the keys
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"ok: kept {creds / 'admin_api_key'}" in again.stdout
    assert (creds / "admin_api_key").read_text().strip() == keys["admin_api_key"]
    assert load_config(config_path).gateway.admin_api_key.get_secret_value() == keys["admin_api_key"]


def test_refusals_are_one_line(tmp_path: Path) -> None:
    done = install(tmp_path / "missing")
    assert done.returncode == 1 and done.stderr.strip().startswith("install.sh: --root")
    done = install(tmp_path, "--prefix", "relative")
    assert done.returncode == 1 and "--prefix must be absolute" in done.stderr
    done = install(tmp_path, "--bogus")
    assert done.returncode == 1 and "unknown option --bogus" in done.stderr
