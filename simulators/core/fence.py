"""Per-register stream fencing: with several core replicas over one PostgreSQL, only the newest
event stream of a register may apply its events.

Why: the gateway applies a register's events in order on one stream and, after a reconnect,
resends from the first unacknowledged one on a new stream, possibly to another replica. The
old replica may still be working on that register (a network partition, a slow thread). Keys
make a second application of the same event a replay, but an old stream that applied an event
*after* the new stream answered it (e.g. refused it, then applied a later refund) would break
the register's order. The lease makes that impossible, enforced by the database alone:

- table ``register_leases``: one row per (gateway, register), naming the stream that owns it;
- a stream claims a register on its first event of that register (:func:`claim`: its own
  short transaction takes the lease's advisory lock *exclusively*, then upserts the row). The
  lock waits for every in-flight transaction of the older stream (they hold it shared, below), so
  once the claim commits, the old stream has nothing half-done and can apply nothing more;
- every write transaction of a stream's event first takes the lease's advisory lock *shared*
  and then reads the row (:func:`check`, called by
  :meth:`simulators.core.db.Database.transaction` while :data:`CURRENT` is set): the read's
  snapshot is taken after the lock, so it sees any claim that committed, and no claim can commit
  until this transaction ends. A lease naming another stream refuses the event retriably
  (STREAM_SUPERSEDED, nothing applied): the gateway resends it on its newest stream. A lease
  row that is gone (the jobs delete leases unclaimed for 30 days) is taken back by the stream
  that finds it missing: nobody can have claimed the register since.
  Advisory locks live in memory: a row lock (``FOR SHARE``) would write the lease row on every
  event, and cost a quarter of the commit rate in bench/core_cluster.py.

Scope: a lease is per gateway (the ``posgw-gateway`` request metadata the gateway's client
sends, a random id per client) and register: register ids are only unique within a gateway.
A stream without that metadata (an old gateway, a test client) is not fenced; its events still
apply at most once (keys). Only on PostgreSQL: an SQLite core is one process, its streams
cannot overlap across replicas.
"""

from __future__ import annotations

import contextvars
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from gateway.rules.types import RuleViolation

GATEWAY_METADATA = "posgw-gateway"
MAX_GATEWAY_ID = 100
SUPERSEDED = "STREAM_SUPERSEDED"

# (lease key, stream id) of the event being applied in this task / worker thread, or None
CURRENT: contextvars.ContextVar[tuple[str, str] | None] = contextvars.ContextVar("posgw_fence", default=None)

_EXCLUSIVE = text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))")
_SHARED = text("SELECT pg_advisory_xact_lock_shared(hashtextextended(:k, 0))")
_CLAIM = text(
    "INSERT INTO register_leases (lease_key, stream, claimed_at) VALUES (:k, :s, :at) "
    "ON CONFLICT (lease_key) DO UPDATE SET stream = excluded.stream, claimed_at = excluded.claimed_at"
)
_RECLAIM = text(
    "INSERT INTO register_leases (lease_key, stream, claimed_at) VALUES (:k, :s, now() AT TIME ZONE 'UTC') "
    "ON CONFLICT (lease_key) DO NOTHING"
)
_CHECK = text("SELECT stream FROM register_leases WHERE lease_key = :k")


def gateway_of(metadata: Any) -> str:
    """The gateway id a stream's invocation metadata names ("" when none or unusable)."""
    for key, value in metadata or ():
        if key == GATEWAY_METADATA and isinstance(value, str) and 0 < len(value) <= MAX_GATEWAY_ID:
            return value
    return ""


def lease_key(gateway: str, register_id: str) -> str:
    return f"{gateway}\x1f{register_id}"


def claim(session: Session, key: str, stream: str, now: datetime) -> None:
    """Make ``stream`` the owner of ``key`` (waits for the old owner's in-flight transactions)."""
    if session.get_bind().dialect.name == "postgresql":  # SQLite: one writer at a time anyway
        session.execute(_EXCLUSIVE, {"k": key})
    session.execute(_CLAIM, {"k": key, "s": stream, "at": now.replace(tzinfo=None)})


def check(session: Session, key: str, stream: str) -> None:
    """Hold the lease shared for this transaction; refuse if another stream owns it."""
    session.execute(_SHARED, {"k": key})
    owner = session.execute(_CHECK, {"k": key}).scalar()
    if owner is None:  # deleted by the jobs after long quiet: nobody claimed it since, take it back
        session.execute(_RECLAIM, {"k": key, "s": stream})
        owner = session.execute(_CHECK, {"k": key}).scalar()
    if owner != stream:
        raise RuleViolation(SUPERSEDED, "a newer event stream of this register took over; resend there")
