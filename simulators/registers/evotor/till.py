"""One simulated Evotor terminal (+ our plugin + the Evotor cloud), its misbehaviours, and the run.

Flow per receipt: ring up (native catalogue; weight and free-price lines) → the plugin forwards
``receiptDiscount`` → the terminal applies the answer (:func:`~.messages.apply_answer`; a
refused answer is an error in the report and the sale goes on at full price; a timeout
means ``skip``) → ``RECEIPT_CLOSED`` with the final snapshot, resent by the plugin's outbox
until a 2xx → sometimes the cloud's ``ReceiptCreated`` webhook for the same receipt
(Bearer token, a new envelope id per delivery) or its REST-v2 ``PUT …/documents`` webhook →
now and then a per-line payback of an earlier sale, or a receipt calculated and then cleared (``CLEARED``).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from simulators.registers.common import dumps, printed_offline, rng_uuid
from simulators.registers.evotor.messages import (
    AnswerError,
    Applied,
    Device,
    EvReceipt,
    Position,
    apply_answer,
    cancel_key,
    doc_key,
    payback_of,
    product_uuid,
)
from simulators.registers.http import Answer, Poster, TransportError
from simulators.registers.native.catalog import ring_up
from simulators.registers.native.report import Ack, Recorder, SimReport
from simulators.registers.runner import (
    accepted,
    follow_up,
    pick_returnable,
    resolve_seed,
    return_qty,
    run_fleet,
)

MSK = timezone(timedelta(hours=3))
PLUGIN = "/v1/evotor/event"
CLOUD = "/v1/evotor/cloud/api/v2/receipts"
DOCUMENTS = "/v1/evotor/cloud/api/v1/inventories/stores/{store}/documents"


@dataclass(frozen=True, slots=True)
class Misbehaviour:
    """Shares are probabilities in [0, 1] per receipt (or per request for tokens)."""

    duplicate: float = 0.0  # the plugin sends an acknowledged close again (expect duplicate)
    resend_after_timeout: float = 0.0  # the first close gives up after resend_timeout_ms, then resends
    resend_timeout_ms: int = 20
    close_before_answer: float = 0.0  # the close goes out while the calc is still in flight
    out_of_order: float = 0.0  # the cloud webhook arrives before the plugin's close
    calc_twice: float = 0.0  # the discount event fires twice (the answers must agree)
    bad_token: float = 0.0  # a request first goes out with a wrong token (expect 401)
    missing_token: float = 0.0  # a request first goes out with no token (expect 401)
    array_bodies: float = 0.0  # the cloud sends its body as a one-element array
    slow_read_ms: int = 0  # pause per 64-byte chunk of every answer


@dataclass(frozen=True, slots=True)
class EvotorConfig:
    customer_share: float = 0.7
    redeem_share: float = 0.5
    refund_share: float = 0.1  # after a sale, a per-line payback of an earlier sale
    cancel_share: float = 0.05  # after a sale, a receipt calculated then cleared
    cloud_share: float = 0.3  # the cloud also delivers the closed receipt
    document_share: float = 0.0  # of those cloud copies, the share sent as a PUT documents webhook (REST-v2)
    free_price_share: float = 0.2  # receipts with a free-price line
    calc_timeout_s: float = 2.0  # the plugin calls skip after this
    commit_timeout_s: float = 5.0
    retry_for_s: float = 30.0
    misbehaviour: Misbehaviour = field(default_factory=Misbehaviour)


@dataclass
class _Sold:
    receipt: EvReceipt
    applied: Applied
    remaining: dict[str, int]  # position uuid -> qty not yet returned


class EvotorTill:
    """One terminal; :meth:`sell` once per receipt."""

    def __init__(
        self,
        index: int,
        poster: Poster,
        rec: Recorder,
        *,
        rng: random.Random,
        token: str,
        cloud_token: str,
        shift: str,
        customers: Sequence[str],
        config: EvotorConfig,
    ) -> None:
        self._rng, self._poster, self._rec, self._cfg = rng, poster, rec, config
        self._token, self._cloud_token, self._customers = token, cloud_token, list(customers)
        store = f"20240713-{rng.getrandbits(16):04X}-4038-8037-{rng.getrandbits(48):012X}"
        self.device = Device(store, rng_uuid(rng), f"01-{index + 1:015d}")
        self.register_id = self.device.device_uuid
        self._shift, self._number = shift, 0
        self._sold: list[_Sold] = []

    # -- receipts ------------------------------------------------------------------------------

    def ring_up(self) -> EvReceipt:
        rng = self._rng
        positions = []
        for line in ring_up(rng):
            p = line.product
            pwd = p.price - p.price // 10 if line.amount < line.gross else p.price
            positions.append(
                Position(
                    rng_uuid(rng),
                    product_uuid(p.sku),
                    p.sku,
                    p.name,
                    p.weighted,
                    p.price,
                    pwd,
                    line.qty_milli,
                    barcode=p.sku,
                )
            )
        if rng.random() < self._cfg.free_price_share:
            price = rng.randint(50, 500) * 100
            positions.append(
                Position(rng_uuid(rng), None, None, "Товар по свободной цене", False, price, price, 1000)
            )
        loyalty: dict[str, str] = {}
        if self._customers and rng.random() < self._cfg.customer_share:
            loyalty["phone"] = rng.choice(self._customers)
            if rng.random() < self._cfg.redeem_share:
                loyalty["redeem"] = "max"
        return EvReceipt(
            uuid=rng_uuid(rng),
            device=self.device,
            session=self._shift,
            positions=tuple(positions),
            loyalty=loyalty,
        )

    async def sell(self) -> None:
        receipt = self.ring_up()
        self._rec.receipts += 1
        mis = self._cfg.misbehaviour
        early_close = self._rng.random() < mis.close_before_answer
        if early_close:  # the cashier closes before our answer came back: full price
            calc = asyncio.create_task(self._calculate(receipt), name=f"sim-evotor-calc-{receipt.uuid}")
            applied = Applied()
        else:
            applied = await self._calculate(receipt)
        self._number += 1
        receipt = receipt.closed(str(self._number), datetime.now(MSK).isoformat(timespec="milliseconds"))
        payment = self._rng.choice(("card", "card", "cash"))
        cloud = self._rng.random() < self._cfg.cloud_share
        if cloud and self._rng.random() < mis.out_of_order:
            await self._cloud(receipt, applied, payment, expect_duplicate=False)
            acked = await self._close("sale", receipt, receipt.close_body(applied, payment=payment), dup=True)
        else:
            acked = await self._close("sale", receipt, receipt.close_body(applied, payment=payment))
            if cloud:
                await self._cloud(receipt, applied, payment, expect_duplicate=True)
        if early_close:
            await calc  # the late answer is dropped, as the closed receipt cannot change
        if acked:
            self._sold.append(_Sold(receipt, applied, {p.uuid: p.qty_milli for p in receipt.positions}))
        await follow_up(self._rng, cancel_share=self._cfg.cancel_share, refund_share=self._cfg.refund_share,
                        cancel=self._clear_one, refund=self._payback_one)

    async def flush(self) -> None:
        """Nothing is held back: every close is delivered in :meth:`sell`."""

    # -- requests -----------------------------------------------------------------------------

    def _plugin_headers(self, token: str | None = None) -> dict[str, str]:
        value = self._token if token is None else token
        return {"X-Gateway-Token": value} if value else {}

    def _cloud_headers(self, token: str | None = None) -> dict[str, str]:
        value = self._cloud_token if token is None else token
        headers = {"X-Evotor-User-Id": self.device.user_id}
        if value:
            headers["Authorization"] = f"Bearer {value}"
        return headers

    async def _auth_probe(self, path: str, body: Any, *, cloud: bool, method: str = "POST") -> None:
        """Misbehave: send first with a wrong or no token; the gateway must answer 401."""
        mis = self._cfg.misbehaviour
        roll = self._rng.random()
        if roll < mis.bad_token:
            token = f"wrong{self._rng.getrandbits(48):012x}"
        elif roll < mis.bad_token + mis.missing_token:
            token = ""
        else:
            return
        headers = self._cloud_headers(token) if cloud else self._plugin_headers(token)
        try:
            answer = await self._poster.send(
                path, body, headers=headers, timeout_s=self._cfg.commit_timeout_s, method=method
            )
        except TransportError as exc:
            self._rec.error(f"{path} with a bad token: {exc}")
            return
        errors = answer.data.get("errors") if isinstance(answer.data, dict) else None
        if answer.status == 401 and (not cloud or (isinstance(errors, list) and errors)):
            self._rec.unauthorized += 1
        else:
            self._rec.error(
                f"{path}: a bad token got HTTP {answer.status} {answer.error_text()}, expected 401"
            )

    async def _calculate(self, receipt: EvReceipt) -> Applied:
        body = receipt.calc_body()
        await self._auth_probe(PLUGIN, body, cloud=False)
        answer = await self._calc_once(receipt, body)
        if answer is None:
            return Applied()
        if self._rng.random() < self._cfg.misbehaviour.calc_twice:
            again = await self._calc_once(receipt, body)
            if again is not None and _discount(again) != _discount(answer):
                self._rec.error(
                    f"calc {receipt.uuid} fired twice: discounts {_discount(answer)} then {_discount(again)}"
                )
            answer = again or answer
        try:
            applied = apply_answer(receipt, answer.data)
        except AnswerError as exc:
            self._rec.error(f"calc {receipt.uuid}: answer refused by the terminal: {exc}")
            return Applied()
        if not applied.skipped and printed_offline(applied.print_text):
            self._rec.offline_answers += 1
        if receipt.loyalty.get("phone") and not applied.skipped:  # the gateway knew the customer
            self._rec.identified += 1
        return applied

    async def _calc_once(self, receipt: EvReceipt, body: dict[str, Any]) -> Answer | None:
        try:
            answer = await self._poster.send(
                PLUGIN, body, headers=self._plugin_headers(), timeout_s=self._cfg.calc_timeout_s
            )
        except TransportError as exc:  # the plugin calls skip: the sale goes on
            self._rec.timeouts += exc.timeout
            return None
        if answer.status != 200:  # 401 / 5xx: skip, but the gateway should not do this
            self._rec.error(f"calc {receipt.uuid}: HTTP {answer.status} {answer.error_text()}")
            return None
        self._rec.calc_ms.append(answer.elapsed_ms)
        return answer

    async def _close(
        self, kind: str, receipt: EvReceipt, body: dict[str, Any], *, dup: bool = False, key: str = ""
    ) -> bool:
        """The plugin's outbox delivers a close/clear until a 2xx; records the ack. True when acked."""
        mis = self._cfg.misbehaviour
        await self._auth_probe(PLUGIN, body, cloud=False)
        first = mis.resend_timeout_ms / 1000 if self._rng.random() < mis.resend_after_timeout else None
        ack = await self._deliver(kind, receipt, PLUGIN, body, self._plugin_headers(), first, key)
        if ack is None:
            return False
        if dup and not ack.duplicate:
            self._rec.error(f"{kind} {receipt.uuid}: close after the cloud copy not flagged duplicate")
        if kind == "sale" and self._rng.random() < mis.duplicate:
            again = await self._deliver(kind, receipt, PLUGIN, body, self._plugin_headers(), None, key)
            if again is not None and not again.duplicate:
                self._rec.error(f"sale {receipt.uuid}: resent close not deduplicated")
        return True

    async def _cloud(
        self, receipt: EvReceipt, applied: Applied, payment: str, *, expect_duplicate: bool
    ) -> None:
        """The Evotor cloud pushes the receipt (``POST receipts``, or ``PUT documents`` for a
        ``document_share`` of them); with no 200 in time it resends (a receipts envelope gets a new id)."""
        mis = self._cfg.misbehaviour
        share = self._cfg.document_share
        as_document = share > 0 and self._rng.random() < share  # no draw when off: seeded runs unchanged
        path = DOCUMENTS.format(store=receipt.device.store_uuid) if as_document else CLOUD
        method = "PUT" if as_document else "POST"

        def body() -> bytes:
            if as_document:
                close = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000+0000")
                doc = receipt.document_body(applied, close_date=close, payment=payment)
                return dumps([doc] if self._rng.random() < mis.array_bodies else doc)
            date = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
            env = receipt.cloud_body(
                applied,
                envelope_id=rng_uuid(self._rng),
                timestamp_ms=int(time.time() * 1000),
                date_utc=date,
                payment=payment,
            )
            return dumps([env] if self._rng.random() < mis.array_bodies else env)

        await self._auth_probe(path, body(), cloud=True, method=method)
        if self._rng.random() < mis.resend_after_timeout:
            try:  # the cloud waits too little, then redelivers with a new envelope id
                await self._poster.send(
                    path, body(), headers=self._cloud_headers(), timeout_s=mis.resend_timeout_ms / 1000,
                    method=method,
                )
            except TransportError as exc:
                self._rec.timeouts += exc.timeout
            else:
                expect_duplicate = True  # it got through the first time
            self._rec.retries += 1
        ack = await self._deliver(
            "sale", receipt, path, body(), self._cloud_headers(), None, "", method=method
        )
        if ack is not None and expect_duplicate and not ack.duplicate:
            self._rec.error(f"sale {receipt.uuid}: cloud copy of a closed receipt not flagged duplicate")

    async def _deliver(
        self,
        kind: str,
        receipt: EvReceipt,
        path: str,
        body: Any,
        headers: dict[str, str],
        first: float | None,
        key: str,
        *,
        method: str = "POST",
    ) -> Ack | None:
        return await accepted(
            self._rec,
            self._poster.deliver(
                path, body, headers=headers, timeout_s=self._cfg.commit_timeout_s,
                retry_for_s=self._cfg.retry_for_s, first_timeout_s=first, method=method,
            ),
            kind=kind, identity=receipt.uuid, register_id=self.register_id, key=key or doc_key(receipt.uuid),
        )

    # -- paybacks and cleared receipts --------------------------------------------------------

    async def _payback_one(self) -> None:
        rng = self._rng
        sold = pick_returnable(rng, self._sold)
        if sold is None:
            return
        open_ids = [k for k, v in sold.remaining.items() if v > 0]
        picked = rng.sample(open_ids, k=min(len(open_ids), rng.randint(1, 2)))
        returned = {}
        for pos_uuid in picked:
            left = sold.remaining[pos_uuid]
            pos = next(p for p in sold.receipt.positions if p.uuid == pos_uuid)
            returned[pos_uuid] = return_qty(rng, left, weighted=pos.weighted)
        payback, applied = payback_of(
            sold.receipt,
            sold.applied,
            returned,
            new_uuid=rng_uuid(rng),
            position_uuids=[rng_uuid(rng) for _ in returned],
        )
        answer = await self._calc_once(payback, payback.calc_body())  # a payback is never discounted
        if answer is not None and not (
            isinstance(answer.data, dict) and answer.data.get("callback") == "skip"
        ):
            self._rec.error(f"payback {payback.uuid}: calc answered {answer.data!r}, expected skip")
        self._number += 1
        payback = payback.closed(str(self._number), datetime.now(MSK).isoformat(timespec="milliseconds"))
        if await self._close("refund", payback, payback.close_body(applied, payment="cash")):
            for pos_uuid, qty in returned.items():
                sold.remaining[pos_uuid] -= qty

    async def _clear_one(self) -> None:
        """A receipt rung up and calculated (a customer spending points), then deleted (``CLEARED``)."""
        receipt = self.ring_up()
        if self._customers:
            receipt = replace(receipt, loyalty={"phone": self._rng.choice(self._customers), "redeem": "max"})
        applied = await self._calculate(receipt)  # a cancel, not one of the receipts asked for
        await self._close("cancel", receipt, receipt.clear_body(applied), key=cancel_key(receipt.uuid))


