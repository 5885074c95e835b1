"""Shared helpers for the outbox / sender tests: event factories and an injectable clock."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from gateway.payload import event_to_json
from gateway.receipt import Event, EventKind, Line, Receipt, RefundLine

T0 = datetime(2025, 3, 9, 12, 0, tzinfo=UTC)


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def sale(register: str, n: int, *, amount: int = 10000, driver: str = "native") -> Event:
    r = Receipt(
        register_id=register,
        receipt_number=str(n),
        lines=(Line("1", "sku", "Item", price=amount, qty_milli=1000, amount=amount),),
        occurred_at=T0 + timedelta(seconds=n),
        shift="1",
        driver=driver,
    )
    return Event(EventKind.SALE, r.sale_key(), register, r.occurred_at, receipt=r)


def refund(register: str, n: int, sale_key: str) -> Event:
    return Event(EventKind.REFUND, f"{sale_key}:refund:{n}", register, T0 + timedelta(hours=1, seconds=n),
                 sale_key=sale_key, refund_lines=(RefundLine("1", 1000),))


# The outbox file as schema 2 wrote it (posgw before the envelope was stored): its DDL as that
# version created it, and rows as its append wrote them (payload = versioned JSON, nothing else).
SCHEMA_2_DDL = """
CREATE TABLE events (
    id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT, "key" TEXT NOT NULL, register_id TEXT NOT NULL,
    register_seq INTEGER NOT NULL, kind TEXT NOT NULL, payload BLOB NOT NULL, state TEXT NOT NULL,
    attempts INTEGER NOT NULL, created_at FLOAT NOT NULL, updated_at FLOAT NOT NULL,
    last_error TEXT NOT NULL, reason TEXT NOT NULL, note TEXT NOT NULL, result_json TEXT NOT NULL,
    CONSTRAINT events_register_seq UNIQUE (register_id, register_seq), UNIQUE ("key"));
CREATE INDEX events_state_id ON events (state, id);
CREATE TABLE driver_state (
    driver TEXT NOT NULL, "key" TEXT NOT NULL, value TEXT NOT NULL, updated_at FLOAT NOT NULL,
    expires_at FLOAT, PRIMARY KEY (driver, "key"));
CREATE INDEX driver_state_expires ON driver_state (expires_at);
CREATE TABLE registers (register_id TEXT NOT NULL, last_seq INTEGER NOT NULL, PRIMARY KEY (register_id));
CREATE TABLE salvage (
    id INTEGER NOT NULL, at FLOAT NOT NULL, report TEXT NOT NULL, acknowledged_at FLOAT, PRIMARY KEY (id));
PRAGMA user_version = 2;
"""


def write_schema_2(path: Path, rows: list[tuple[Event, str, str]], now: float = 1_700_000_000.0) -> None:
    """A schema 2 outbox at ``path`` holding (event, state, result_json) rows in order, with their
    registers' sequence numbers, written as that version wrote them (WAL, one transaction)."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.executescript(SCHEMA_2_DDL)
        conn.execute("BEGIN IMMEDIATE")
        seqs: dict[str, int] = {}
        for ev, state, result_json in rows:
            seqs[ev.register_id] = seq = seqs.get(ev.register_id, 0) + 1
            conn.execute(
                "INSERT INTO events (key, register_id, register_seq, kind, payload, state, attempts, "
                "created_at, updated_at, last_error, reason, note, result_json) "
                "VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?, '', '', '', ?)",
                (ev.key, ev.register_id, seq, EventKind(ev.kind).value, event_to_json(ev), state, now, now,
                 result_json))
        conn.executemany("INSERT INTO registers (register_id, last_seq) VALUES (?, ?)", sorted(seqs.items()))
        conn.execute("COMMIT")
    finally:
        conn.close()
