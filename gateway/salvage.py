"""Salvage a damaged outbox: copy every readable row into a new outbox file, count the rest.

Used by :func:`gateway.outbox_db.open_store` (the daemon, before it moves a damaged file aside)
and by ``posgw outbox salvage FILE --into NEW`` (by hand). The damaged file is never written:
both passes read copies of it (with its ``-wal``) in a temporary directory.

1. SQLite's own recovery: ``sqlite3 COPY .recover`` when the sqlite3 command-line tool is
   installed (apt package ``sqlite3``), its SQL loaded into a scratch database. Its output is
   trusted only when the tool exits 0 and the script ends with ``COMMIT`` (the 3.40.x CLI of
   some distributions prints ``sql error: SQL logic error`` and stops after the header: then
   this pass contributes nothing). Rows it could not place in their table
   (``lost_and_found``) with the events table's 14 columns are considered too.
2. Row by row with a fresh connection: every table is walked in rowid order in small ranges;
   where a range raises (a damaged page), ids are probed one at a time until the walk can go
   on. An id whose probe raises is counted lost (an id that was pruned and happens to sit on
   the damaged page is counted too: the count is an upper bound of the events lost there).

An ``events`` row is kept only when it is sound: a known state and kind, and a payload that
decodes (:func:`gateway.payload.event_from_json`) to an event with the row's key and
register; anything else is counted lost. Kept rows keep their id (append order), key,
register_seq, payload, state and the core's stored answer (``result``, when the file has it),
so a pending row stays pending and is delivered in its order with its idempotency key. Their
envelope (what the sender sends) is built again from the payload, never copied: the payload is
what soundness was checked on. Files of schema 2 (no ``envelope`` / ``result``) and 3 are read
alike. ``registers.last_seq`` is the larger of the salvaged value and
the highest salvaged sequence number, so sequences stay monotonic. ``driver_state`` rows are
copied as they read.

The new file records the salvage in its ``salvage`` table (:class:`SalvageReport`); the
gateway reports itself degraded until an operator acknowledges it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import sqlite3
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gateway.convert import envelope_body
from gateway.outbox_db import RowState
from gateway.payload import event_from_json
from gateway.receipt import EventKind

log = logging.getLogger("posgw.outbox")

EVENT_COLUMNS = ("id", "key", "register_id", "register_seq", "kind", "payload", "state", "attempts",
                 "created_at", "updated_at", "last_error", "reason", "note", "result_json", "result")
# schema 2 has the columns up to result_json; a row read from it gets an empty result
STATE_COLUMNS = ("driver", "key", "value", "updated_at", "expires_at")
_STATES = frozenset(s.value for s in RowState)
_KINDS = frozenset(k.value for k in EventKind)
_PAGE = 256  # rows per range read
_MAX_BLIND_PROBES = 100_000  # ids probed past the last readable one when the table's end is unknown
RECOVER_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class SalvageReport:
    """What one salvage found. ``complete`` is False when a table could not be walked to its
    end (its schema or its last pages unreadable): ``lost`` is then a lower bound."""

    source: str  # the damaged file, where it was when salvaged
    into: str  # the new outbox
    moved_to: str = ""  # where the daemon moved the damaged file ("" when salvaged by hand)
    salvaged: int = 0  # events rows copied
    pending: int = 0  # of them pending (they will be delivered)
    lost: int = 0  # events rows that could not be read or were not sound
    state_salvaged: int = 0  # driver_state rows copied
    state_lost: int = 0
    complete: bool = True
    methods: tuple[str, ...] = ()  # "sqlite3 .recover", "row by row"
    notes: tuple[str, ...] = ()  # what went wrong in each pass, for the operator
    at: float = 0.0
    lost_ids: tuple[int, ...] = field(default=(), repr=False)

    @property
    def everything_read(self) -> bool:
        return self.complete and self.lost == 0 and self.state_lost == 0

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> SalvageReport:
        data = json.loads(text)
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        for name in ("methods", "notes", "lost_ids"):
            known[name] = tuple(known.get(name, ()))
        return cls(**known)

    def summary(self) -> dict[str, Any]:
        """The figures /healthz, /status and the CLI show (no id lists)."""
        return {"source": self.source, "moved_to": self.moved_to, "into": self.into,
                "salvaged": self.salvaged, "pending": self.pending, "lost": self.lost,
                "state_salvaged": self.state_salvaged, "state_lost": self.state_lost,
                "complete": self.complete, "methods": list(self.methods), "at": self.at}


# ---------------------------------------------------------------- reading a damaged file


@dataclass
class _Table:
    rows: dict[int, tuple[Any, ...]] = field(default_factory=dict)  # rowid -> columns
    lost: set[int] = field(default_factory=set)
    complete: bool = True
    note: str = ""


def _walk(conn: sqlite3.Connection, table: str, columns: tuple[str, ...], rowid: str) -> _Table:
    """Every readable row of ``table`` by rowid; ids whose read raises are ``lost``."""
    out = _Table()
    cols = ", ".join(columns)
    end: int | None = None
    for sql in (f"SELECT max({rowid}) FROM {table}",
                f"SELECT seq FROM sqlite_sequence WHERE name = '{table}'"):
        with contextlib.suppress(sqlite3.Error):
            found = conn.execute(sql).fetchone()
            if found is not None and found[0] is not None:
                end = max(end or 0, int(found[0]))
    after, blind = 0, 0
    while True:
        try:
            batch = conn.execute(f"SELECT {rowid}, {cols} FROM {table} WHERE {rowid} > ? "
                                 f"ORDER BY {rowid} LIMIT {_PAGE}", (after,)).fetchall()
        except sqlite3.Error as exc:
            out.note = out.note or f"{table}: {exc}"
            probe = after + 1
            if end is not None and probe > end:
                break
            if end is None:
                blind += 1
                if blind > _MAX_BLIND_PROBES:
                    out.complete = False
                    break
            try:
                one = conn.execute(f"SELECT {rowid}, {cols} FROM {table} WHERE {rowid} = ?",
                                   (probe,)).fetchone()
            except sqlite3.Error:
                out.lost.add(probe)
            else:
                if one is not None:
                    out.rows[int(one[0])] = tuple(one[1:])
                    blind = 0
            after = probe
            continue
        for r in batch:
            out.rows[int(r[0])] = tuple(r[1:])
        if len(batch) < _PAGE:
            break
        after = int(batch[-1][0])
        blind = 0
    return out


def _read_rows(copy: Path) -> tuple[_Table, _Table, dict[str, int], list[str]]:
    """Row by row from a copy: (events, driver_state, registers, notes)."""
    notes: list[str] = []
    try:
        conn = sqlite3.connect(copy, isolation_level=None)
    except sqlite3.Error as exc:
        bad = _Table(complete=False, note=f"cannot open: {exc}")
        return bad, _Table(complete=False), {}, [bad.note]
    try:
        names: set[str] = set()
        try:
            names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        except sqlite3.Error as exc:
            notes.append(f"schema unreadable: {exc}")
        ev = _Table(complete=False)
        if "events" in names:
            ev = _walk(conn, "events", _event_columns(conn), "id")
        st = _walk(conn, "driver_state", STATE_COLUMNS, "rowid") if "driver_state" in names else _Table()
        regs: dict[str, int] = {}
        if "registers" in names:
            reg = _walk(conn, "registers", ("register_id", "last_seq"), "rowid")
            regs = {str(r[0]): int(r[1]) for r in reg.rows.values() if isinstance(r[1], int)}
            notes += [reg.note] if reg.note else []
        notes += [n for n in (ev.note, st.note) if n]
        return ev, st, regs, notes
    finally:
        conn.close()


def _event_columns(conn: sqlite3.Connection) -> tuple[str, ...]:
    """The events columns to read (without id): ``result`` is read as empty from a schema 2 file."""
    try:
        have = {str(r[1]) for r in conn.execute("PRAGMA table_info(events)")}
    except sqlite3.Error:
        have = set()
    return tuple(c if c in have or c != "result" else "x'' AS result" for c in EVENT_COLUMNS[1:])


def find_sqlite3_cli() -> str | None:
    """The sqlite3 command-line tool (``POSGW_SQLITE3`` names another, or ``none`` to skip it)."""
    named = os.environ.get("POSGW_SQLITE3", "")
    if named.lower() == "none":
        return None
    return shutil.which(named or "sqlite3")


def _recover(copy: Path, scratch: Path, cli: str | None) -> tuple[_Table, str]:
    """SQLite's own recovery into ``scratch``; the events rows it found (by id) and a note."""
    if cli is None:
        return _Table(complete=False), "sqlite3 .recover: no sqlite3 tool (apt install sqlite3)"
    try:
        done = subprocess.run([cli, str(copy), ".recover"], capture_output=True, timeout=RECOVER_TIMEOUT_S,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return _Table(complete=False), f"sqlite3 .recover: {exc}"
    script = done.stdout.decode("utf-8", "surrogateescape")
    problem = done.stderr.decode("utf-8", "replace").strip()
    if done.returncode != 0 or not script.rstrip().endswith("COMMIT;") or "sql error" in script:
        return _Table(complete=False), f"sqlite3 .recover failed: {problem or 'incomplete output'}"
    try:
        conn = sqlite3.connect(scratch, isolation_level=None)
        try:
            conn.executescript(script)
            out = _Table()
            names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if "events" in names:
                for r in conn.execute(f"SELECT id, {', '.join(_event_columns(conn))} FROM events"):
                    out.rows[int(r[0])] = tuple(r[1:])
            if "lost_and_found" in names:  # rows .recover could not place: the events' shape only
                # schema 2 rows have 14 fields, schema 3 rows 16 (c14 the envelope, c15 the result)
                cols = ", ".join(f"c{i}" for i in range(1, 14))
                result = "CASE WHEN nfield = 16 THEN c15 ELSE x'' END"
                with contextlib.suppress(sqlite3.Error):
                    for r in conn.execute(f"SELECT id, {cols}, {result} FROM lost_and_found "
                                          "WHERE nfield IN (14, 16)"):
                        if r[0] is not None:
                            out.rows.setdefault(int(r[0]), tuple(r[1:]))
            return out, ""
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return _Table(complete=False), f"sqlite3 .recover output unusable: {exc}"


def _sound(row: tuple[Any, ...]) -> bool:
    """An events row (without id) whose state, kind and payload agree with its key and register."""
    key, register, seq, kind, payload, state = row[:6]
    if not (isinstance(key, str) and isinstance(register, str) and isinstance(seq, int) and seq > 0):
        return False
    if state not in _STATES or kind not in _KINDS or not isinstance(payload, bytes | str):
        return False
    try:
        ev = event_from_json(payload if isinstance(payload, bytes) else payload.encode())
    except (ValueError, KeyError, TypeError):
        return False
    return bool(ev.key == key and ev.register_id == register)


# ---------------------------------------------------------------- the salvage


def _copy(source: Path, into_dir: Path, name: str) -> Path:
    target = into_dir / name
    shutil.copyfile(source, target)
    wal = source.with_name(source.name + "-wal")
    if wal.exists():
        shutil.copyfile(wal, target.with_name(target.name + "-wal"))
    return target


def salvage(
    source: Path, into: Path, *, now: float, moved_to: str = "",
    build: Callable[[Path], Any] | None = None, cli: str | bool | None = True,
) -> SalvageReport:
    """Copy the readable rows of ``source`` into the new outbox ``into`` (which must not exist)
    and record the report there. ``build(into)`` creates an empty outbox schema and returns a
    DB-API connection to it (default: :func:`gateway.outbox_db.create_plain`). ``cli``: True finds the
    sqlite3 tool, a path names it, None/False skips SQLite's recovery pass."""
    if into.exists():
        raise FileExistsError(f"{into} exists: salvage writes a new file only")
    tool = find_sqlite3_cli() if cli is True else (cli or None)
    with tempfile.TemporaryDirectory(prefix="posgw-salvage-", dir=_scratch_dir(into)) as tmp:
        tmpdir = Path(tmp)
        recovered, recover_note = _recover(_copy(source, tmpdir, "recover.db"), tmpdir / "recovered.db",
                                           tool if isinstance(tool, str) else None)
        events_t, state_t, registers, notes = _read_rows(_copy(source, tmpdir, "rows.db"))
    methods = ["row by row"]
    if not recover_note:
        methods.insert(0, "sqlite3 .recover")
    else:
        notes.insert(0, recover_note)
    kept: dict[int, tuple[Any, ...]] = {}
    lost = set(events_t.lost)
    for row_id, row in events_t.rows.items():
        if _sound(row):
            kept[row_id] = row
        else:
            lost.add(row_id)
    for row_id, row in recovered.rows.items():  # what .recover read where the walk could not
        if row_id not in kept and _sound(row):
            kept[row_id] = row
            lost.discard(row_id)
    report_state, state_lost = _store(into, kept, lost, state_t, registers, build)
    complete = events_t.complete or bool(recovered.rows and not recover_note)
    report = SalvageReport(
        source=str(source), into=str(into), moved_to=moved_to, salvaged=len(kept),
        pending=sum(1 for r in kept.values() if r[5] == "pending"), lost=len(lost),
        state_salvaged=report_state, state_lost=state_lost + len(state_t.lost),
        complete=complete and state_t.complete, methods=tuple(methods), notes=tuple(notes), at=now,
        lost_ids=tuple(sorted(lost)),
    )
    _record(into, report)
    return report


def _scratch_dir(into: Path) -> str | None:
    """Copies go beside the new file when its directory exists (same disk, no /tmp size limit)."""
    return str(into.parent) if into.parent.is_dir() else None


def _store(
    into: Path, kept: dict[int, tuple[Any, ...]], lost: set[int], state_t: _Table, registers: dict[str, int],
    build: Callable[[Path], Any] | None,
) -> tuple[int, int]:
    """Write the kept rows into the new outbox in one transaction; (driver_state rows kept, lost)."""
    conn = _build(into, build)
    try:
        conn.execute("BEGIN IMMEDIATE")
        seqs = dict(registers)
        cols = ", ".join((*EVENT_COLUMNS, "envelope"))
        marks = ", ".join("?" * (len(EVENT_COLUMNS) + 1))
        for row_id in sorted(kept):
            row = kept[row_id]
            try:
                conn.execute(f"INSERT INTO events ({cols}) VALUES ({marks})", (row_id, *_event_values(row)))
            except sqlite3.IntegrityError:  # a key or (register, seq) read twice from garbage
                lost.add(row_id)
                del kept[row_id]
                continue
            seqs[row[1]] = max(seqs.get(row[1], 0), int(row[2]))
        conn.executemany(
            "INSERT INTO registers (register_id, last_seq) VALUES (?, ?) ON CONFLICT (register_id) "
            "DO UPDATE SET last_seq = max(last_seq, excluded.last_seq)", sorted(seqs.items()))
        state_kept = state_bad = 0
        for row in state_t.rows.values():
            try:
                conn.execute("INSERT INTO driver_state (driver, key, value, updated_at, expires_at) "
                             "VALUES (?, ?, ?, ?, ?)", row)
                state_kept += 1
            except sqlite3.Error:
                state_bad += 1
        conn.execute("COMMIT")
        return state_kept, state_bad
    finally:
        conn.close()


def _event_values(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """The values of a kept row for the new file: the stored columns, then the envelope built
    again from the payload (b"" for an event the core could never accept: the sender's reader
    names it)."""
    key, register, seq, kind, payload, state, attempts, created, updated, error, reason, note, result_json, \
        result = row
    payload_b = payload if isinstance(payload, bytes) else str(payload).encode()
    try:
        envelope = envelope_body(event_from_json(payload_b))
    except (ValueError, KeyError, TypeError):
        envelope = b""
    return (key, register, seq, kind, payload_b, state, int(_num(attempts, 0)), float(_num(created, 0.0)),
            float(_num(updated, _num(created, 0.0))), _txt(error), _txt(reason), _txt(note),
            _txt(result_json), result if isinstance(result, bytes) else b"", envelope)


def _num(value: Any, default: float) -> float:
    return value if isinstance(value, int | float) else default


def _txt(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _build(into: Path, build: Callable[[Path], Any] | None) -> Any:
    if build is None:
        from gateway.outbox_db import create_plain

        build = create_plain
    return build(into)


def _record(into: Path, report: SalvageReport) -> None:
    conn = sqlite3.connect(into, isolation_level=None)
    try:
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("INSERT INTO salvage (at, report, acknowledged_at) VALUES (?, ?, NULL)",
                     (report.at, report.to_json()))
    finally:
        conn.close()


def rows_of(report: SalvageReport) -> Iterator[str]:
    """The report as lines for a person (the CLI, the log)."""
    yield f"salvaged from {report.source}" + (f" (moved to {report.moved_to})" if report.moved_to else "")
    yield f"into {report.into}"
    bound = "" if report.complete else " at least (part of the file could not be walked)"
    yield (f"events: {report.salvaged} salvaged ({report.pending} pending, to be delivered), "
           f"{report.lost} lost{bound}")
    yield f"driver state: {report.state_salvaged} salvaged, {report.state_lost} lost"
    yield f"methods: {', '.join(report.methods)}"
    for note in report.notes:
        yield f"note: {note}"
    if report.lost_ids:
        shown = ", ".join(str(i) for i in report.lost_ids[:50])
        yield f"lost event ids: {shown}" + (" ..." if len(report.lost_ids) > 50 else "")
