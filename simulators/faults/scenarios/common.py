"""What the fault scenarios share: a proxy with the faults the base one lacks, a stack, tills, checks.

- :class:`ScenarioProxy`: :class:`~simulators.faults.FaultProxy` plus two faults of the core link:
  *lost replies* (bytes from the core to the gateway are discarded while requests still reach
  the core: the core commits, the gateway never hears the ack) and *GOAWAY* (an HTTP/2 GOAWAY
  frame, ``NO_ERROR``, last stream 2^31-1 as a server's graceful shutdown starts, written into
  the core's byte stream at a frame boundary, then the connection closed after a grace period).
  The downstream pump reads HTTP/2 frame headers to know the boundaries; it never changes frames;
- :func:`scenario_stack`: a :class:`~simulators.stack.Stack` (real core, this proxy, real gateway with
  every push driver enabled, phone redemption allowed) with customers registered; the core and the
  gateway run the committed source (:func:`simulators.soak.pin_sources`);
- :func:`till` / :func:`sell_n` / :func:`probe`: a scripted native till and what it measured;
- :func:`delivery`: drain, then the exactly-once figures (lost, doubled, queued).
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy import create_engine, select

from simulators.faults.proxy import FaultProxy, _Conn
from simulators.fleet import ScriptedTill, lines
from simulators.registers.native.client import NativeClient
from simulators.registers.native.report import Ack, Recorder, percentile
from simulators.soak import all_drivers_toml, phone_program, pin_sources, register_customers
from simulators.stack import HOST, Stack, StackOptions
from simulators.stack_check import check_delivery

PHONES = ("+79163000001", "+79163000002", "+79163000003", "+79163000004")
FRAME_HEADER = 9
GOAWAY = 0x7


def goaway_frame(last_stream_id: int = 0x7FFFFFFF, error_code: int = 0) -> bytes:
    """An HTTP/2 GOAWAY frame (RFC 9113 6.8) on stream 0."""
    payload = struct.pack(">II", last_stream_id & 0x7FFFFFFF, error_code)
    return struct.pack(">I", len(payload))[1:] + bytes([GOAWAY, 0]) + struct.pack(">I", 0) + payload


def split_frames(buffer: bytes) -> tuple[bytes, bytes]:
    """(complete HTTP/2 frames, the incomplete rest) of a server's byte stream."""
    pos = 0
    while len(buffer) - pos >= FRAME_HEADER:
        length = int.from_bytes(buffer[pos : pos + 3], "big")
        if len(buffer) - pos < FRAME_HEADER + length:
            break
        pos += FRAME_HEADER + length
    return buffer[:pos], buffer[pos:]


