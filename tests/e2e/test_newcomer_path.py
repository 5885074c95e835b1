"""The README's path from ``make demo`` to a real shop, step by step, as real processes.

The reference core (``posgw core``); the config copied from ``config/posgw.example.toml`` with the
shop's values and ``drivers/modulkassa/sample.toml`` appended, every ``change-me-*`` replaced;
``posgw check-config`` says OK; ``posgw run``; a customer registered and given points with
``posgw core customer add|grant``; a simulated till sells (``posgw sim native``); then what the
owner and the operator look at: ``posgw queue list --pending``, ``posgw report day``, the status
page at ``/`` and ``posgw core customer list``.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from simulators.stack import ROOT, Service, free_port, grpc_serving, http_ok

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]
PHONE = "+79165000001"


async def posgw(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", *args, cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def shop_config(tmp_path: Path, core: str, port: int, admin_key: str, till_key: str) -> str:
    """What the README tells a newcomer to do to the example config."""
    text = (ROOT / "config" / "posgw.example.toml").read_text(encoding="utf-8")
    text += "\n" + (ROOT / "drivers" / "modulkassa" / "sample.toml").read_text(encoding="utf-8")
    values = {"listen_port": str(port), "data_dir": f'"{tmp_path / "data"}"',
              "admin_api_key": f'"{admin_key}"', "address": f'"{core}"'}
    for key, value in values.items():
        text, n = re.subn(rf"^{key} = .*$", f"{key} = {value}", text, count=1, flags=re.M)
        assert n == 1, key
    text = text.replace('"change-me-till-key"', f'"{till_key}"')
    return re.sub(r'"change-me-[\w-]+"', lambda _: f'"{secrets.token_urlsafe(24)}"', text)


async def test_from_the_demo_to_a_shop(tmp_path: Path) -> None:
    core_port, gw_port = free_port(), free_port()
    core_address, url = f"127.0.0.1:{core_port}", f"http://127.0.0.1:{gw_port}"
    admin_key, till_key = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
    db = f"sqlite:///{tmp_path / 'core.db'}"
    config = tmp_path / "posgw.toml"
    config.write_text(shop_config(tmp_path, core_address, gw_port, admin_key, till_key), encoding="utf-8")
    (tmp_path / "data").mkdir(mode=0o700)

    code, out, err = await posgw("check-config", str(config))
    assert code == 0 and "OK" in out + err, out + err
    program = str(ROOT / "config" / "programs" / "seed002.toml")
    core = Service("core", [sys.executable, "-m", "gateway.cli", "core", "--listen", core_address,
                            "--program", program, "--db", db],
                   tmp_path / "core.log", lambda: grpc_serving(core_address))
    gateway = Service("gateway", [sys.executable, "-m", "gateway.cli", "run", "--config", str(config)],
                      tmp_path / "gateway.log", lambda: http_ok(url + "/healthz"))
    await core.start(timeout_s=40)
    try:
        await gateway.start(timeout_s=40)
        try:
            await _the_shop_day(config, core_address, url, admin_key, till_key, db)
        finally:
            await gateway.stop()
    finally:
        await core.stop()


async def _the_shop_day(config: Path, core: str, url: str, admin_key: str, till_key: str, db: str) -> None:
    code, out, err = await posgw("core", "customer", "add", "--core", core, "--phone", "8 916 500-00-01",
                                 "--name", "Анна Ковалёва")
    assert code == 0 and out.startswith("registered: customer"), out + err
    code, out, err = await posgw("core", "customer", "grant", "--core", core, "--phone", PHONE,
                                 "--points", "500")
    assert code == 0 and out.startswith("granted: 500 points"), out + err

    env = {**os.environ, "POSGW_ADMIN_KEY": admin_key, "POSGW_NATIVE_TOKEN": till_key}
    code, out, err = await posgw("sim", "native", "--gateway", url, "--tills", "1", "--receipts", "10",
                                 "--customers", PHONE, "--seed", "7", "--refunds", "0", "--cancels", "0",
                                 "--json", "--no-acks", env=env)
    assert code == 0, out + err
    sold: dict[str, Any] = json.loads(out)
    assert sold["acknowledged"] == 10 and sold["errors"] == 0

    code, out, err = await posgw("queue", "--config", str(config), "list", "--pending", "--json")
    assert code == 0, err
    assert json.loads(out)["pending"] >= 0  # read beside the running daemon (WAL)
    for _ in range(100):  # the gateway delivers within moments
        code, out, err = await posgw("queue", "--config", str(config), "list", "--pending", "--json")
        if json.loads(out)["pending"] == 0:
            break
        await asyncio.sleep(0.2)
    code, out, err = await posgw("report", "day", "--config", str(config), "--format", "json")
    assert code == 0, err
    total = json.loads(out)["total"]
    assert total["receipts"] == 10 and total["not_delivered"] == 0 and total["with_loyalty"] > 0

    headers = {"Authorization": f"Bearer {admin_key}"}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        async with session.get(url + "/", headers=headers) as resp:
            page = await resp.text()
    assert resp.status == 200 and "Recent receipts" in page and PHONE not in page

    code, out, err = await posgw("core", "customer", "list", "--db", db, "--json")
    assert code == 0, err
    [anna] = json.loads(out)
    # the core counts her purchases as the gateway's records count receipts with loyalty
    assert anna["phone"] == PHONE and anna["balance"] > 500 and anna["purchases"] == total["with_loyalty"]
