"""One simulated Modul Kassa register with our loyalty plugin, its misbehaviours, and the run.

Flow per check: ring up (native catalogue, piece and weight goods) → ``loyalty-request``
(again after every edit when misbehaving) → apply the impacts (split lines; a refused answer
is an error and the check goes on at full price; a timeout means identity impacts) →
``CHECK_CLOSED`` (SALE) with the Gson check, resent by the plugin's outbox until a 2xx →
now and then a RETURN of some lines of an earlier sale (its loyalty-request must get
identity impacts), or a check calculated then cancelled (``CHECK_CANCELLED``).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from simulators.registers.common import line_sum, printed_offline, rng_uuid
from simulators.registers.http import Poster, TransportError
from simulators.registers.modulkassa.messages import (
    CANCELLED,
    CLOSED,
    AnswerError,
    CheckLine,
    MkPosition,
    apply_impacts,
    check_json,
    check_key,
    event_body,
    identity_lines,
    request_body,
)
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
OPERATION, EVENT = "/v1/modulkassa/operation", "/v1/modulkassa/event"


@dataclass(frozen=True, slots=True)
class Misbehaviour:
    duplicate: float = 0.0  # an acknowledged CHECK_CLOSED sent again (expect duplicate)
    resend_after_timeout: float = 0.0  # the first close gives up after resend_timeout_ms, then resends
    resend_timeout_ms: int = 20
    close_before_answer: float = 0.0  # the check closes while the loyalty-request is in flight
    out_of_order: float = 0.0  # this close is delivered after the next check's close (held ones newest first)
    request_every_edit: float = 0.0  # a loyalty-request after each added position
    bad_token: float = 0.0
    missing_token: float = 0.0
    slow_read_ms: int = 0


@dataclass(frozen=True, slots=True)
class ModulKassaConfig:
    customer_share: float = 0.7
    redeem_share: float = 0.5
    refund_share: float = 0.1
    cancel_share: float = 0.05
    calc_timeout_s: float = 2.0
    commit_timeout_s: float = 5.0
    retry_for_s: float = 30.0
    misbehaviour: Misbehaviour = field(default_factory=Misbehaviour)


@dataclass
class _Sold:
    check_id: str
    lines: list[CheckLine]
    loyalty: dict[str, str]
    remaining: dict[str, int]  # position id -> qty not yet returned


class ModulKassaTill:
    def __init__(
        self,
        index: int,
        poster: Poster,
        rec: Recorder,
        *,
        rng: random.Random,
        token: str,
        shift: int,
        customers: Sequence[str],
        config: ModulKassaConfig,
    ) -> None:
        self._rng, self._poster, self._rec, self._cfg = rng, poster, rec, config
        self._token, self._customers, self._shift = token, list(customers), shift
        self.point, self.device, self.user = (
            f"rp-{index + 1:04d}",
            f"mk-{index + 1:02d}",
            f"u-{index + 1:04d}",
        )
        self._number = 0
        self._sold: list[_Sold] = []
        self._deferred: list[tuple[str, dict[str, Any]]] = []
        self._identified: set[str] = set()  # checks whose customer the gateway recognised

    def _positions(self) -> tuple[MkPosition, ...]:
        return tuple(
            MkPosition(
                f"p{i}",
                ln.product.sku,
                ln.product.sku,
                ln.product.name,
                ln.product.weighted,
                ln.product.price,
                ln.qty_milli,
            )
            for i, ln in enumerate(ring_up(self._rng), 1)
        )

    def _loyalty(self) -> dict[str, str]:
        out = {"device": self.device}
        if self._customers and self._rng.random() < self._cfg.customer_share:
            out["phone"] = self._rng.choice(self._customers)
            if self._rng.random() < self._cfg.redeem_share:
                out["redeem"] = "max"
        return out

    async def sell(self) -> None:
        check_id, positions, loyalty = rng_uuid(self._rng), self._positions(), self._loyalty()
        self._rec.receipts += 1
        mis = self._cfg.misbehaviour
        if self._rng.random() < mis.request_every_edit:
            for n in range(1, len(positions)):
                await self._calc(check_id, positions[:n], loyalty)
        if self._rng.random() < mis.close_before_answer:
            late = asyncio.create_task(
                self._calc(check_id, positions, loyalty), name=f"sim-mk-calc-{check_id}"
            )
            lines, blob = identity_lines(positions), ""
        else:
            late = None
            lines, blob = await self._calc(check_id, positions, loyalty)
        event_loyalty = {**loyalty, "data": blob} if blob else loyalty
        body = self._close_body(check_id, "SALE", lines, event_loyalty)
        if self._rng.random() < mis.out_of_order:
            self._deferred.append((check_id, body))
        else:
            if await self._deliver("sale", check_id, body, duplicate_ok=True):
                self._sold.append(
                    _Sold(check_id, lines, loyalty, {p.position_id: p.qty_milli for p in positions})
                )
            for old_id, old_body in reversed(self._deferred):  # the outbox catches up, newest first
                await self._deliver("sale", old_id, old_body)
            self._deferred.clear()
        if late is not None:
            await late
        await follow_up(self._rng, cancel_share=self._cfg.cancel_share, refund_share=self._cfg.refund_share,
                        cancel=self._cancel_one, refund=self._return_one)

    async def flush(self) -> None:
        for old_id, old_body in reversed(self._deferred):  # newest first: each after the next check's
            await self._deliver("sale", old_id, old_body)
        self._deferred.clear()

    def _close_body(
        self, check_id: str, doc_type: str, lines: list[CheckLine], loyalty: dict[str, str]
    ) -> dict[str, Any]:
        self._number += 1
        date = datetime.now(MSK).isoformat(timespec="milliseconds")
        text = check_json(
            check_id,
            doc_type,
            lines,
            number=self._number,
            shift=self._shift,
            point=self.point,
            user=self.user,
            date=date,
            payment=self._rng.choice(("CARD", "CASH")),
        )
        return event_body(CLOSED, check_id, text, sum(ln.amount for ln in lines), loyalty)

    def _headers(self, token: str | None = None) -> dict[str, str]:
        value = self._token if token is None else token
        return {"X-Gateway-Token": value} if value else {}

    async def _auth_probe(self, path: str, body: Any) -> None:
        mis, roll = self._cfg.misbehaviour, self._rng.random()
        if roll >= mis.bad_token + mis.missing_token:
            return
        token = f"wrong{self._rng.getrandbits(40):010x}" if roll < mis.bad_token else ""
        try:
            answer = await self._poster.send(
                path, body, headers=self._headers(token), timeout_s=self._cfg.commit_timeout_s
            )
        except TransportError as exc:
            self._rec.error(f"{path} with a bad token: {exc}")
            return
        if answer.status == 401 and isinstance(answer.data, dict) and answer.data.get("result") == "failed":
            self._rec.unauthorized += 1
        else:
            self._rec.error(f"{path}: a bad token got HTTP {answer.status}, expected 401 failed")

    async def _calc(
        self, check_id: str, positions: tuple[MkPosition, ...], loyalty: dict[str, str]
    ) -> tuple[list[CheckLine], str]:
        body = request_body(check_id, self.point, self.user, positions, loyalty)
        await self._auth_probe(OPERATION, body)
        try:
            answer = await self._poster.send(
                OPERATION, body, headers=self._headers(), timeout_s=self._cfg.calc_timeout_s
            )
        except TransportError as exc:  # the plugin answers identity impacts itself
            self._rec.timeouts += exc.timeout
            return identity_lines(positions), ""
        if answer.status != 200:
            self._rec.error(f"loyalty-request {check_id}: HTTP {answer.status} {answer.error_text()}")
            return identity_lines(positions), ""
        self._rec.calc_ms.append(answer.elapsed_ms)
        try:
            lines, blob = apply_impacts(positions, answer.data)
        except AnswerError as exc:
            self._rec.error(f"loyalty-request {check_id}: answer refused: {exc}")
            return identity_lines(positions), ""
        if printed_offline(_printable(answer.data)):
            self._rec.offline_answers += 1
        if loyalty.get("phone") and _printable(answer.data) and check_id not in self._identified:
            self._identified.add(check_id)  # the gateway knew the customer: once per check
            self._rec.identified += 1
        return lines, blob

    async def _deliver(
        self, kind: str, check_id: str, body: dict[str, Any], *, duplicate_ok: bool = False, key: str = ""
    ) -> bool:
        mis = self._cfg.misbehaviour
        await self._auth_probe(EVENT, body)
        first = mis.resend_timeout_ms / 1000 if self._rng.random() < mis.resend_after_timeout else None
        ack = await self._once(kind, check_id, body, first, key)
        if ack is not None and duplicate_ok and self._rng.random() < mis.duplicate:
            again = await self._once(kind, check_id, body, None, key)
            if again is not None and not again.duplicate:
                self._rec.error(f"{kind} {check_id}: resent CHECK_CLOSED not deduplicated")
        return ack is not None

    async def _once(
        self, kind: str, check_id: str, body: dict[str, Any], first: float | None, key: str
    ) -> Ack | None:
        return await accepted(
            self._rec,
            self._poster.deliver(
                EVENT, body, headers=self._headers(), timeout_s=self._cfg.commit_timeout_s,
                retry_for_s=self._cfg.retry_for_s, first_timeout_s=first,
            ),
            kind=kind, identity=check_id, register_id=self.device, key=key or check_key(check_id),
        )

    async def _return_one(self) -> None:
        rng = self._rng
        sold = pick_returnable(rng, self._sold)
        if sold is None:
            return
        picked = rng.sample([k for k, v in sold.remaining.items() if v > 0], k=1)
        lines: list[CheckLine] = []
        positions: list[MkPosition] = []
        for pid in picked:
            left = sold.remaining[pid]
            sale_lines = [ln for ln in sold.lines if ln.position.position_id == pid]
            pos = sale_lines[0].position
            qty = return_qty(rng, left, weighted=pos.weighted)
            paid = sum(ln.amount for ln in sale_lines) * qty // pos.qty_milli
            lines.append(CheckLine(replace(pos, qty_milli=qty), qty, paid, line_sum(pos.price, qty) - paid))
            positions.append(replace(pos, qty_milli=qty))
            sold.remaining[pid] -= qty
        return_id = rng_uuid(rng)
        loyalty = {**sold.loyalty, "docType": "RETURN", "saleCheckId": sold.check_id}
        loyalty.pop("redeem", None)
        got, _ = await self._calc(return_id, tuple(positions), loyalty)
        if any(ln.discount for ln in got):
            self._rec.error(
                f"return {return_id}: the loyalty-request got a discount, expected identity impacts"
            )
        await self._deliver("refund", return_id, self._close_body(return_id, "RETURN", lines, loyalty))

    async def _cancel_one(self) -> None:
        check_id, positions = rng_uuid(self._rng), self._positions()
        loyalty = self._loyalty()
        if self._customers:
            loyalty.update(phone=self._rng.choice(self._customers), redeem="max")
        lines, blob = await self._calc(check_id, positions, loyalty)  # a cancel, not a receipt asked for
        body = event_body(
            CANCELLED, check_id, None, sum(ln.amount for ln in lines), {**loyalty, "data": blob}
        )
        await self._deliver("cancel", check_id, body, key=f"modulkassa:cancel:{check_id}")


async def run_tills(
    gateway_url: str,
    token: str,
    *,
    tills: int = 4,
    receipts: int = 100,
    seed: int | None = None,
    customers: Sequence[str] = (),
    config: ModulKassaConfig | None = None,
    shift: int | None = None,
) -> SimReport:
    """Run ``tills`` registers until ``receipts`` checks are rung up; return what happened."""
    config = config or ModulKassaConfig()
    seed = resolve_seed(seed)
    shift = shift if shift is not None else int(datetime.now(UTC).strftime("%j%H"))

    def build(i: int, poster: Poster, recorder: Recorder) -> ModulKassaTill:
        return ModulKassaTill(i, poster, recorder, rng=random.Random(f"modulkassa:{seed}:{i}"), token=token,
                              shift=shift, customers=customers, config=config)

    return await run_fleet(
        name="modulkassa", tills=tills, receipts=receipts, seed=seed, build=build,
        connect=lambda session: Poster(session, gateway_url, slow_read_ms=config.misbehaviour.slow_read_ms),
    )


def _printable(answer: object) -> object:
    """The ``printable_data`` of a ``succeeded`` answer (None when it has none)."""
    data = answer.get("data") if isinstance(answer, dict) else None
    return data.get("printable_data") if isinstance(data, dict) else None