class ScenarioProxy(FaultProxy):
    """The fault proxy plus lost replies and GOAWAY (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.drop_replies = False
        self.dropped_bytes = 0
        self.goaways_sent = 0
        self._at_boundary: dict[_Conn, bool] = {}
        self._goaway_wanted: set[_Conn] = set()

    async def _pump(
        self, conn: _Conn, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, counter: str
    ) -> None:
        if counter != "bytes_down":
            await super()._pump(conn, reader, writer, counter)
            return
        rest = b""
        self._at_boundary[conn] = True
        try:
            while True:
                data = await reader.read(self._chunk)
                if not data:
                    break
                await self._hold()
                if self.drop_replies:
                    self.dropped_bytes += len(data)
                    continue
                frames, rest = split_frames(rest + data)
                if frames:
                    writer.write(frames)
                    self._counts[counter] += len(frames)
                self._at_boundary[conn] = not rest
                if not rest and conn in self._goaway_wanted:
                    self._send_goaway(conn)
                await writer.drain()
            if writer.can_write_eof() and not writer.transport.is_closing():
                writer.write_eof()
        except (ConnectionError, OSError):
            conn.reset()
        finally:
            self._at_boundary.pop(conn, None)
            self._goaway_wanted.discard(conn)

    def _send_goaway(self, conn: _Conn) -> None:
        self._goaway_wanted.discard(conn)
        if not conn.client.transport.is_closing():
            conn.client.write(goaway_frame())
            self.goaways_sent += 1

    async def goaway(self, grace_s: float = 0.5) -> int:
        """GOAWAY on every live connection (at a frame boundary), then close them after ``grace_s``."""
        conns = list(self._conns)
        for conn in conns:
            if self._at_boundary.get(conn, False):
                self._send_goaway(conn)
            else:
                self._goaway_wanted.add(conn)
        await asyncio.sleep(grace_s)
        for conn in conns:
            if conn in self._conns:
                conn.reset()
                if conn.task is not None:
                    conn.task.cancel()
        return len(conns)

    async def lose_replies(self) -> None:
        self.drop_replies = True

    async def replies_back(self) -> None:
        """End lost replies: the half-dropped streams are unusable, so they are cut."""
        self.drop_replies = False
        await self.cut()


@contextlib.asynccontextmanager
async def scenario_stack(
    workdir: Path, *, register: Sequence[str] = PHONES, **options: Any
) -> AsyncIterator[Stack]:
    """A started stack in ``workdir`` with :class:`ScenarioProxy`; ``options`` are StackOptions fields."""
    options.setdefault("extra_toml", all_drivers_toml())
    options.setdefault("program", phone_program(workdir))
    stack = Stack(workdir, StackOptions(**options))
    stack.proxy = ScenarioProxy(HOST, 0, HOST, stack.core_port)
    pin_sources(stack, workdir)  # the committed code, not a file half-edited in the shared tree
    async with stack:
        if register:
            await register_customers(stack, register)
        yield stack


@contextlib.asynccontextmanager
async def till(
    stack: Stack, register_id: str = "faults-01", *, commit_retry_s: float = 120.0
) -> AsyncIterator[ScriptedTill]:
    """A scripted native till on its own HTTP session."""
    async with aiohttp.ClientSession() as session:
        client = NativeClient(session, stack.gateway_url, stack.options.api_key)
        yield ScriptedTill(
            client,
            Recorder(),
            register_id,
            shift=datetime.now(UTC).strftime("%y%m%d%H%M%S"),
            commit_retry_s=commit_retry_s,
        )


BASKET = (("4600001", 1_000), ("4600010", 2_000))


async def sell_n(
    t: ScriptedTill, n: int, customer: str | None = PHONES[0], *, redeem: bool = False
) -> list[Ack | None]:
    out = []
    for _ in range(n):
        _, ack = await t.sell(t.receipt(lines(*BASKET), customer, redeem_max=redeem))
        out.append(ack)
    return out


@dataclass
class Probe:
    """Calc latencies (ms at the till) and offline flags of receipts sold during a fault."""

    calc_ms: list[float]
    offline: int
    sold: int
    acked: int

    def figures(self, budget_ms: float) -> dict[str, Any]:
        return {
            "calcs": len(self.calc_ms),
            "calc_p50_ms": round(percentile(self.calc_ms, 50), 1),
            "calc_p99_ms": round(percentile(self.calc_ms, 99), 1),
            "calc_max_ms": round(max(self.calc_ms, default=0.0), 1),
            f"over_{budget_ms:g}ms": sum(m > budget_ms for m in self.calc_ms),
            "offline": self.offline,
            "sold": self.sold,
            "acked": self.acked,
        }


async def probe(
    t: ScriptedTill, seconds: float, customer: str = PHONES[0], *, pause_s: float = 0.05
) -> Probe:
    """Sell receipts for ``seconds`` (at least one), timing every calculate at the till."""
    began, first = time.monotonic(), len(t.rec.calc_ms)
    sold = acked = offline = 0
    while sold == 0 or time.monotonic() - began < seconds:
        applied, ack = await t.sell(t.receipt(lines(*BASKET), customer))
        sold += 1
        acked += ack is not None
        offline += applied.offline
        await asyncio.sleep(pause_s)
    return Probe(t.rec.calc_ms[first:], offline, sold, acked)


async def delivery(stack: Stack, acks: Sequence[Ack], *, drain_s: float = 60.0) -> dict[str, Any]:
    """Wait for the outbox to drain; the exactly-once figures (``ok`` = nothing lost or doubled)."""
    began = time.monotonic()
    pending = await stack.wait_drained(drain_s)
    drained_s = time.monotonic() - began
    queue: list[dict[str, Any]] = []
    with contextlib.suppress(Exception):
        queue = await stack.operator_queue()
    check = check_delivery(
        [a for a in acks if a.key], stack.applied(), [str(q.get("key", "")) for q in queue]
    )
    return {
        "ok": check.ok and pending == 0,
        "acked": check.acknowledged,
        "applied": check.applied_total,
        "lost": len(check.lost),
        "doubled": len(check.duplicates),
        "queued": len(check.in_operator_queue),
        "pending": pending,
        "drain_s": round(drained_s, 2),
        "queue_reasons": sorted({str(q.get("reason", ""))[:80] for q in queue})[:3],
    }


def operation_rows(core_db: Path, key: str) -> list[dict[str, Any]]:
    """Rows of the core's ``operations`` table for ``key`` (read-only)."""
    from simulators.core.tables import Operation

    engine = create_engine(f"sqlite:///file:{core_db}?mode=ro&uri=true")
    try:
        with engine.connect() as conn:
            table = Operation.__table__
            rows = conn.execute(select(table).where(table.c.key == key)).mappings().all()
    finally:
        engine.dispose()
    return [dict(r) for r in rows]


async def balance(stack: Stack, phone: str) -> int:
    return int((await stack.admin.customer(phone)).balance)
