"""drivers.sbis.client against the fake SBIS cloud: auth styles, renewal, Retry-After, errors, deadlines."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from drivers.sbis import wire
from drivers.sbis.client import Client
from tests.drivers.sbis.cloud_fixtures import INN, cloud, fast_config

KKTS = wire.kkts_path(INN)


async def test_token_auth_is_shared_and_renewed_once_on_expiry() -> None:
    async with cloud(wrap_result=True).serving() as sbis, aiohttp.ClientSession() as session:
        client = Client(session, fast_config(sbis.url))
        results = await asyncio.gather(*(client.get(KKTS) for _ in range(5)))
        assert all(wire.registers(r)[0].reg_id for r in results)  # the Result wrapper decoded
        assert client.logins == 1  # one token for five concurrent callers
        sbis.expire_tokens()
        await client.get(KKTS)
        assert client.logins == 2
        oauth = [r for r in sbis.requests if r[1] == "/oauth/service/"]
        assert len(oauth) == 2


async def test_a_second_401_is_an_auth_error() -> None:
    async with cloud(token_ttl_s=0.0).serving() as sbis, aiohttp.ClientSession() as session:
        client = Client(session, fast_config(sbis.url))
        with pytest.raises(wire.VendorError) as info:
            await client.get(KKTS)
        assert info.value.kind == "auth" and client.logins == 2


async def test_wrong_keys_are_refused() -> None:
    async with cloud().serving() as sbis, aiohttp.ClientSession() as session:
        client = Client(session, fast_config(sbis.url, secret_key="wrong"))
        with pytest.raises(wire.VendorError) as info:
            await client.get(KKTS)
        assert info.value.kind == "auth" and sbis.ofd_requests() == 0


async def test_login_auth_holds_one_session_and_logs_out() -> None:
    async with cloud(max_logins=1).serving() as sbis, aiohttp.ClientSession() as session:
        config = fast_config(sbis.url, auth="login", login="shop", password="pass")
        client = Client(session, config)
        await asyncio.gather(*(client.get(KKTS) for _ in range(3)))
        assert client.logins == 1 and len(sbis.sessions) == 1
        other = Client(session, config)  # a second process would be refused: the cap is reached
        with pytest.raises(wire.VendorError) as info:
            await other.get(KKTS)
        assert "too many sessions" in str(info.value)
        await client.close()
        assert sbis.sessions == {}
        await other.get(KKTS)  # the slot is free again


async def test_retry_after_blocks_requests_until_then() -> None:
    async with cloud().serving() as sbis, aiohttp.ClientSession() as session:
        client = Client(session, fast_config(sbis.url, retry_after_max_s=60.0))
        await client.get(KKTS)
        sbis.faults.append("429:30")
        with pytest.raises(wire.VendorError) as info:
            await client.get(KKTS)
        assert info.value.kind == "rate" and info.value.retry_after == 30.0
        sent = sbis.ofd_requests()
        with pytest.raises(wire.VendorError) as info:
            await client.get(KKTS)
        assert info.value.kind == "rate" and sbis.ofd_requests() == sent  # nothing sent while waiting


async def test_html_pages_malformed_pages_and_stalls_fail_within_the_deadline() -> None:
    async with cloud().serving() as sbis, aiohttp.ClientSession() as session:
        client = Client(session, fast_config(sbis.url, request_timeout_s=0.3))
        sbis.faults += ["html", "malformed", "stall"]
        for kind in ("html", "malformed"):
            with pytest.raises(wire.VendorError) as info:
                await client.get(KKTS)
            assert info.value.kind == kind
        with pytest.raises(TimeoutError):
            await client.get(KKTS)
        assert wire.registers(await client.get(KKTS))  # then it works again
