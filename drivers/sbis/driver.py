"""The SBIS (Saby) poll driver: fiscal documents from the SBIS OFD cloud, accrued after the fact.

``run(ctx)`` calls :func:`gateway.poll.poll` with a :class:`Source` whose ``fetch`` reads every
active fiscal drive once per round: list registers and their drives (every ``drives_refresh_s``),
then per drive the docs of the main window and, every ``gap_recheck_s``, of the windows around
missing document numbers; a window answered with ``page_limit`` rows is halved and read again.

Invariants (see also :mod:`drivers.sbis.cursor`):
- the page holds only documents the cursor has not passed, in (drive, FD) order; the next cursor
  passes exactly those, and :mod:`gateway.poll` writes it only after all were stored or skipped;
- a document already passed is never submitted again: it is checked against the fiscal sign
  first read (``fd:<fn>:<fd>`` in ctx.state, kept ``sign_keep_s``); another sign raises the alarm
  ``fiscal_sign:<fn>`` (kept across restarts), never a second sale;
- a return's decision (which sale, lines or amount) is stored (``ret:<fn>:<fd>``) before its event
  is built, and the sale index per register and customer (``sales:<reg>:<index_phone or ->``, kept
  ``return_keep_s``) is written as sales are read, so a re-read builds the same event;
- a receipt whose buyer phone cannot be read is accrued without a customer, never silently: a
  warning and the alarm ``buyer:<fn>`` name the document;
- one drive failing (5xx, HTML page, timeout, malformed page) holds that drive back with its own
  backoff and does not hold the others; a 429 or an auth failure stops the round (account-wide);
  a round where nothing could be read raises, so gateway.poll backs off.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiohttp import web

from drivers.sbis import NAME, cursor, mapping, wire
from drivers.sbis.client import Client
from drivers.sbis.config import Config
from gateway.driver import DriverContext, Finding
from gateway.errors import BadInput
from gateway.poll import SKIPPED_PREFIX, Page, PollOptions, poll
from gateway.receipt import Event, Receipt

INDEX_MAX = 200  # sales remembered per register and customer
ALARMS_KEY = "alarms"
ALARM_KEEP_S = 30 * 86_400.0


@dataclass(frozen=True, slots=True)
class Taken:
    """A document of the page as read, with what was decided for it before the page was returned."""

    listed: wire.Listed
    register_id: str
    receipt: Receipt | None = None
    decision: mapping.Decision | None = None
    error: BadInput | None = None
    op: int = 0


@dataclass(frozen=True, slots=True)
class Active:
    reg: str
    fn: str
    start: float  # raw: effectiveFrom (or the horizon)
    fresh: bool  # the drive began within the horizon: its numbers are expected from 1


class Source:
    """The :class:`gateway.poll.PollSource` of SBIS (see the module docstring)."""

    def __init__(
        self, ctx: DriverContext, client: Client, config: Config, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.ctx, self.client, self.cfg, self.clock = ctx, client, config, clock
        self._drives: list[Active] = []
        self._drives_at = float("-inf")
        self._hold: dict[str, tuple[float, int]] = {}  # fn -> (not before, failures)
        self._alarms: dict[str, tuple[str, float]] = {}  # key -> (message, raised at: Unix time)
        self._alarms_loaded = self._alarms_dirty = False

    # ------------------------------------------------------------------ PollSource

    def doc_id(self, doc: Taken) -> str:
        if doc.listed.fd is None:
            return "row-" + _digest(doc.listed.body)
        return mapping.doc_id(doc.listed.fn, doc.listed.fd)

    def to_event(self, doc: Taken) -> Event | None:
        if doc.error is not None:
            raise doc.error
        if doc.receipt is None:
            return None
        key = mapping.doc_key(doc.listed.fn, doc.listed.fd or 0)
        if doc.op == mapping.SALE:
            return mapping.sale_of(doc.receipt, key)
        assert doc.decision is not None
        return mapping.refund_of(doc.receipt, key, doc.decision)

    async def fetch(self, text: str | None) -> Page[Taken]:
        await self._load_alarms()
        try:
            return await self._round(text)
        finally:
            await self._save_alarms()

    async def _round(self, text: str | None) -> Page[Taken]:
        now = self.clock()
        now_raw = self._raw(now)
        try:
            cur = cursor.Cursor.decode(text) if text else cursor.Cursor(since=now_raw - self.cfg.backfill_s)
        except ValueError as exc:  # a damaged state row: nothing is read until an operator looks
            self._alarm(
                "cursor",
                f"the stored cursor cannot be read ({exc}): polling stopped; restore the "
                "gateway's outbox file from backup or remove the sbis poll:cursor state row",
            )
            raise
        try:
            active = await self._active(cur, now, now_raw)
        except wire.VendorError as exc:  # gateway.poll counts, logs and backs off
            self._refused("registers", exc)
            raise
        self._alarm("rights:registers", None)
        page: list[Taken] = []
        failures: list[BaseException] = []
        read = 0
        for drive in active:
            hold = self._hold.get(drive.fn)
            if hold is not None and hold[0] > time.monotonic():
                continue
            try:
                taken, state = await self._drive(cur, drive, now, now_raw)
            except (wire.VendorError, aiohttp.ClientError, TimeoutError) as exc:
                failures.append(exc)
                account_wide = isinstance(exc, wire.VendorError) and exc.kind in ("rate", "auth")
                self._failed(drive.fn, exc, hold_drive=not account_wide)
                if account_wide:
                    break
                continue
            self._hold.pop(drive.fn, None)
            self._alarm(f"rights:{drive.fn}", None)
            read += 1
            page += taken
            cur = cur.with_drive(drive.fn, state)
        if failures and not read:
            raise failures[0]
        if read:
            self._alarm("auth", None)
        return Page(page, cur.encode())

    # ------------------------------------------------------------------ drives

    def _raw(self, now: float) -> float:
        return mapping.raw_of(datetime.fromtimestamp(now, UTC), self.cfg.doc_time_zone)

    async def _active(self, cur: cursor.Cursor, now: float, now_raw: float) -> list[Active]:
        """The drives to read this round: every register's current drive and any replaced one
        still within ``closed_drive_s`` of its end or with open gaps (listed every drives_refresh_s)."""
        if now - self._drives_at >= self.cfg.drives_refresh_s or not self._drives:
            drives: list[Active] = []
            for reg in wire.registers(await self.client.get(wire.kkts_path(self.cfg.inn), {"status": "2"})):
                if self.cfg.only_mapped and reg.reg_id not in self.cfg.registers:
                    continue
                stores = wire.storages(await self.client.get(wire.storages_path(self.cfg.inn, reg.reg_id)))
                if not stores and reg.fn:
                    stores = [wire.Storage(reg.fn, None, None)]
                for s in stores:
                    known = cur.drives.get(s.fn)
                    ended = s.effective_to is not None and s.effective_to < now_raw - self.cfg.closed_drive_s
                    if ended and not (known and known.gaps):
                        continue
                    if s.effective_to is not None and s.effective_to < cur.since and known is None:
                        continue
                    began = s.effective_from if s.effective_from is not None else cur.since - 1
                    drives.append(Active(reg.reg_id, s.fn, max(cur.since, began), began >= cur.since))
            self._drives, self._drives_at = drives, now
        return self._drives

    def _refused(self, what: str, exc: BaseException) -> None:
        """The alarms of refusals only the shop owner can cure (credentials, rights)."""
        if isinstance(exc, wire.VendorError) and exc.kind == "auth":
            self._alarm("auth", f"SBIS refused the credentials ({exc}): check [drivers.{NAME}] keys or login")
        if isinstance(exc, wire.VendorError) and exc.kind == "rights":
            self._alarm(f"rights:{what}", f"SBIS answered 403 for {what}: give the account OFD read rights")

    def _failed(self, fn: str, exc: BaseException, *, hold_drive: bool) -> None:
        self.ctx.count("poll_failed")
        self.ctx.log.warning(
            "sbis: reading a fiscal drive failed",
            extra={"driver": self.ctx.name, "fn": fn, "error": repr(exc)},
        )
        self._refused(fn, exc)
        if hold_drive:
            failures = self._hold.get(fn, (0.0, 0))[1] + 1
            wait = min(self.cfg.backoff_max_s, self.cfg.backoff_initial_s * 2 ** (failures - 1))
            self._hold[fn] = (time.monotonic() + random.uniform(wait / 2, wait), failures)

    # ------------------------------------------------------------------ one drive

    async def _drive(
        self, cur: cursor.Cursor, active: Active, now: float, now_raw: float
    ) -> tuple[list[Taken], cursor.Drive]:
        fn, cfg = active.fn, self.cfg
        state = cur.drives.get(fn) or cursor.Drive(active.reg, active.start, fresh=active.fresh)
        spans, rechecked = cursor.windows(
            state,
            now_raw=now_raw,
            now=now,
            overlap_s=cfg.overlap_s,
            ahead_s=cfg.ahead_s,
            gap_recheck_s=cfg.gap_recheck_s,
        )
        rows: dict[int, wire.Listed] = {}
        unnamed: list[wire.Listed] = []
        for a, b in spans:
            for row in await self._window(active.reg, fn, max(a, 0.0), b):
                if row.fd is None:
                    unnamed.append(row)
                elif row.fd in rows:
                    await self._same_sign(fn, row.fd, rows[row.fd].body, row.body)
                else:
                    rows[row.fd] = row
        register_id = cfg.registers.get(active.reg, active.reg)
        taken: list[Taken] = []
        for row in unnamed:
            if await self.ctx.state.get(SKIPPED_PREFIX + "row-" + _digest(row.body)) is None:
                taken.append(
                    Taken(
                        row,
                        register_id,
                        error=BadInput("a docs row without a fiscal document number", "fiscalDocumentNumber"),
                    )
                )
        new: list[tuple[int, float | None]] = []
        for fd in sorted(rows):
            row = rows[fd]
            if state.passed(fd):
                if row.kind == wire.RECEIPT:
                    await self._check_sign(fn, fd, row.body)
                continue
            taken.append(await self._prepare(active.reg, register_id, row, now_raw))
            new.append((fd, row.at if row.at is not None and _sane(row.at, now_raw) else None))
        after = cursor.advance(state, new, now)
        if rechecked:
            after = replace(after, checked=now)
        after, gone = cursor.age(after, now, cfg.gap_max_age_s)
        for g in gone:
            self.ctx.log.error(
                "sbis: fiscal documents never reached the OFD, given up",
                extra={"driver": self.ctx.name, "fn": fn, "from": g.lo, "to": g.hi},
            )
            self._alarm(
                f"gap:{fn}",
                f"fiscal documents {g.lo}..{g.hi} of drive {fn} did not reach the OFD "
                f"in {cfg.gap_max_age_s / 86400:.0f} days: their sales were not accrued; check the "
                "till's OFD connection, then accrue them by hand",
            )
        return taken, after

    async def _window(self, reg: str, fn: str, a: float, b: float) -> list[wire.Listed]:
        """Every document of [a, b]; a full answer (page_limit rows) is halved and read again."""
        data = await self.client.get(
            wire.docs_path(self.cfg.inn, reg, fn), wire.docs_query(a, b, self.cfg.page_limit)
        )
        rows = wire.documents(data, fn)
        if len(rows) < self.cfg.page_limit:
            return rows
        if b - a <= 1:
            self._alarm(
                f"window_full:{fn}",
                f"more than page_limit={self.cfg.page_limit} documents of drive {fn} "
                f"in one second at {wire.format_time(a)}: raise page_limit",
            )
            return rows
        mid = a + (b - a) // 2
        return await self._window(reg, fn, a, mid) + await self._window(reg, fn, mid, b)

    async def _prepare(self, reg: str, register_id: str, row: wire.Listed, now_raw: float) -> Taken:
        """Decide what the document becomes; the sign record, sale index and return decision are
        stored now (before the event), so a re-read decides the same."""
        fd = row.fd or 0
        if row.kind != wire.RECEIPT:
            return Taken(row, register_id)
        try:
            op = mapping.operation(row.body)
            if op not in (mapping.SALE, mapping.SALE_RETURN):
                return Taken(row, register_id, op=op)
            receipt = mapping.receipt_of(
                row.body,
                fn=row.fn,
                fd=fd,
                register_id=register_id,
                zone=self.cfg.doc_time_zone,
                store_id=self.cfg.store_id,
            )
        except BadInput as exc:
            return Taken(row, register_id, error=exc)
        await self._check_sign(row.fn, fd, row.body)
        if receipt.customer is None:
            self._unreadable_buyer(row.fn, fd, row.body.get("buyerPhoneOrAddress"))
        at = row.at if row.at is not None else now_raw
        who = mapping.index_phone(receipt.customer.value) if receipt.customer else "-"
        index_key = f"sales:{reg}:{who}"
        entries = [
            mapping.SaleEntry.from_json(e) for e in json.loads(await self.ctx.state.get(index_key) or "[]")
        ]
        key = mapping.doc_key(row.fn, fd)
        if op == mapping.SALE:
            if all(e.key != key for e in entries):
                entries.append(mapping.sale_entry(receipt, key, at))
                await self._put_index(index_key, entries, now_raw)
            return Taken(row, register_id, receipt, op=op)
        stored = await self.ctx.state.get(f"ret:{row.fn}:{fd}")
        if stored is not None:
            return Taken(row, register_id, receipt, mapping.Decision.from_json(stored), op=op)
        decision, entry = mapping.match_return(receipt, entries, at)
        await self.ctx.state.put(f"ret:{row.fn}:{fd}", decision.to_json(), keep_s=self.cfg.sign_keep_s)
        if entry is not None:
            await self._put_index(index_key, [entry if e.key == entry.key else e for e in entries], now_raw)
        return Taken(row, register_id, receipt, decision, op=op)

    def _unreadable_buyer(self, fn: str, fd: int, value: object) -> None:
        """A buyer contact that is neither a phone nor an e-mail: the document is accrued without a
        customer; the log line and the alarm ``buyer:<fn>`` (latest document; cleared after
        ALARM_KEEP_S) say which, so the points can be accrued by hand."""
        _, why = mapping.buyer(value)
        if not why:
            return
        self.ctx.log.warning(
            "sbis: the receipt's buyer phone cannot be read; accrued without a customer",
            extra={"driver": self.ctx.name, "fn": fn, "fd": fd, "error": why},  # no personal data
        )
        self._alarm(
            f"buyer:{fn}",
            f"receipt {fd} of drive {fn} names a buyer phone that cannot be read ({why}): accrued "
            "without a customer; accrue its points by hand and ask the cashier to type the phone as digits",
        )

    async def _put_index(self, key: str, entries: list[mapping.SaleEntry], now_raw: float) -> None:
        keep = [e for e in entries if e.at >= now_raw - self.cfg.return_keep_s and e.left > 0][-INDEX_MAX:]
        await self.ctx.state.put(
            key, json.dumps([e.to_json() for e in keep], ensure_ascii=False), keep_s=self.cfg.return_keep_s
        )

    async def _check_sign(self, fn: str, fd: int, body: Mapping[str, Any]) -> None:
        sign = str(body.get("fiscalSign", ""))
        key = f"fd:{fn}:{fd}"
        known = await self.ctx.state.get(key)
        if known is None:
            await self.ctx.state.put(key, sign, keep_s=self.cfg.sign_keep_s)
        elif known != sign:
            self._sign_mismatch(fn, fd, known, sign)

    async def _same_sign(self, fn: str, fd: int, a: Mapping[str, Any], b: Mapping[str, Any]) -> None:
        if str(a.get("fiscalSign", "")) != str(b.get("fiscalSign", "")):
            self._sign_mismatch(fn, fd, str(a.get("fiscalSign", "")), str(b.get("fiscalSign", "")))

    def _sign_mismatch(self, fn: str, fd: int, known: str, seen: str) -> None:
        self.ctx.log.error(
            "sbis: a fiscal document came back with another fiscal sign; not counted again",
            extra={"driver": self.ctx.name, "fn": fn, "fd": fd, "stored": known, "read": seen},
        )
        self._alarm(
            f"fiscal_sign:{fn}",
            f"document {fd} of drive {fn} was read with fiscal sign {seen}, "
            f"first read with {known}: counted once; check the document in SBIS (OFD) and the till",
        )

    def _alarm(self, key: str, message: str | None, since: float | None = None) -> None:
        """Raise or clear an alarm. Raised alarms are saved at the end of the round, raised again
        after a restart, and cleared ALARM_KEEP_S after they were raised (or when the cause is gone:
        auth and rights on the next good read)."""
        known = self._alarms.get(key)
        if (known[0] if known else None) == message:
            return
        self.ctx.alarm(key, message)
        if message is None:
            self._alarms.pop(key, None)
        else:
            self._alarms[key] = (message, self.clock() if since is None else since)
        self._alarms_dirty = True

    async def _load_alarms(self) -> None:
        if not self._alarms_loaded:
            text = await self.ctx.state.get(ALARMS_KEY)
            with contextlib.suppress(ValueError, TypeError, AttributeError):
                for key, (message, since) in dict(json.loads(text or "{}")).items():
                    self._alarm(str(key), str(message), float(since))
            self._alarms_loaded, self._alarms_dirty = True, False
        for key, (_, since) in list(self._alarms.items()):
            if self.clock() - since >= ALARM_KEEP_S:
                self._alarm(key, None)

    async def _save_alarms(self) -> None:
        if self._alarms_dirty:
            await self.ctx.state.put(
                ALARMS_KEY, json.dumps(self._alarms, ensure_ascii=False), keep_s=ALARM_KEEP_S
            )
            self._alarms_dirty = False


def _digest(body: Any) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _sane(at: float, now_raw: float) -> bool:
    return 946_684_800.0 <= at <= now_raw + 2 * 86_400.0  # 2000-01-01 .. two days ahead


class SbisDriver:
    name = NAME
    edge = None

    def __init__(self, config: Config) -> None:
        self.config = config

    def options(self) -> PollOptions:
        c = self.config
        return PollOptions(
            interval_s=c.interval_s,
            fetch_timeout_s=c.fetch_timeout_s,
            backoff_initial_s=c.backoff_initial_s,
            backoff_max_s=c.backoff_max_s,
        )

    def routes(self, ctx: DriverContext) -> list[web.RouteDef]:
        return []

    async def run(self, ctx: DriverContext) -> None:
        async with aiohttp.ClientSession() as session:
            client = Client(session, self.config)
            try:
                await poll(ctx, Source(ctx, client, self.config), self.options())
            finally:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(self.config.connect_timeout_s):
                        await client.close()


def create(options: Mapping[str, Any]) -> SbisDriver:
    """The registry factory: ``options`` is the ``[drivers.sbis]`` section without ``enabled``."""
    return SbisDriver(Config.model_validate(dict(options)))


def check(options: Mapping[str, Any]) -> list[Finding]:
    """What the Config cannot say alone: the credentials the chosen auth needs, the INN."""
    try:
        cfg = Config.model_validate(dict(options))
    except Exception as exc:  # the loader reports it in detail; here one finding
        return [Finding("FAIL", "", f"invalid section: {exc}", "see drivers/sbis/sample.toml")]
    out = []
    if not cfg.inn:
        out.append(
            Finding(
                "FAIL",
                "inn",
                "no organisation INN: nothing can be polled",
                "set inn to the 10 or 12 digits of the organisation in SBIS",
            )
        )
    if cfg.auth == "token" and not (
        cfg.app_client_id and cfg.app_secret.get_secret_value() and cfg.secret_key.get_secret_value()
    ):
        out.append(
            Finding(
                "FAIL",
                "app_client_id",
                "auth = token needs app_client_id, app_secret and secret_key",
                "copy them from the service app in SBIS (README: what the shop owner sets up)",
            )
        )
    if cfg.auth == "login" and not (cfg.login and cfg.password.get_secret_value()):
        out.append(
            Finding(
                "FAIL",
                "login",
                "auth = login needs login and password",
                "set the SBIS user's login and password (or use auth = token)",
            )
        )
    return out
