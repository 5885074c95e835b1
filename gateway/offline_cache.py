"""On-disk state of the offline policy: the program and balance snapshot cache, and the ledger
of points granted offline.

- :class:`OfflineCache`: the program (``GetProgram``'s ``config_json``, parsed with
  :func:`gateway.rules.program.program_from_json`) and the balance snapshot (every
  ``GetBalances`` page), each in one JSON file under ``data_dir`` (``program.json``,
  ``balances.json``), loaded at start (so offline answers work after a restart with the core
  down) and refreshed in the background by :meth:`OfflineCache.refresh_loop`, every call with
  its own deadline. A refresh replaces a snapshot only when it was fetched completely; on
  failure the old copy stays and the failure is logged once per new problem. Customers are
  found by phone (normalised to E.164), card or customer id; app codes / QR payloads never
  (they live only in the core). Between two full snapshots, every ``recent_every_s`` (5 s) the
  customers the core changed since the last fetch (``GetBalances`` with ``active_since``, on the
  core's own clock, with a margin) are merged in (:meth:`OfflineCache.refresh_recent`), so a
  customer registered a few seconds before the core link drops is found offline; the file is
  rewritten when such a merge brings someone new (the snapshot's ``fetched_at`` stays the full
  fetch's).
- :class:`OfflineLedger`: the points granted offline per (shift day, customer) across every
  register of the gateway, kept in memory and written to ``offline_grants.json`` on every
  change, so a restart does not reset the per-shift limit. The shift day is the gateway's own
  (:func:`gateway.offline.shift_day`, the program's local date), not a register's shift number.
  Entries are per receipt (a recalculation replaces its receipt's entry); days whose first
  grant is older than three days are dropped. Files of the old format (``"shifts"`` keyed by
  register + shift) cannot be mapped onto days: their entries are dropped at load with one
  warning line (at worst a customer gets the limit once more on the day of the upgrade), and
  the next write stores the new format (``"days"``).

Both files also record when they were fetched (``fetched_at``; the balance snapshot's age is
:meth:`OfflineCache.snapshot_age_s`) and the program version the core reported; the program file's
``fetched_at`` and the snapshot's ``program_version`` are kept in the format for operators and for
older gateways reading the files, not read by this one.

Invariants: files are written atomically (temp file, fsync, rename) and carry ``"v": 1``; a
corrupt file is moved aside (``<name>.corrupt-<time>``) and reported, never crash-looped on.
Ages use the wall clock (``wall``) because they survive restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.errors import BusinessRejection, CoreUnavailable
from gateway.receipt import CustomerId, IdKind
from gateway.rules.identity import normalize_phone
from gateway.rules.program import Program, program_from_json

if TYPE_CHECKING:
    from gateway.core_client import CoreCalls
    from gateway.core_pb.loyalty.v1 import loyalty_pb2 as pb

log = logging.getLogger("posgw.offline")

FORMAT_VERSION = 1
LEDGER_KEEP_S = 3 * 86400
RETRY_S = 5.0  # a failed refresh is tried again this soon (a gateway started before its core: minutes early)
RECENT_MARGIN_S = 30.0  # an incremental fetch asks for changes since the last fetch minus this (core clock)


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so a reader sees the old or the new file, never a torn one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    if os.name == "posix":  # make the rename itself durable (directories cannot be opened on Windows)
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def read_json(path: Path) -> dict[str, Any] | None:
    """The file's JSON object; None when absent; a corrupt file is moved aside and reported."""
    try:
        data = json.loads(path.read_bytes())
        if not isinstance(data, dict) or data.get("v") != FORMAT_VERSION:
            raise ValueError("not a version-1 JSON object")
        return data
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        aside = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
        log.error("offline file unreadable, moved aside",
                  extra={"file": str(path), "aside": str(aside), "error": str(exc)})
        try:
            os.replace(path, aside)
        except OSError:
            pass
        return None


