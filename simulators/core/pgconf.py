"""How the reference core connects to PostgreSQL: pool limits and the server-side timeouts.

Every replica of the core holds at most ``pool_size + max_overflow`` connections; a unit of work
that finds none free waits ``pool_timeout_s`` and then fails (retriable: UNAVAILABLE /
STORAGE_BUSY to the gateway, which resends). Each connection is opened with:

- ``statement_timeout``: no statement runs longer (a runaway report or a lock wait gone wrong);
- ``lock_timeout``: no statement waits longer for a row, table or advisory lock (a lock held by
  a replica that stopped answering); the failure is transient and retried
  (:mod:`simulators.core.db_errors`: SQLSTATE 55P03);
- ``idle_in_transaction_session_timeout``: PostgreSQL ends a session that sits inside a
  transaction doing nothing, so a frozen or partitioned replica releases its row locks and the
  register leases it held (:mod:`simulators.core.fence`) instead of holding them for ever;
- ``application_name`` = ``posgw-core`` (``pg_stat_activity`` shows which sessions are ours).

Settings come from the environment (like the SMS settings, so one ``posgw core`` command line
serves every replica), each with a default that suits one shop's core; a bad value is refused
at start naming the variable. The jobs lift ``statement_timeout`` for their own transactions
(:func:`simulators.core.jobs.job_lock`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

PREFIX = "POSGW_CORE_DB_"


@dataclass(frozen=True)
class PgSettings:
    pool_size: int = 10
    max_overflow: int = 10
    pool_timeout_s: float = 10.0
    pool_recycle_s: int = 1800
    connect_timeout_s: int = 5
    statement_timeout_ms: int = 15_000
    lock_timeout_ms: int = 5_000
    idle_in_transaction_timeout_ms: int = 30_000

    def engine_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :func:`sqlalchemy.create_engine` for a PostgreSQL URL."""
        options = (
            f"-c statement_timeout={self.statement_timeout_ms} -c lock_timeout={self.lock_timeout_ms}"
            f" -c idle_in_transaction_session_timeout={self.idle_in_transaction_timeout_ms}"
        )
        return {
            "pool_size": self.pool_size,
            "max_overflow": self.max_overflow,
            "pool_timeout": self.pool_timeout_s,
            "pool_recycle": self.pool_recycle_s,
            "pool_pre_ping": True,
            "connect_args": {
                "connect_timeout": self.connect_timeout_s,
                "application_name": "posgw-core",
                "options": options,
            },
        }


# variable suffix -> (field, lowest, highest)
_LIMITS: dict[str, tuple[str, float, float]] = {
    "POOL_SIZE": ("pool_size", 1, 500),
    "MAX_OVERFLOW": ("max_overflow", 0, 500),
    "POOL_TIMEOUT_S": ("pool_timeout_s", 0.1, 600),
    "POOL_RECYCLE_S": ("pool_recycle_s", 60, 86_400),
    "CONNECT_TIMEOUT_S": ("connect_timeout_s", 1, 600),
    "STATEMENT_TIMEOUT_MS": ("statement_timeout_ms", 100, 3_600_000),
    "LOCK_TIMEOUT_MS": ("lock_timeout_ms", 10, 3_600_000),
    "IDLE_IN_TRANSACTION_TIMEOUT_MS": ("idle_in_transaction_timeout_ms", 1000, 86_400_000),
}


def from_environ(environ: Mapping[str, str]) -> PgSettings:
    """The settings named by ``POSGW_CORE_DB_*`` variables; ValueError names a bad one."""
    values: dict[str, Any] = {}
    for suffix, (name, low, high) in _LIMITS.items():
        raw = environ.get(PREFIX + suffix, "").strip()
        if not raw:
            continue
        kind = float if name == "pool_timeout_s" else int
        try:
            value = kind(raw)
        except ValueError:
            raise ValueError(f"{PREFIX}{suffix}={raw!r} is not a number; unset it or give one "
                             f"between {low:g} and {high:g}") from None
        if not low <= value <= high:
            raise ValueError(f"{PREFIX}{suffix}={raw!r} is out of range; "
                             f"give a value between {low:g} and {high:g}")
        values[name] = value
    return PgSettings(**values)


def current() -> PgSettings:
    return from_environ(os.environ)
