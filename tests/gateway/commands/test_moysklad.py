"""gateway.commands.moysklad: ``posgw moysklad register`` against the Vendor API simulator.

The token is stored before MoySklad is called (a failing call leaves it stored and harmless, the
previous token still accepted), MoySklad gets url/token/externalSearch, and the stored file is what
the driver's ``tokens_file`` reads."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path
from typing import Any

import pytest

from gateway.cli import main
from simulators.registers.moysklad.vendor import VendorApi, serving
from tests.drivers.config_helpers import load_section

JWT = "vendor-jwt"


def register(
    vendor: str, token_file: Path, *more: str, url: str = "https://shop.example.ru/v1/moysklad"
) -> int:
    return main(
        [
            "moysklad",
            "register",
            "--token-file",
            str(token_file),
            "--app-id",
            "app",
            "--account-id",
            "acc",
            "--url",
            url,
            "--vendor-api",
            vendor,
            *more,
        ]
    )


async def run_with_vendor(api: VendorApi, fn: Any) -> Any:
    async with serving(api) as url:
        return await asyncio.to_thread(fn, url)


@pytest.fixture(autouse=True)
def jwt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSGW_MOYSKLAD_VENDOR_JWT", JWT)


async def test_register_stores_the_token_then_sets_it_in_moysklad(tmp_path: Path) -> None:
    api = VendorApi(JWT, installed={("app", "acc"): "SettingsRequired"})
    token_file = tmp_path / "moysklad.tokens"
    assert await run_with_vendor(api, lambda url: register(url, token_file)) == 0
    [token] = token_file.read_text().split()
    assert api.registered[("app", "acc")] == {
        "url": "https://shop.example.ru/v1/moysklad",
        "token": token,
        "externalSearch": True,
    }
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    config = load_section(tmp_path, "moysklad", f'tokens_file = "{token_file}"\n')
    assert [t.get_secret_value() for t in config.tokens] == [token]  # type: ignore[attr-defined]


async def test_a_failed_call_leaves_the_new_token_stored_and_the_old_one_accepted(tmp_path: Path) -> None:
    api = VendorApi(JWT, installed={("app", "acc"): "Installed"})
    token_file = tmp_path / "t"
    assert await run_with_vendor(api, lambda url: register(url, token_file)) == 0
    first = token_file.read_text().split()
    api.fail_next = True
    assert await run_with_vendor(api, lambda url: register(url, token_file)) == 1
    second = token_file.read_text().split()
    assert len(second) == 2 and second[1] == first[0]  # MoySklad still sends the old one: still accepted
    assert api.registered[("app", "acc")]["token"] == first[0]
    assert await run_with_vendor(api, lambda url: register(url, token_file)) == 0
    assert api.registered[("app", "acc")]["token"] == token_file.read_text().split()[0]


@pytest.mark.parametrize(("installed", "code"), [({}, 1), ({("app", "acc"): "Activating"}, 1)])
async def test_moysklad_refusals_exit_1(
    tmp_path: Path, installed: dict[tuple[str, str], str], code: int, capsys: pytest.CaptureFixture[str]
) -> None:
    api = VendorApi(JWT, installed=installed)
    assert await run_with_vendor(api, lambda url: register(url, tmp_path / "t")) == code
    assert "run again" in capsys.readouterr().err


def test_usage_errors_send_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert register("http://127.0.0.1:9", tmp_path / "t", url="http://shop/v1/moysklad") == 2
    monkeypatch.delenv("POSGW_MOYSKLAD_VENDOR_JWT")
    assert register("http://127.0.0.1:9", tmp_path / "t") == 2
    assert not (tmp_path / "t").exists()
    monkeypatch.setenv("POSGW_MOYSKLAD_VENDOR_JWT", JWT)
    assert register("http://127.0.0.1:9", tmp_path / "missing-dir" / "t") == 2