@dataclass(frozen=True, slots=True)
class SnapshotEntry:
    """One customer as the core last reported them (``BalanceEntry``)."""

    customer_id: str
    phone: str = ""
    cards: tuple[str, ...] = ()
    display_name: str = ""
    tier: str = ""
    ordinary_points: int = 0
    certificate_points: int = 0
    debt: int = 0
    blocked: bool = False
    held_points: int = 0

    @classmethod
    def from_pb(cls, e: pb.BalanceEntry) -> SnapshotEntry:
        return cls(
            e.customer_id,
            e.phone,
            tuple(e.cards),
            e.display_name,
            e.tier,
            e.ordinary_points,
            e.certificate_points,
            e.debt,
            e.blocked,
            e.held_points,
        )

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> SnapshotEntry:
        return cls(
            str(d["customer_id"]),
            str(d.get("phone", "")),
            tuple(d.get("cards", ())),
            str(d.get("display_name", "")),
            str(d.get("tier", "")),
            int(d.get("ordinary_points", 0)),
            int(d.get("certificate_points", 0)),
            int(d.get("debt", 0)),
            bool(d.get("blocked", False)),
            int(d.get("held_points", 0)),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "customer_id": self.customer_id,
            "phone": self.phone,
            "cards": list(self.cards),
            "display_name": self.display_name,
            "tier": self.tier,
            "ordinary_points": self.ordinary_points,
            "certificate_points": self.certificate_points,
            "debt": self.debt,
            "blocked": self.blocked,
            "held_points": self.held_points,
        }


def _card(text: str) -> str:
    return "".join(text.split())


