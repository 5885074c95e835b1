"""One simulated till: the cashier's flow per receipt, and the till's misbehaviours.

Flow per receipt: ring up → identify (sometimes) → calculate → apply the answer (refused, and
reported as an error, if inconsistent: see :func:`~.receipts.apply_answer`) → POST /sales with
the points actually applied, retried with the same identity until acknowledged → now and then
a per-line refund or a cancel of one of this till's earlier sales.

A failed or missing calculate never blocks the sale: the till sells at full price, as a real
till does. Misbehaviours (:class:`Misbehaviour`) are probabilities per receipt or request.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from simulators.registers.native.catalog import ring_up
from simulators.registers.native.client import Delivery, NativeClient, RetriableStatus, TransportError
from simulators.registers.native.receipts import AnswerError, Applied, TillReceipt, apply_answer
from simulators.registers.native.report import Ack, Recorder
from simulators.registers.runner import delivered, follow_up, return_qty

MSK = timezone(timedelta(hours=3))


@dataclass(frozen=True, slots=True)
class Misbehaviour:
    """What a badly behaved till does; each share is a probability in [0, 1]."""

    duplicate: float = 0.0  # send an acknowledged sale again (expect duplicate=true, same key)
    resend_after_timeout: float = 0.0  # give up on the first sale attempt early, then resend
    resend_timeout_ms: int = 20
    bad_token: float = 0.0  # send a request with a wrong key first (expect 401), then the right one
    slow_read_ms: int = 0  # pause per 64-byte chunk while reading every response


@dataclass(frozen=True, slots=True)
class TillConfig:
    """How the tills of a run behave; shares are probabilities in [0, 1]."""

    customer_share: float = 0.6  # receipts with a customer (when customers are given)
    identify_share: float = 0.5  # of those, how many identify before calculating
    redeem_share: float = 0.5  # of those, how many ask to redeem the maximum
    refund_share: float = 0.05  # after a sale, refund (per line) an earlier sale
    cancel_share: float = 0.02  # after a sale, cancel an earlier sale
    document_ids: bool = True  # even-numbered tills send a document id
    calc_timeout_s: float = 2.0
    commit_timeout_s: float = 5.0
    retry_for_s: float = 30.0
    misbehaviour: Misbehaviour = field(default_factory=Misbehaviour)


def parse_customer(text: str) -> dict[str, str]:
    """``"+79123456789"`` → phone; ``"card:123"``, ``"app_code:123456"``, ``"qr:..."`` as named."""
    kind, sep, value = text.partition(":")
    if sep and kind in ("phone", "card", "app_code", "qr"):
        return {kind: value}
    return {"phone": text}


@dataclass
class _Sold:
    receipt: TillReceipt
    remaining: dict[str, int]  # line_id -> qty_milli not yet refunded
    refunds: int = 0
    cancelled: bool = False


class Till:
    """One register of a run; call :meth:`sell` once per receipt."""

    def __init__(self, index: int, client: NativeClient, recorder: Recorder, *, rng: random.Random,
                 shift: str, prefix: str, customers: list[dict[str, str]], config: TillConfig) -> None:
        self.register_id = f"{prefix}-{index + 1:02d}"
        self._index, self._client, self._rec, self._rng = index, client, recorder, rng
        self._shift, self._customers, self._cfg = shift, customers, config
        self._number = 0
        self._sold: list[_Sold] = []

    def ring_up(self) -> TillReceipt:
        """The next receipt of this till (pure given the rng)."""
        self._number += 1
        rng, cfg = self._rng, self._cfg
        customer = None
        if self._customers and rng.random() < cfg.customer_share:
            customer = dict(rng.choice(self._customers))
        doc = ""
        if cfg.document_ids and self._index % 2 == 0:
            doc = f"{self.register_id}-{self._shift}-{self._number}"
        return TillReceipt(
            register_id=self.register_id, shift=self._shift, receipt_number=str(self._number),
            lines=ring_up(rng), occurred_at=_now(), cashier_id=f"cashier-{self._index + 1}",
            customer=customer, redeem_max=customer is not None and rng.random() < cfg.redeem_share,
            document_id=doc,
        )

    async def sell(self) -> None:
        receipt = self.ring_up()
        self._rec.receipts += 1
        if receipt.customer and self._rng.random() < self._cfg.identify_share:
            await self._identify(receipt)
        applied = await self._calculate(receipt)
        payment = self._rng.choice(("card", "card", "cash"))
        body = receipt.sale_body(applied, payment_kind=payment)
        if await self._commit("sale", "sales", receipt.identity, receipt, body):
            self._sold.append(_Sold(receipt, {line.line_id: line.qty_milli for line in receipt.lines}))
        await follow_up(self._rng, cancel_share=self._cfg.cancel_share, refund_share=self._cfg.refund_share,
                        cancel=self._cancel_one, refund=self._refund_one)

    async def flush(self) -> None:
        """Nothing is held back: every commit is delivered in :meth:`sell`."""

    # -- steps -----------------------------------------------------------------------------

    async def _request(self, endpoint: str, body: dict[str, Any], timeout_s: float) -> Any:
        """POST once (after a bad-token try when misbehaving); the 200 body, or None (recorded)."""
        await self._maybe_bad_token(endpoint, body, timeout_s)
        try:
            reply = await self._client.post(endpoint, body, timeout_s=timeout_s)
        except TransportError as exc:
            self._rec.timeouts += exc.timeout
            self._rec.error(str(exc))
            return None
        if reply.status != 200:
            self._rec.error(f"{endpoint}: HTTP {reply.status} {reply.error_text()}")
            return None
        if endpoint == "calculate":
            self._rec.calc_ms.append(reply.elapsed_ms)
        return reply.data

    async def _identify(self, receipt: TillReceipt) -> None:
        data = await self._request("identify", {"customer": receipt.customer}, self._cfg.calc_timeout_s)
        if isinstance(data, dict) and data.get("found"):
            self._rec.identified += 1

    async def _calculate(self, receipt: TillReceipt) -> Applied:
        answer = await self._request("calculate", receipt.calc_body(), self._cfg.calc_timeout_s)
        if isinstance(answer, dict) and answer.get("rejection"):
            self._rec.rejections += 1  # e.g. redemption not permitted: calculate again without it
            body = receipt.calc_body(redeem=False)
            answer = await self._request("calculate", body, self._cfg.calc_timeout_s)
        if answer is None:
            return receipt.full_price()
        try:
            applied = apply_answer(receipt, answer)
        except AnswerError as exc:
            self._rec.error(f"calculate {receipt.identity}: inconsistent answer: {exc}")
            return receipt.full_price()
        self._rec.offline_answers += applied.offline
        return applied

    async def _commit(self, kind: str, endpoint: str, identity: str, receipt: TillReceipt,
                      body: dict[str, Any]) -> bool:
        """Deliver a sale / refund / cancel until acknowledged; record the ack. True if acked."""
        mis = self._cfg.misbehaviour
        await self._maybe_bad_token(endpoint, body, self._cfg.commit_timeout_s)
        first = mis.resend_timeout_ms / 1000 if self._rng.random() < mis.resend_after_timeout else None
        done = await delivered(self._rec, f"{kind} {identity}", self._client.commit(
            endpoint, body, timeout_s=self._cfg.commit_timeout_s, retry_for_s=self._cfg.retry_for_s,
            first_timeout_s=first,
        ))
        if done is None:
            return False
        ack = self._ack(kind, identity, receipt, done)
        if ack is None:
            return False
        if kind == "sale" and self._rng.random() < mis.duplicate:
            try:
                again = await self._client.commit(endpoint, body, timeout_s=self._cfg.commit_timeout_s,
                                                  retry_for_s=self._cfg.retry_for_s)
            except (TransportError, RetriableStatus) as exc:
                self._rec.error(f"sale {identity}: duplicate resend not answered: {exc}")
                return True
            dup = self._ack(kind, identity, receipt, again)
            if dup is not None and (not dup.duplicate or dup.key != ack.key):
                self._rec.error(f"sale {identity}: resent sale not deduplicated "
                                f"(key {dup.key!r} vs {ack.key!r}, duplicate={dup.duplicate})")
        return True

    def _ack(self, kind: str, identity: str, receipt: TillReceipt, done: Delivery) -> Ack | None:
        reply = done.answer
        data = reply.data
        if reply.status != 200:
            self._rec.unacknowledged += 1
            self._rec.error(f"{kind} {identity}: HTTP {reply.status} {reply.error_text()}")
            return None
        if not isinstance(data, dict) or not isinstance(data.get("key"), str) \
                or not isinstance(data.get("duplicate"), bool):
            self._rec.error(f"{kind} {identity}: 200 without key/duplicate: {data!r}")
            return None
        ack = Ack(kind, identity, receipt.register_id, data["key"], data["duplicate"], done.attempts, data)
        self._rec.acks.append(ack)
        return ack

    async def _maybe_bad_token(self, endpoint: str, body: dict[str, Any], timeout_s: float) -> None:
        if not self._rng.random() < self._cfg.misbehaviour.bad_token:
            return
        wrong = f"wrong-{self._rng.getrandbits(64):016x}"
        try:
            reply = await self._client.post(endpoint, body, timeout_s=timeout_s, api_key=wrong)
        except TransportError as exc:
            self._rec.error(f"{endpoint} with a bad token: {exc}")
            return
        if reply.status == 401:
            self._rec.unauthorized += 1
        else:
            self._rec.error(f"{endpoint}: a wrong API key got HTTP {reply.status}, expected 401")

    async def _refund_one(self) -> None:
        candidates = [s for s in self._sold if not s.cancelled and any(s.remaining.values())]
        if not candidates:
            return
        sold = self._rng.choice(candidates)
        lines: dict[str, int] | None
        if sold.refunds == 0 and self._rng.random() < 0.3:
            lines = None  # the whole receipt
        else:
            open_ids = [k for k, v in sold.remaining.items() if v > 0]
            picked = self._rng.sample(open_ids, k=min(len(open_ids), self._rng.randint(1, 2)))
            lines = {k: self._refund_qty(sold, k) for k in picked}
        sold.refunds += 1
        refund_id = f"{sold.receipt.identity}/r{sold.refunds}"
        body = sold.receipt.refund_body(refund_id, lines, _now())
        if await self._commit("refund", "refunds", refund_id, sold.receipt, body):
            returned = dict(sold.remaining) if lines is None else lines
            for line_id, qty in returned.items():
                sold.remaining[line_id] -= qty

    def _refund_qty(self, sold: _Sold, line_id: str) -> int:
        left = sold.remaining[line_id]
        line = next(x for x in sold.receipt.lines if x.line_id == line_id)
        return return_qty(self._rng, left, weighted=line.product.weighted)

    async def _cancel_one(self) -> None:
        candidates = [s for s in self._sold if not s.cancelled and s.refunds == 0]
        if not candidates:
            return
        sold = self._rng.choice(candidates)
        sold.cancelled = True
        cancel_id = f"{sold.receipt.identity}/cancel"
        await self._commit("cancel", "cancels", cancel_id, sold.receipt, sold.receipt.cancel_body(cancel_id))


def _now() -> str:
    return datetime.now(MSK).isoformat(timespec="seconds")
