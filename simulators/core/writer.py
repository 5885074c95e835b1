"""Group commit for SQLite: one writer thread applies queued units of work in shared transactions.

SQLite has one writer at a time, so concurrent Commits queue anyway; paying BEGIN, COMMIT and
a thread hand-off for each of them is what limited throughput. :class:`BatchWriter` takes
every unit of work waiting in its queue (up to ``max_batch``) and runs them one after another
inside ONE transaction:

- each unit sees the effects of the units before it (same session and connection), exactly as
  if they had committed one after another in queue order;
- a unit that raises before it changed anything (a business rejection such as
  CALC_MISMATCH found while validating: no row written, nothing pending in the session, the
  transaction still open) gets its exception and the batch goes on: nothing to undo, so no
  SAVEPOINT is paid for the common case;
- a unit that raises after it changed something makes the whole batch roll back and run again
  in careful mode: a SAVEPOINT per unit, a failing unit rolled back to its savepoint alone;
- a unit that hits a transient storage failure is rolled back alone and then run again in a
  transaction of its own (:meth:`Database.transaction`, with its bounded retries);
- the batch commits once; if that COMMIT fails transiently the whole batch is run again (units
  are re-runnable, as for :meth:`Database.transaction`); results are delivered only after the
  COMMIT succeeded, so nobody sees an answer for work that is not durable;
- the writer holds the database's writer lock for the whole batch, so other write
  transactions of this process still serialize with it;
- any rollback (a unit's savepoint, the whole batch) clears the database's lot cache
  (:class:`simulators.core.fastpath.LotCache`).
"""

from __future__ import annotations

import concurrent.futures
import logging
import queue
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy.orm import Session

from simulators.core.db_errors import is_transient


class _Lots(Protocol):
    def clear(self) -> None: ...


class _Sql(Protocol):
    @property
    def lots(self) -> _Lots: ...


class Database(Protocol):
    """What the writer uses of :class:`simulators.core.db.Database` (named here, not imported:
    the database module owns a writer, so importing it back would be a cycle)."""

    @property
    def sql(self) -> _Sql: ...

    @property
    def writer_lock(self) -> AbstractContextManager[Any]: ...

    def sessions(self) -> Session: ...

    def transaction(self, work: Callable[[Session], Any], write: bool = True) -> Any: ...

log = logging.getLogger("posgw.core")
MAX_BATCH = 64
ATTEMPTS = 6


@dataclass
class _Item:
    work: Callable[[Any], Any]
    future: concurrent.futures.Future[Any]


class BatchWriter:
    def __init__(self, db: Database, max_batch: int = MAX_BATCH) -> None:
        self.db = db
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="posgw-core-writer", daemon=True)
        self._thread.start()

    def submit(self, work: Callable[[Any], Any]) -> concurrent.futures.Future[Any]:
        fut: concurrent.futures.Future[Any] = concurrent.futures.Future()
        if self._closed:
            fut.set_exception(RuntimeError("the core's writer is stopped"))
            return fut
        self._queue.put(_Item(work, fut))
        return fut

    def close(self, timeout: float = 10.0) -> None:
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            self._thread.join(timeout)

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch = [item]
            stop = False
            while len(batch) < self.max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
            self._run([it for it in batch if it.future.set_running_or_notify_cancel()])
            if stop:
                return

    def _run(self, items: list[_Item]) -> None:

        careful = False
        for attempt in range(ATTEMPTS):
            try:
                outcomes = self._attempt(items, careful)
                break
            except _Redo:  # a unit failed after writing: again, each unit in its own savepoint
                self.db.sql.lots.clear()
                careful = True
            except Exception as exc:  # the batch's own BEGIN / COMMIT failed
                self.db.sql.lots.clear()  # rolled back: its lot ids may be reused
                if is_transient(exc) and attempt < ATTEMPTS - 1:
                    time.sleep(0.01 * (attempt + 1))
                    continue
                for it in items:
                    it.future.set_exception(exc)
                return
        else:
            failure = RuntimeError("the core's writer could not apply the batch")
            for it in items:
                it.future.set_exception(failure)
            return
        for it, (ok, value) in zip(items, outcomes, strict=True):
            if ok is None:  # transient trouble inside the unit: again, alone
                try:
                    it.future.set_result(self.db.transaction(it.work))
                except Exception as exc:
                    it.future.set_exception(exc)
            elif ok:
                it.future.set_result(value)
            else:
                it.future.set_exception(value)

    def _attempt(self, items: list[_Item], careful: bool) -> list[tuple[bool | None, Any]]:

        outcomes: list[tuple[bool | None, Any]] = []
        with self.db.writer_lock, self.db.sessions() as session, session.begin():
            raw: Any = session.connection().connection.driver_connection  # sqlite3.Connection
            for it in items:
                if careful:
                    try:
                        with session.begin_nested():
                            outcomes.append((True, it.work(session)))
                    except Exception as exc:  # rolled back to the unit's savepoint
                        self.db.sql.lots.clear()  # its lot ids may be reused
                        outcomes.append((None, None) if is_transient(exc) else (False, exc))
                    continue
                before = raw.total_changes
                try:
                    outcomes.append((True, it.work(session)))
                except Exception as exc:
                    untouched = raw.total_changes == before and raw.in_transaction and session.is_active
                    if not untouched or session.new or session.dirty or session.deleted:
                        raise _Redo from exc
                    outcomes.append((None, None) if is_transient(exc) else (False, exc))
        return outcomes


class _Redo(Exception):
    """A unit failed after changing rows: the batch is rolled back and run in careful mode."""