class OfflineCache:
    PROGRAM_FILE = "program.json"
    BALANCES_FILE = "balances.json"

    def __init__(
        self,
        data_dir: Path,
        core: CoreCalls | None = None,
        *,
        program_every_s: float = 60.0,
        balances_every_s: float = 300.0,
        call_timeout_s: float = 10.0,
        active_days: int = 0,
        page_size: int = 1000,
        region: str = "RU",
        wall: Callable[[], float] = time.time,
        recent_every_s: float = 5.0,
        retry_s: float = RETRY_S,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.core = core
        self.program_every_s = program_every_s
        self.balances_every_s = balances_every_s
        self.call_timeout_s = call_timeout_s
        self.active_days = active_days  # 0 = every customer, else those active in the last N days
        self.page_size = page_size
        self.region = region
        self.wall = wall
        self.recent_every_s = recent_every_s  # 0: full snapshots only
        self.retry_s = retry_s  # after a failed refresh, the next attempt this soon (when shorter)
        self.core_snapshot_at: datetime | None = None  # the core's clock at the last fetch of balances
        self.snapshot_program_version = ""  # the program version the core named with the balances
        self.program: Program | None = None
        self.program_version = ""
        self.snapshot_fetched_at: float | None = None
        self.last_error = ""
        self._refreshing = asyncio.Lock()
        self._entries: dict[str, SnapshotEntry] = {}
        self._by_phone: dict[str, str] = {}
        self._by_card: dict[str, str] = {}

    # ------------------------------------------------------------ state

    def load(self) -> None:
        """Read both files (start-up); a missing or corrupt file leaves that part empty."""
        prog = read_json(self.data_dir / self.PROGRAM_FILE)
        if prog is not None:
            try:
                self._set_program(program_from_json(str(prog["config_json"])), str(prog.get("version", "")))
            except (KeyError, TypeError, ValueError) as exc:
                log.error("cached program unusable",
                          extra={"file": str(self.data_dir / self.PROGRAM_FILE), "error": str(exc)})
        bal = read_json(self.data_dir / self.BALANCES_FILE)
        if bal is not None:
            try:
                entries = [SnapshotEntry.from_json(d) for d in bal["customers"]]
                self._set_entries(entries, float(bal["fetched_at"]))
            except (KeyError, TypeError, ValueError) as exc:
                log.error("cached balances unusable",
                          extra={"file": str(self.data_dir / self.BALANCES_FILE), "error": str(exc)})
        log.info("offline cache loaded",
                 extra={"program": self.program_version or "-", "customers": len(self._entries)})

    def _set_program(self, program: Program, version: str) -> None:
        self.program, self.program_version = program, version

    def _set_entries(self, entries: list[SnapshotEntry], fetched_at: float) -> None:
        by_id = {e.customer_id: e for e in entries}
        by_phone: dict[str, str] = {}
        by_card: dict[str, str] = {}
        for e in entries:
            if e.phone:
                try:
                    by_phone[normalize_phone(e.phone, self.region)] = e.customer_id
                except ValueError:
                    by_phone[e.phone] = e.customer_id
            for card in e.cards:
                by_card[_card(card)] = e.customer_id
        self._entries, self._by_phone, self._by_card = by_id, by_phone, by_card
        self.snapshot_fetched_at = fetched_at

    @property
    def customer_count(self) -> int:
        return len(self._entries)

    def snapshot_age_s(self) -> float | None:
        """Seconds since the balance snapshot was fetched; None when there is none."""
        return None if self.snapshot_fetched_at is None else max(0.0, self.wall() - self.snapshot_fetched_at)

    def find(self, customer: CustomerId) -> SnapshotEntry | None:
        """The snapshot entry for a phone, card or customer id; None for app codes / QR payloads
        (they cannot be resolved without the core) and for anyone not in the snapshot."""
        kind = IdKind(customer.kind)
        cid: str | None = None
        if kind == IdKind.PHONE:
            try:
                cid = self._by_phone.get(normalize_phone(customer.value, self.region))
            except ValueError:
                return None
        elif kind == IdKind.CARD:
            cid = self._by_card.get(_card(customer.value))
        elif kind == IdKind.CUSTOMER_ID:
            cid = customer.value
        return None if cid is None else self._entries.get(cid)

    # ------------------------------------------------------------ refresh

    async def refresh(self, *, program: bool = True, balances: bool = True) -> bool:
        """Fetch the program and / or the balances from the core; True when all asked for were
        refreshed."""
        if self.core is None:
            return False
        async with self._refreshing:  # one refresh at a time: they write the same files
            ok_program = await self._refresh_program(self.core) if program else True
            ok_balances = await self._refresh_balances(self.core) if balances else True
        if ok_program and ok_balances:
            if self.last_error:
                log.info("offline cache refreshed again", extra={"customers": len(self._entries)})
            self.last_error = ""
        return ok_program and ok_balances

    def _failed(self, what: str, exc: Exception) -> None:
        message = f"{what}: {exc}"
        if message != self.last_error:  # one line per new problem, not one per attempt
            log.warning("offline cache refresh failed, keeping the old copy",
                        extra={"call": what, "error": str(exc)})
        self.last_error = message

    async def _refresh_program(self, core: CoreCalls) -> bool:
        try:
            reply = await core.get_program(timeout=self.call_timeout_s)
            program = program_from_json(reply.config_json)
        except CoreUnavailable as exc:
            self._failed("GetProgram", exc)
            return False
        except BusinessRejection as exc:
            self._failed("GetProgram", exc)
            return False
        except (KeyError, TypeError, ValueError) as exc:  # a bad document must not kill the refresher
            self._failed("GetProgram (unparseable program)", exc)
            return False
        now = self.wall()
        if reply.version != self.program_version or self.program is None:
            doc = {
                "v": FORMAT_VERSION,
                "program_id": reply.program_id,
                "version": reply.version,
                "config_json": reply.config_json,
                "fetched_at": now,
            }
            await asyncio.to_thread(atomic_write, self.data_dir / self.PROGRAM_FILE, dumps(doc))
        self._set_program(program, reply.version)
        return True

    async def _refresh_balances(self, core: CoreCalls) -> bool:
        since = None
        if self.active_days > 0:
            since = datetime.fromtimestamp(self.wall(), UTC) - timedelta(days=self.active_days)
        try:
            entries, version, core_at = await self._fetch(core, since)
        except (CoreUnavailable, BusinessRejection) as exc:  # keep the old copy
            self._failed("GetBalances", exc)
            return False
        now = self.wall()
        self.snapshot_program_version = version
        await self._store(entries, now)
        self._set_entries(entries, now)
        self.core_snapshot_at = core_at
        return True

    async def _fetch(
        self, core: CoreCalls, since: datetime | None,
    ) -> tuple[list[SnapshotEntry], str, datetime | None]:
        """Every page: the entries, the program version and the core's clock at the first page."""
        entries: list[SnapshotEntry] = []
        version = ""
        core_at: datetime | None = None
        async for page in core.balance_pages(timeout=self.call_timeout_s, active_since=since,
                                             page_size=self.page_size):
            entries.extend(SnapshotEntry.from_pb(e) for e in page.customers)
            version = page.program_version or version
            if core_at is None and page.HasField("snapshot_at"):
                core_at = page.snapshot_at.ToDatetime(tzinfo=UTC)
        return entries, version, core_at

    async def _store(self, entries: list[SnapshotEntry], fetched_at: float) -> None:
        doc = {
            "v": FORMAT_VERSION,
            "fetched_at": fetched_at,
            "program_version": self.snapshot_program_version,
            "customers": [e.to_json() for e in entries],
        }
        try:
            await asyncio.to_thread(atomic_write, self.data_dir / self.BALANCES_FILE, dumps(doc))
        except OSError as exc:
            log.error("cannot store the balance snapshot, kept in memory",
                      extra={"file": str(self.data_dir / self.BALANCES_FILE), "error": str(exc)})

    async def refresh_recent(self) -> int:
        """Merge the customers the core changed since the last fetch into the snapshot (new ones
        and new balances); returns how many customers were new. Needs a full snapshot fetched
        in this process (its core clock); a failure changes nothing and is left to the next full
        refresh to report (returns 0)."""
        if self.core is None or self.core_snapshot_at is None:
            return 0
        async with self._refreshing:
            since = self.core_snapshot_at - timedelta(seconds=RECENT_MARGIN_S)
            try:
                changed, _, core_at = await self._fetch(self.core, since)
            except (CoreUnavailable, BusinessRejection) as exc:
                log.debug("recent customers not fetched", extra={"error": str(exc)})
                return 0
            if not changed:
                self.core_snapshot_at = core_at or self.core_snapshot_at
                return 0
            merged = dict(self._entries)
            new = sum(e.customer_id not in merged for e in changed)
            merged.update((e.customer_id, e) for e in changed)
            fetched_at = self.snapshot_fetched_at if self.snapshot_fetched_at is not None else self.wall()
            if new:  # someone the file does not have yet: a restart during an outage must know them
                await self._store(list(merged.values()), fetched_at)
                log.info("new customers in the offline copy", extra={"new": new, "customers": len(merged)})
            self._set_entries(list(merged.values()), fetched_at)
            self.core_snapshot_at = core_at or self.core_snapshot_at
            return new

    async def refresh_loop(self, stopping: asyncio.Event) -> None:
        """Refresh both now, then the program every ``program_every_s`` and the balances every
        ``balances_every_s`` (each timed from its own last attempt; after a failed attempt within
        ``retry_s``), and in between the recently changed customers every ``recent_every_s`` (when
        that is shorter), until ``stopping`` is set."""
        loop = asyncio.get_running_loop()
        next_program = next_balances = loop.time()
        recent = 0 < self.recent_every_s < self.balances_every_s
        next_recent = loop.time() + self.recent_every_s if recent else float("inf")
        while not stopping.is_set():
            now = loop.time()
            program, balances = now >= next_program, now >= next_balances
            if program or balances:
                ok = await self.refresh(program=program, balances=balances)
                now = loop.time()
                retry = self.retry_s if not ok else float("inf")  # a failure: try again soon
                if program:
                    next_program = now + min(self.program_every_s, retry)
                if balances:
                    next_balances = now + min(self.balances_every_s, retry)
                    next_recent = max(next_recent, now + self.recent_every_s) if recent else next_recent
            elif now >= next_recent:
                await self.refresh_recent()
                next_recent = loop.time() + self.recent_every_s
            with contextlib.suppress(TimeoutError):  # asyncio.timeout: wait_for may swallow a cancel on 3.11
                due = min(next_program, next_balances, next_recent)
                async with asyncio.timeout(max(0.0, due - loop.time())):
                    await stopping.wait()


def dumps(doc: Mapping[str, Any]) -> bytes:
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()


class OfflineLedger:
    """Points granted offline, per gateway shift day (every register together):
    ``{"v": 1, "days": {day: {"at": first grant, "grants": {customer: {receipt: n}}}}}``."""

    def __init__(self, path: Path, *, wall: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.wall = wall
        self._lock = threading.Lock()
        self._seq = self._written = 0  # snapshots made / the newest written
        self._writes: set[asyncio.Future[None]] = set()
        self._days: dict[str, dict[str, Any]] = {}
        data = read_json(self.path)
        if data is None:
            return
        days = data.get("days", {})
        if isinstance(days, dict):
            self._days = days
        old = data.get("shifts")
        if isinstance(old, dict) and old:
            log.warning(
                "offline ledger in the old per-register format, its entries are dropped",
                extra={"file": str(self.path), "shifts": len(old),
                       "reason": "register shifts cannot be mapped onto the gateway's shift day"},
            )

    def granted(self, day: str, customer_id: str, *, except_receipt: str = "") -> int:
        """Points granted to ``customer_id`` on ``day`` by every register, ``except_receipt`` aside."""
        grants = self._days.get(day, {}).get("grants", {}).get(customer_id, {})
        return sum(int(n) for key, n in grants.items() if key != except_receipt)

    def record(self, day: str, customer_id: str, receipt_key: str, points: int) -> None:
        """Remember ``points`` granted for ``receipt_key`` (0 removes the entry) and persist it: on a
        worker thread when an event loop runs (an fsync on the loop would hold every till's
        answer), so a crash within milliseconds of a grant may forget it; :meth:`drain` waits."""
        now = self.wall()
        bucket = self._days.setdefault(day, {"at": now, "grants": {}})
        receipts = bucket["grants"].setdefault(customer_id, {})
        if points > 0:
            receipts[receipt_key] = points
        elif receipts.pop(receipt_key, None) is None:
            return  # nothing changed: no write
        self._days = {k: v for k, v in self._days.items() if now - float(v.get("at", now)) < LEDGER_KEEP_S}
        self._seq += 1
        data = dumps({"v": FORMAT_VERSION, "days": self._days})  # a snapshot, taken here
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no event loop (a script, a test): write here
            self._flush(self._seq, data)
            return
        # off the event loop: a file write with fsync would hold every till's answer
        write = loop.run_in_executor(None, self._flush, self._seq, data)
        self._writes.add(write)  # held until done
        write.add_done_callback(self._writes.discard)

    async def drain(self) -> None:
        """Wait for the ledger writes in flight (the daemon's stop, a test's restart)."""
        if self._writes:
            await asyncio.wait(set(self._writes))

    def _flush(self, seq: int, data: bytes) -> None:
        """Write snapshot ``seq`` unless a newer one was written already (writes are serialised)."""
        with self._lock:
            if seq <= self._written:
                return
            try:
                atomic_write(self.path, data)
                self._written = seq
            except OSError as exc:  # kept in memory; the next grant writes again
                log.error("offline ledger not written", extra={"file": str(self.path), "error": str(exc)})
