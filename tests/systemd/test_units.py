"""systemd/: the unit verifies with systemd-analyze (when installed) and carries the required keys."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "systemd" / "posgw.service"

REQUIRED = {
    "Unit": {"Description": None, "After": None},
    "Service": {
        "Type": "notify", "NotifyAccess": "main", "WatchdogSec": "30", "User": "posgw", "DynamicUser": "no",
        "StateDirectory": "posgw", "Restart": "on-failure", "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes", "PrivateTmp": "yes", "PrivateDevices": "yes",
        "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX", "SystemCallFilter": "@system-service",
        "LoadCredential": None, "ExecStart": None,
    },
    "Install": {"WantedBy": "multi-user.target"},
}


def unit_sections(text: str) -> dict[str, dict[str, list[str]]]:
    out: dict[str, dict[str, list[str]]] = {}
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            out.setdefault(section, {})
            continue
        key, _, value = line.partition("=")
        out[section].setdefault(key.strip(), []).append(value.strip())
    return out


def test_required_keys() -> None:
    sections = unit_sections(UNIT.read_text())
    for section, keys in REQUIRED.items():
        for key, value in keys.items():
            assert key in sections[section], f"[{section}] {key} missing"
            if value is not None:
                assert sections[section][key][-1] == value, (section, key)
    exec_start = sections["Service"]["ExecStart"][0]
    assert exec_start.startswith("/opt/posgw/venv/bin/posgw run --config")  # what install.sh makes
    assert sections["Service"]["ExecReload"] == ["/bin/kill -HUP $MAINPID"]  # reloads the TLS pair
    assert sections["Service"]["StateDirectoryMode"] == ["0700"]
    assert any("DeviceAllow=char-ttyUSB" in line for line in UNIT.read_text().splitlines())  # documented


def test_stop_timeout_leaves_room_for_the_daemon_shutdown() -> None:
    service = unit_sections(UNIT.read_text())["Service"]
    assert int(service["TimeoutStopSec"][0]) > 10  # gateway.shutdown_timeout_s default


def test_sysusers_and_tmpfiles() -> None:
    sysusers = (ROOT / "systemd" / "posgw.sysusers.conf").read_text()
    assert any(line.split()[:2] == ["u", "posgw"] for line in sysusers.splitlines())
    tmpfiles = (ROOT / "systemd" / "posgw.tmpfiles.conf").read_text()
    state_dir = ["d", "/var/lib/posgw", "0700", "posgw", "posgw"]  # phones and balances: posgw's only
    assert any(line.split()[:5] == state_dir for line in tmpfiles.splitlines())


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_analyze_verify(tmp_path: Path) -> None:
    # the installed /opt/posgw/venv/bin/posgw does not exist here: point Exec lines at an existing binary
    # (tests/scripts/test_install.py verifies the unit as scripts/install.sh writes it)
    true = shutil.which("true") or "/bin/true"
    text = UNIT.read_text().replace("/opt/posgw/venv/bin/posgw", true)
    unit = tmp_path / "posgw.service"
    unit.write_text(text)
    result = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)], capture_output=True,
                            text=True, timeout=60, check=False)
    problems = [line for line in (result.stdout + result.stderr).splitlines() if "posgw.service" in line]
    assert result.returncode == 0 and not problems, result.stdout + result.stderr


def test_configparser_can_read_unit() -> None:  # no duplicate sections, plain key=value syntax
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(UNIT.read_text())
    assert parser.sections() == ["Unit", "Service", "Install"]
