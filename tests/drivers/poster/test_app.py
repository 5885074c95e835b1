"""The Poster platform app (drivers/poster/app) under Node's built-in test runner, against the model
of the terminal's Poster object (poster-model.js), and one order of the app against the real driver
over a socket (against-driver.js). Skipped when Node is absent, failed then under CI=true (CI
machines have Node)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from drivers.poster.driver import create
from gateway.driver import CalcResult
from gateway.receipt import CustomerId, IdKind, Receipt
from tests.drivers.fake_context import FakeContext, calc_result, serve, token
from tests.drivers.poster import payloads as p

APP = Path(__file__).resolve().parents[3] / "drivers" / "poster" / "app"


def node_or_skip(environ: dict[str, str] | None = None) -> str:
    """The ``node`` executable; without one, skip saying why (fail under ``CI=true``)."""
    node = shutil.which("node")
    if node is not None:
        return node
    reason = "Node.js is not installed: the app tests (drivers/poster/app/*.test.js) need node --test"
    if (os.environ if environ is None else environ).get("CI", "").lower() == "true":
        pytest.fail(f"CI=true: {reason}", pytrace=False)
    pytest.skip(reason)


def declared_tests() -> int:
    """How many tests the app's test files declare (each ``test('…', …)`` at the start of a line)."""
    return sum(len(re.findall(r"^test\(", f.read_text(), flags=re.MULTILINE)) for f in APP.glob("*.test.js"))


def test_app_logic_with_node_test_runner() -> None:
    done = subprocess.run([node_or_skip(), "--test", str(APP)], capture_output=True, text=True, timeout=120,
                          check=False, cwd=APP)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    expected = declared_tests()
    assert expected >= 17 and f"# pass {expected}\n" in done.stdout and "# fail 0" in done.stdout, done.stdout


def test_without_node_the_app_tests_skip_locally_and_fail_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda _: None)
    with pytest.raises(pytest.skip.Exception, match=r"Node\.js is not installed"):
        node_or_skip({})
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        node_or_skip({"CI": "true"})


def _calc(r: Receipt) -> CalcResult:
    """The core's answer: 120 of discount when the app asks for the maximum, 232 at most, +17."""
    return calc_result(r, {"p12": 12_000} if r.redeem_max else {}, redeemed_points=120 if r.redeem_max else 0,
                       points_to_accrue=17, max_points=232, balance=480, display_name="Борис",
                       token=token(customer=r.customer, redeemed=120 if r.redeem_max else 0))


async def test_one_order_of_the_app_through_the_real_driver() -> None:
    node = node_or_skip()
    ctx = FakeContext("poster")
    ctx.calc = _calc
    async with serve(create({"pairing_tokens": [p.TOKEN], "application_secret": p.SECRET}), ctx) as client:
        base = str(client.make_url("/")).rstrip("/")
        pipe = asyncio.subprocess.PIPE
        proc = await asyncio.create_subprocess_exec(node, str(APP / "against-driver.js"), base, p.TOKEN,
                                                    stdout=pipe, stderr=pipe)
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()[-3000:]
    seen = json.loads(out)
    assert "Баланс: 480 б." in seen["popup"] and "Можно списать: 232 б." in seen["popup"], seen["popup"]
    ended = (seen["nexts"], seen["clientId"], seen["payedBonus"], seen["queue"], seen["refused"])
    assert ended == (1, 8, 120, 0, 0)
    assert seen["events"] == ["applicationIconClicked", "beforeOrderClose", "afterOrderClose"]
    assert seen["printed"] and "Списано баллов: 120" in seen["printed"][0] and seen["extras"]["posgw"]
    card = CustomerId(IdKind.CARD, "2000012345")
    assert [(c.customer, c.redeem_max) for c in ctx.calcs] == [(card, False), (card, True)]  # popup, payment
    (sale,) = ctx.stored.values()
    assert sale.key == f"poster:coffee-demo:3:order:{p.ORDER_ID}"
    assert sale.calc_token == seen["extras"]["posgw"]
    assert sale.receipt is not None and sale.receipt.customer == card