def _discount(answer: Answer) -> Any:
    data = answer.data
    result = data.get("result") if isinstance(data, dict) else None
    return result.get("discount") if isinstance(result, dict) else None


async def run_tills(
    gateway_url: str,
    token: str,
    *,
    tills: int = 4,
    receipts: int = 100,
    seed: int | None = None,
    customers: Sequence[str] = (),
    cloud_token: str = "",
    config: EvotorConfig | None = None,
    shift: str | None = None,
) -> SimReport:
    """Run ``tills`` Evotor terminals until ``receipts`` sales are rung up; return what happened.

    ``token`` is the plugin's pairing token, ``cloud_token`` the Bearer the cloud sends (empty:
    the cloud path is not used). Gateway trouble is counted in the report, never raised.
    """
    config = config or EvotorConfig()
    if not cloud_token:
        config = replace(config, cloud_share=0.0)
    seed = resolve_seed(seed)
    shift = shift or datetime.now(UTC).strftime("%y%m%d%H%M")

    def build(i: int, poster: Poster, recorder: Recorder) -> EvotorTill:
        return EvotorTill(i, poster, recorder, rng=random.Random(f"evotor:{seed}:{i}"), token=token,
                          cloud_token=cloud_token, shift=shift, customers=customers, config=config)

    return await run_fleet(
        name="evotor", tills=tills, receipts=receipts, seed=seed, build=build,
        connect=lambda session: Poster(session, gateway_url, slow_read_ms=config.misbehaviour.slow_read_ms),
    )
