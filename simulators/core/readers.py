"""Per-thread SQLite read connections for the hot one-statement reads (Calculate's account read).

Checking a connection out of SQLAlchemy's pool and rolling it back on return cost more than
the read itself. For a SQLite file in WAL mode a reader never waits for the writer, so each
thread (the event loop's, a worker's) keeps one plain ``sqlite3`` connection of its own:

- autocommit (``isolation_level=None``): every statement is its own snapshot, nothing is left
  open between reads (a read never holds back checkpoints);
- ``PRAGMA query_only``: these connections cannot write, whatever runs on them;
- a connection is used by the thread that opened it only; :meth:`ThreadReaders.close` closes
  all of them (at :meth:`simulators.core.db.Database.dispose`, when no read runs any more).
"""

from __future__ import annotations

import sqlite3
import threading
from typing import Any


class ThreadReaders:
    def __init__(self, path: str, busy_timeout_ms: int = 30_000) -> None:
        self.path = path
        self.busy_timeout_ms = busy_timeout_ms
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False

    def cursor(self) -> Any:
        """This thread's cursor (opened on first use)."""
        cur = getattr(self._local, "cursor", None)
        if cur is None:
            cur = self._open()
        return cur

    def _open(self) -> sqlite3.Cursor:
        with self._lock:
            if self._closed:
                raise sqlite3.ProgrammingError("the core's database is closed")
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout_ms / 1000, isolation_level=None,
                                   check_same_thread=False)  # fmt: skip
            conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_ms)}")
            conn.execute("PRAGMA query_only=ON")
            self._all.append(conn)
        cur = conn.cursor()
        self._local.cursor = cur
        return cur

    def close(self) -> None:
        with self._lock:
            self._closed = True
            conns, self._all = self._all, []
        for conn in conns:
            conn.close()
