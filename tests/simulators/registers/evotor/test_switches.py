"""The Evotor simulator's misbehaviour switches produce exactly the wire behaviour they claim.

Each test runs :func:`run_tills` (or ``posgw sim evotor``) against a recording fake gateway whose
answers are written here from ``drivers/evotor/README.md`` (calc: a 1-kopeck ``onResult``; closes and
cloud webhooks: ``{"accepted": true, "duplicate": <seen before>}``; a wrong token: 401 with Evotor's
``errors`` body), then asserts on the recorded requests.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from gateway.cli import main
from simulators.registers.evotor import EvotorConfig, Misbehaviour, run_tills
from tests.simulators.registers.component import PHONES, running_system
from tests.simulators.registers.recording_gateway import RecordingGateway, Seen, recording

TOKEN, CLOUD_TOKEN, PHONE = "plugin-tok", "cloud-tok", "+79160000101"
EVENT = "/v1/evotor/event"
RECEIPTS = "/v1/evotor/cloud/api/v2/receipts"
DOCUMENTS = "/v1/evotor/cloud/api/v1/inventories/stores/{store}/documents"
UNAUTHORIZED = {"errors": [{"code": 1002, "reason": "invalid", "subject": "Authorization"}]}
RECEIPTS_N = 4


class FakeEvotor:
    """The gateway's Evotor routes, answered by the test's rules; knobs make it slow or forgetful."""

    def __init__(self) -> None:
        self.docs: set[str] = set()
        self.attempts: Counter[str] = Counter()
        self.calcs: Counter[str] = Counter()
        self.calc_delay_s = 0.0
        self.first_close_delay_s = 0.0
        self.dedup = True
        self.check_tokens = True
        self.vary_calc = False  # each calc of a receipt answers a different discount
        self.pad = 0  # printText length of calc answers

    def routes(self) -> dict[tuple[str, str], Any]:
        return {("POST", EVENT): self.event, ("POST", RECEIPTS): self.receipts,
                ("PUT", DOCUMENTS): self.documents}

    async def event(self, seen: Seen) -> tuple[int, Any]:
        if self.check_tokens and seen.headers.get("X-Gateway-Token") != TOKEN:
            return 401, UNAUTHORIZED
        uuid = seen.body["event"]["receiptUuid"]
        if seen.body["action"].endswith("receiptDiscount"):
            self.calcs[uuid] += 1
            await asyncio.sleep(self.calc_delay_s)
            if ".payback." in seen.body["action"]:
                return 200, {"callback": "skip"}
            cents = self.calcs[uuid] if self.vary_calc else 1
            result = {"discount": f"0.{cents:02d}", "changes": [], "extra": {"lg": {"pts": 0, "off": False}}}
            return 200, {"callback": "onResult", "printText": "x" * self.pad, "result": result}
        return 200, await self.commit(uuid)

    async def commit(self, uuid: str) -> dict[str, Any]:
        self.attempts[uuid] += 1
        if self.attempts[uuid] == 1 and self.first_close_delay_s:
            await asyncio.sleep(self.first_close_delay_s)
        duplicate = self.dedup and uuid in self.docs
        self.docs.add(uuid)
        return {"accepted": True, "duplicate": duplicate}

    def _cloud_ok(self, seen: Seen) -> bool:
        return not self.check_tokens or seen.headers.get("Authorization") == f"Bearer {CLOUD_TOKEN}"

    async def receipts(self, seen: Seen) -> tuple[int, Any]:
        if not self._cloud_ok(seen):
            return 401, UNAUTHORIZED
        envelope = seen.body[0] if isinstance(seen.body, list) else seen.body
        return 200, await self.commit(envelope["data"]["id"])

    async def documents(self, seen: Seen) -> tuple[int, Any]:
        if not self._cloud_ok(seen):
            return 401, UNAUTHORIZED
        doc = seen.body[0] if isinstance(seen.body, list) else seen.body
        return 200, await self.commit(doc["id"])


@pytest.fixture
async def fake() -> AsyncIterator[tuple[FakeEvotor, RecordingGateway]]:
    evotor = FakeEvotor()
    async with recording(evotor.routes()) as gw:
        yield evotor, gw


def config(cloud: float = 0.0, **mis: Any) -> EvotorConfig:
    return EvotorConfig(customer_share=1.0, redeem_share=0.0, refund_share=0.0, cancel_share=0.0,
                        cloud_share=cloud, free_price_share=0.0, misbehaviour=Misbehaviour(**mis))


async def run(gw: RecordingGateway, cfg: EvotorConfig, *, cloud_token: str = CLOUD_TOKEN) -> Any:
    return await run_tills(gw.url, TOKEN, tills=1, receipts=RECEIPTS_N, seed=5, customers=[PHONE],
                           cloud_token=cloud_token, config=cfg)


def closes(gw: RecordingGateway) -> list[Seen]:
    return [s for s in gw.on(EVENT) if s.body["action"].endswith("RECEIPT_CLOSED")]


def calcs(gw: RecordingGateway) -> list[Seen]:
    return [s for s in gw.on(EVENT) if s.body["action"].endswith("receiptDiscount")]


def by_uuid(seen: list[Seen]) -> dict[str, list[Seen]]:
    out: dict[str, list[Seen]] = {}
    for s in seen:
        out.setdefault(s.body["event"]["receiptUuid"], []).append(s)
    return out


FakeFixture = tuple[FakeEvotor, RecordingGateway]


async def test_no_misbehaviour_is_one_calc_and_one_close_per_receipt(fake: FakeFixture) -> None:
    _, gw = fake
    report = await run(gw, config())
    assert report.errors == 0, report.error_messages
    assert report.acknowledged == RECEIPTS_N and report.duplicates == 0
    assert [len(v) for v in by_uuid(closes(gw)).values()] == [1] * RECEIPTS_N
    assert [len(v) for v in by_uuid(calcs(gw)).values()] == [1] * RECEIPTS_N
    for close in closes(gw):  # the 1-kopeck answer was applied and is in the final snapshot
        assert close.body["receipt"]["printDocuments"][0]["discounts"], close.body
        assert json.loads(close.body["receipt"]["header"]["extra"]) == {"lg": {"pts": 0, "off": False}}


async def test_duplicate_sends_the_same_close_body_twice(fake: FakeFixture) -> None:
    _, gw = fake
    report = await run(gw, config(duplicate=1.0))
    assert report.errors == 0, report.error_messages
    grouped = by_uuid(closes(gw))
    assert len(grouped) == RECEIPTS_N
    for sends in grouped.values():
        assert len(sends) == 2 and sends[0].raw == sends[1].raw
        assert [s.headers.get("X-Gateway-Token") for s in sends] == [TOKEN, TOKEN]
    assert report.duplicates == RECEIPTS_N and report.acknowledged == RECEIPTS_N


async def test_duplicate_not_recognised_by_the_gateway_is_reported(fake: FakeFixture) -> None:
    evotor, gw = fake
    evotor.dedup = False
    report = await run(gw, config(duplicate=1.0))
    assert report.errors == RECEIPTS_N
    assert all("not deduplicated" in m for m in report.error_messages)


async def test_resend_after_timeout_resends_the_same_body(fake: FakeFixture) -> None:
    evotor, gw = fake
    evotor.first_close_delay_s = 0.4
    report = await run(gw, config(resend_after_timeout=1.0, resend_timeout_ms=50))
    assert report.errors == 0, report.error_messages
    grouped = by_uuid(closes(gw))
    assert len(grouped) == RECEIPTS_N
    for sends in grouped.values():
        assert len(sends) == 2 and sends[0].raw == sends[1].raw
        assert sends[1].at - sends[0].at >= 0.05  # the resend went out after the plugin gave up
        # ... before the slow first answer came (or never: the plugin hung up and aiohttp dropped it)
        assert sends[0].answered_at is None or sends[1].at < sends[0].answered_at
    assert report.timeouts == RECEIPTS_N and report.retries >= RECEIPTS_N
    assert report.acknowledged == RECEIPTS_N


async def test_close_before_answer_closes_at_full_price_while_the_calc_is_in_flight(
    fake: FakeFixture,
) -> None:
    evotor, gw = fake
    evotor.calc_delay_s = 0.3
    report = await run(gw, config(close_before_answer=1.0))
    assert report.errors == 0, report.error_messages
    calc_of, close_of = by_uuid(calcs(gw)), by_uuid(closes(gw))
    assert set(calc_of) == set(close_of) and len(close_of) == RECEIPTS_N
    for uuid, (close,) in close_of.items():
        (calc,) = calc_of[uuid]
        # the close reaches the gateway before the calc is answered (sometimes even before the calc
        # itself: both leave the terminal at once)
        assert calc.answered_at is not None and close.at < calc.answered_at
        assert close.body["receipt"]["printDocuments"][0]["discounts"] == {}
        assert close.body["receipt"]["header"]["extra"] is None


async def test_out_of_order_delivers_the_cloud_copy_before_the_close(fake: FakeFixture) -> None:
    _, gw = fake
    report = await run(gw, config(cloud=1.0, out_of_order=1.0))
    assert report.errors == 0, report.error_messages
    cloud = {s.body["data"]["id"]: s for s in gw.on(RECEIPTS)}
    close_of = by_uuid(closes(gw))
    assert set(cloud) == set(close_of) and len(cloud) == RECEIPTS_N
    for uuid, (close,) in close_of.items():
        assert cloud[uuid].at < close.at
    assert report.duplicates == RECEIPTS_N  # every plugin close came second


async def test_in_order_the_close_comes_before_the_cloud_copy(fake: FakeFixture) -> None:
    _, gw = fake
    report = await run(gw, config(cloud=1.0))
    assert report.errors == 0, report.error_messages
    cloud = {s.body["data"]["id"]: s for s in gw.on(RECEIPTS)}
    for uuid, (close,) in by_uuid(closes(gw)).items():
        assert close.at < cloud[uuid].at
        assert cloud[uuid].headers["Authorization"] == f"Bearer {CLOUD_TOKEN}"
        assert cloud[uuid].headers["X-Evotor-User-Id"] == close.body["device"]["userId"]


@pytest.mark.parametrize("switch", ["bad_token", "missing_token"])
async def test_token_switches_send_each_request_first_with_a_wrong_or_no_token(
    fake: FakeFixture, switch: str
) -> None:
    _, gw = fake
    report = await run(gw, config(cloud=1.0, **{switch: 1.0}))
    assert report.errors == 0, report.error_messages
    plugin, cloud = gw.on(EVENT), gw.on(RECEIPTS)
    # every calc and close went out twice: first refused, then with the pairing token
    assert len(plugin) == 4 * RECEIPTS_N and len(cloud) == 2 * RECEIPTS_N
    for first, second in zip(plugin[::2], plugin[1::2], strict=True):
        assert first.raw == second.raw and (first.status, second.status) == (401, 200)
        assert second.headers["X-Gateway-Token"] == TOKEN
        token = first.headers.get("X-Gateway-Token")
        assert token is None if switch == "missing_token" else (token and token != TOKEN)
    for first, second in zip(cloud[::2], cloud[1::2], strict=True):
        assert (first.status, second.status) == (401, 200)
        assert first.body["data"]["id"] == second.body["data"]["id"]
        auth = first.headers.get("Authorization")
        assert auth is None if switch == "missing_token" else (auth and auth != f"Bearer {CLOUD_TOKEN}")
    assert report.unauthorized == 3 * RECEIPTS_N
    assert report.acknowledged == RECEIPTS_N


async def test_a_gateway_accepting_a_wrong_token_is_reported(fake: FakeFixture) -> None:
    evotor, gw = fake
    evotor.check_tokens = False
    report = await run(gw, config(bad_token=1.0))
    assert report.unauthorized == 0 and report.errors == 2 * RECEIPTS_N
    assert all("expected 401" in m for m in report.error_messages)


async def test_slow_reads_take_the_answer_in_64_byte_chunks(fake: FakeFixture) -> None:
    evotor, gw = fake
    evotor.pad = 64 * 6  # the calc answer is > 6 chunks of 64 bytes
    fast = await run(gw, config())
    slow = await run(gw, config(slow_read_ms=40))
    assert fast.errors == slow.errors == 0, slow.error_messages
    assert slow.calc_count == RECEIPTS_N and slow.calc_p50_ms >= 6 * 40
    assert fast.calc_p50_ms * 2 < slow.calc_p50_ms


async def test_calc_twice_fires_the_same_calc_body_twice_and_checks_the_answers_agree(
    fake: FakeFixture,
) -> None:
    evotor, gw = fake
    report = await run(gw, config(calc_twice=1.0))
    assert report.errors == 0, report.error_messages
    for sends in by_uuid(calcs(gw)).values():
        assert len(sends) == 2 and sends[0].raw == sends[1].raw
    evotor.vary_calc = True
    report = await run(gw, config(calc_twice=1.0))
    assert report.errors == RECEIPTS_N and all("fired twice" in m for m in report.error_messages)


async def test_array_bodies_send_the_cloud_envelope_as_a_one_element_array(fake: FakeFixture) -> None:
    _, gw = fake
    report = await run(gw, config(cloud=1.0, array_bodies=1.0))
    assert report.errors == 0, report.error_messages
    bodies = [s.body for s in gw.on(RECEIPTS)]
    assert len(bodies) == RECEIPTS_N
    assert all(isinstance(b, list) and len(b) == 1 and b[0]["type"] == "ReceiptCreated" for b in bodies)


# ------------------------------------------------------------------ CLI


def test_cli_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["sim", "evotor", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "--gateway" in out and "--duplicate" in out and "--slow-reads" in out


async def test_cli_json_run_against_the_fake(fake: FakeFixture, capsys: pytest.CaptureFixture[str]) -> None:
    _, gw = fake
    argv = ["sim", "evotor", "--gateway", gw.url, "--no-queue-check",
            "--token", TOKEN, "--cloud-token", CLOUD_TOKEN,
            "--tills", "1", "--receipts", "3", "--seed", "4", "--customers", PHONE, "--refunds", "0",
            "--cancels", "0", "--cloud", "1", "--duplicate", "1", "--json"]
    code = await asyncio.to_thread(main, argv)
    data = json.loads(capsys.readouterr().out)
    assert code == 0 and data["errors"] == 0, data["error_messages"]
    assert data["receipts"] == 3 and data["acknowledged"] == 3 and data["seed"] == 4
    assert len(gw.on(RECEIPTS)) == 3 and len(closes(gw)) == 6
    assert {a["key"] for a in data["acks"]} == {f"evotor:doc:{u}" for u in by_uuid(closes(gw))}


async def test_cli_without_token_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    code = await asyncio.to_thread(main, ["sim", "evotor", "--gateway", "http://127.0.0.1:9", "--token", ""])
    assert code == 2 and "need --token" in capsys.readouterr().err


# ------------------------------------------------------------------ cloud documents webhook


async def test_document_share_sends_the_cloud_copy_as_a_rest_v2_document(fake: FakeFixture) -> None:
    _, gw = fake
    cfg = replace(config(cloud=1.0), document_share=1.0)
    report = await run(gw, cfg)
    assert report.errors == 0, report.error_messages
    assert gw.on(RECEIPTS) == []
    docs = [s for s in gw.seen if s.method == "PUT"]
    close_of = by_uuid(closes(gw))
    assert len(docs) == RECEIPTS_N and {d.body["id"] for d in docs} == set(close_of)
    for doc in docs:
        (close,) = close_of[doc.body["id"]]
        store = close.body["device"]["storeUuid"]
        assert doc.path == f"/v1/evotor/cloud/api/v1/inventories/stores/{store}/documents"
        assert doc.headers["Authorization"] == f"Bearer {CLOUD_TOKEN}"
        body = doc.body
        assert body["version"] == "V2" and body["type"] == "SELL"
        assert body["extras"] == {"lg": {"pts": 0, "off": False}}
        assert body["device_id"] == close.body["device"]["deviceUuid"]
        assert body["close_date"].endswith("+0000")
        assert str(body["number"]) == close.body["receipt"]["header"]["number"]
        positions = body["body"]["positions"]
        # money as JSON numbers; the 1-kopeck discount is the difference of sum and result_sum
        assert all(isinstance(p["sum"], int | float) for p in positions)
        off = sum(round(p["sum"] * 100) - round(p["result_sum"] * 100) for p in positions)
        assert off == 1 and round(body["body"]["result_sum"] * 100) == round(body["body"]["sum"] * 100) - 1
    assert report.duplicates == RECEIPTS_N  # each document came after its close


async def _real_day(tmp_path: Path, *, document_share: float, out_of_order: float) -> None:
    options = {"evotor": {"pairing_tokens": [TOKEN], "cloud_user_token": CLOUD_TOKEN}}
    async with running_system(tmp_path, options) as system:
        cfg = EvotorConfig(customer_share=0.9, redeem_share=0.5, refund_share=0.2, cancel_share=0.0,
                           cloud_share=1.0, document_share=document_share,
                           misbehaviour=Misbehaviour(out_of_order=out_of_order))
        report = await run_tills(system.gateway_url, TOKEN, tills=2, receipts=16, seed=11, customers=PHONES,
                                 cloud_token=CLOUD_TOKEN, config=cfg)
        assert report.errors == 0, report.error_messages
        assert report.duplicates >= 16  # every sale arrived twice (close + cloud copy), one flagged
        figures = await system.check(report.acks)
        assert figures["redeemed"] > 0 and figures["accrued"] > 0, figures


async def test_cloud_documents_through_the_real_gateway_are_applied_once(tmp_path: Path) -> None:
    await _real_day(tmp_path, document_share=0.6, out_of_order=0.0)


async def test_cloud_copy_before_the_close_with_redemption_reaches_the_core(tmp_path: Path) -> None:
    await _real_day(tmp_path, document_share=0.0, out_of_order=0.5)
