"""posgw check-config: one line per problem as FILE: KEY: problem (fix: ...), exit 1; warnings are
prefixed ``warning:`` and alone leave exit 0 with OK. One test per refusal."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.commands import check_config
from gateway.driver import REGISTRY, Finding

ROOT = Path(__file__).resolve().parents[3]
GOOD_KEY = "k" * 24
ADMIN_KEY = "a" * 32


def write(tmp_path: Path, body: str = "", *, gateway: str = "", native: str = "") -> Path:
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    path = tmp_path / "posgw.toml"
    path.write_text(
        f"[gateway]\ndata_dir = '{data}'\nadmin_api_key = '{ADMIN_KEY}'\n{gateway}\n"
        f"[drivers.native]\nenabled = true\n{native or f'api_keys = [{GOOD_KEY!r}]'}\n{body}"
    )
    return path


def check(path: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, list[str]]:
    code = main(["check-config", str(path), *extra])
    return code, capsys.readouterr().out.strip().splitlines()


def fails(lines: list[str], path: Path, key: str) -> str:
    hits = [line for line in lines if line.startswith(f"{path}: {key}: ")]
    assert hits, f"no FAIL for {key} in {lines}"
    assert "(fix: " in hits[0]
    return hits[0]


def test_a_healthy_config_is_ok(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path)
    code, lines = check(path, capsys)
    assert code == 0, lines
    assert lines == [f"OK: {path} (drivers enabled: native)"]


def test_the_example_is_refused_until_filled_in(capsys: pytest.CaptureFixture[str]) -> None:
    example = ROOT / "config" / "posgw.example.toml"
    code, lines = check(example, capsys)
    assert code == 1
    fails(lines, example, "drivers.native.api_keys[0]")


def test_every_load_problem_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[gateway]\ncalc_budgt_ms = 300\nlisten_port = 'x'\n[drivers.zzqq]\n")
    assert main(["check-config", str(bad)]) == 1
    lines = capsys.readouterr().out.strip().splitlines()
    assert sorted(lines) == sorted([
        f"{bad}: gateway.calc_budgt_ms: unknown key (fix: did you mean 'calc_budget_ms'?)",
        f"{bad}: gateway.listen_port: expected an integer, got 'x' (fix: write an integer like 8080)",
        f"{bad}: drivers.zzqq: unknown driver (fix: remove it; known drivers: {', '.join(sorted(REGISTRY))})",
    ])


def test_enabled_driver_without_any_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, native="api_keys = []")
    code, lines = check(path, capsys)
    assert code == 1
    assert "no key, token or secret" in fails(lines, path, "drivers.native.api_keys")


def test_placeholder_keys(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, native=f"api_keys = [{GOOD_KEY!r}, 'change-me-till-key']",
                 gateway="")
    path.write_text(path.read_text().replace(ADMIN_KEY, "change-me-admin"))
    code, lines = check(path, capsys)
    assert code == 1
    assert "placeholder" in fails(lines, path, "drivers.native.api_keys[1]")
    assert "placeholder" in fails(lines, path, "gateway.admin_api_key")
    assert not any("change-me-till-key" in line for line in lines)  # the value is not echoed whole


def test_short_key_on_a_lan_listener(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    short = write(tmp_path, native="api_keys = ['short-key-1']")
    assert check(short, capsys)[0] == 0  # loopback: allowed
    lan = write(tmp_path, native="api_keys = ['short-key-1']", gateway="listen_host = '0.0.0.0'")
    code, lines = check(lan, capsys)
    assert code == 1
    assert "11-character key on a LAN listener" in fails(lines, lan, "drivers.native.api_keys[0]")


def test_core_address_not_host_port(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for address in ("core.example", "core:port", "a:b:50051", ":50051", "core:70000", "10.0.0.5:50051,core"):
        path = write(tmp_path, f"[core]\naddress = '{address}'\n")
        code, lines = check(path, capsys)
        assert code == 1, address
        fails(lines, path, "core.address")
    for address in ("core.example:50051", "10.0.0.5:50051", "[::1]:50051", "10.0.0.5:50051, 10.0.0.6:50051"):
        assert check(write(tmp_path, f"[core]\naddress = '{address}'\n"), capsys)[0] == 0, address


def test_core_tls_with_missing_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, f"[core]\ntls = true\nca_file = '{tmp_path}/ca.pem'\n"
                           f"cert_file = '{tmp_path}/c.pem'\nkey_file = '{tmp_path}/c.key'\n")
    code, lines = check(path, capsys)
    assert code == 1
    for key in ("core.ca_file", "core.cert_file", "core.key_file"):
        assert "does not exist" in fails(lines, path, key)


def test_gateway_tls_with_missing_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, gateway=f"tls = true\ntls_cert_file = '{tmp_path}/server.pem'\n")
    code, lines = check(path, capsys)
    assert code == 1
    assert "does not exist" in fails(lines, path, "gateway.tls_cert_file")
    assert "no file is named" in fails(lines, path, "gateway.tls_key_file")


def test_gateway_tls_with_unusable_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "server.pem").write_text("not a certificate\n")
    (tmp_path / "server.key").write_text("not a key\n")
    path = write(tmp_path, gateway=f"tls = true\ntls_cert_file = '{tmp_path}/server.pem'\n"
                                   f"tls_key_file = '{tmp_path}/server.key'\n")
    code, lines = check(path, capsys)
    assert code == 1
    assert "cannot be used" in fails(lines, path, "gateway.tls_cert_file")


def test_listen_host_not_of_this_machine(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, gateway="listen_host = '192.0.2.77'")  # TEST-NET-1: nobody's address
    code, lines = check(path, capsys)
    assert code == 1
    assert "not an address of this machine" in fails(lines, path, "gateway.listen_host")
    path = write(tmp_path, gateway="listen_host = 'no-such-host.invalid'")
    assert "does not resolve" in fails(check(path, capsys)[1], path, "gateway.listen_host")


def test_data_dir_missing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path)
    path.write_text(path.read_text().replace(f"{tmp_path}/data", f"{tmp_path}/nope"))
    code, lines = check(path, capsys)
    assert code == 1
    assert "does not exist" in fails(lines, path, "gateway.data_dir")


def test_outbox_dir_missing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, f"[outbox]\npath = '{tmp_path}/elsewhere/outbox.db'\n")
    code, lines = check(path, capsys)
    assert code == 1
    assert "does not exist" in fails(lines, path, "outbox.path")


@pytest.mark.skipif(os.geteuid() != 0, reason="checking as another user needs root (CI runs as root)")
def test_data_dir_not_writable_by_service_user(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path)
    (tmp_path / "data").chmod(0o700)  # root's
    nobody = pwd.getpwnam("nobody").pw_name
    code, lines = check(path, capsys, "--user", nobody)
    assert code == 1
    assert f"cannot be written by {nobody}" in fails(lines, path, "gateway.data_dir")
    os.chown(tmp_path / "data", pwd.getpwnam(nobody).pw_uid, -1)
    assert check(path, capsys, "--user", nobody)[0] == 0
    code, lines = check(path, capsys, "--user", "no-such-user-posgw")
    assert code == 1 and "does not exist" in lines[0]


def test_data_dir_not_writable_by_who_runs_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path)
    (tmp_path / "data").chmod(0o500)
    try:
        if os.access(tmp_path / "data", os.W_OK):
            pytest.skip("root writes a 0500 directory: covered by the --user test")
        code, lines = check(path, capsys)
        assert code == 1
        fails(lines, path, "gateway.data_dir")
    finally:
        (tmp_path / "data").chmod(0o700)


def test_no_driver_enabled(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path)
    path.write_text(path.read_text().replace("enabled = true", "enabled = false"))
    code, lines = check(path, capsys)
    assert code == 1
    assert "no driver is enabled" in fails(lines, path, "drivers")


def test_cloud_driver_on_http_loopback_warns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, f"[drivers.evotor]\nenabled = true\npairing_tokens = ['{GOOD_KEY}']\n")
    code, lines = check(path, capsys)
    assert code == 0
    warned = [line for line in lines if line.startswith(f"warning: {path}: drivers.evotor: ")]
    assert warned and "plain-HTTP loopback" in warned[0] and "(fix: " in warned[0]
    assert lines[-1].startswith("OK")


def test_lan_without_tls_warns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, gateway="listen_host = '0.0.0.0'")
    code, lines = check(path, capsys)
    assert code == 0
    assert any(line.startswith(f"warning: {path}: gateway.tls: ") for line in lines)


def test_no_admin_key_warns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path)
    path.write_text(path.read_text().replace(f"admin_api_key = '{ADMIN_KEY}'", ""))
    code, lines = check(path, capsys)
    assert code == 0
    assert any(line.startswith(f"warning: {path}: gateway.admin_api_key: ") for line in lines)


def test_driver_check_findings_are_printed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[tuple[str, dict[str, object]]] = []

    def fake_check(name: str, options: dict[str, object]) -> list[Finding]:
        seen.append((name, options))
        return [Finding("FAIL", "port", "/dev/ttyUSB9 does not exist", "plug the scanner in"),
                Finding("WARN", "baud", "unusual speed", "check the device manual")]

    monkeypatch.setattr(check_config, "driver_check", fake_check)
    path = write(tmp_path)
    code, lines = check(path, capsys)
    assert code == 1
    assert [name for name, _ in seen] == ["native"] and "api_keys" in seen[0][1]
    assert fails(lines, path, "drivers.native.port") == (
        f"{path}: drivers.native.port: /dev/ttyUSB9 does not exist (fix: plug the scanner in)")
    assert f"warning: {path}: drivers.native.baud: unusual speed (fix: check the device manual)" in lines


def test_a_failing_driver_check_is_a_finding(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(name: str, options: dict[str, object]) -> list[Finding]:
        raise RuntimeError("hook bug")

    monkeypatch.setattr(check_config, "driver_check", broken)
    path = write(tmp_path)
    code, lines = check(path, capsys)
    assert code == 1
    assert "hook bug" in fails(lines, path, "drivers.native")
