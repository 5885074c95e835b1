"""Per-thread SQLite read connections: one per thread, read-only, closed with the database."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from simulators.core.db import Database


def test_each_thread_reads_on_its_own_read_only_connection(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'r.db'}")
    try:
        assert db.inline_reads and db.thread_readers is not None
        with db.raw_reader() as cur:
            cur.execute("SELECT value FROM meta WHERE key = 'schema_version'")
            assert cur.fetchone() is not None
            mine = cur.connection
            with pytest.raises(sqlite3.OperationalError, match="readonly"):
                cur.execute("INSERT INTO meta (key, value) VALUES ('x', 'y')")
        with db.raw_reader() as cur:
            assert cur.connection is mine  # kept for the thread, not reopened
        other: list[object] = []

        def read() -> None:
            with db.raw_reader() as cur:
                other.append(cur.connection)

        t = threading.Thread(target=read)
        t.start()
        t.join(10)
        assert other and other[0] is not mine
    finally:
        db.dispose()
    with pytest.raises(sqlite3.ProgrammingError):
        mine.execute("SELECT 1")  # closed by dispose


def test_memory_database_has_no_inline_reads() -> None:
    db = Database("sqlite://")
    try:
        assert not db.inline_reads and db.thread_readers is None
    finally:
        db.dispose()
