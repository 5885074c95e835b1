"""Which storage failures the reference core retries: a leaf module (nothing from
:mod:`simulators.core`), shared by :mod:`simulators.core.db` and the group-commit writer."""

from __future__ import annotations

import sqlite3

from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

try:  # the hot paths (simulators.core.fastpath) raise the driver's own exceptions
    import psycopg

    _RAW_ERRORS: tuple[type[BaseException], ...] = (sqlite3.Error, psycopg.Error)
    _RAW_TRANSIENT: tuple[type[BaseException], ...] = (
        sqlite3.IntegrityError,
        sqlite3.OperationalError,
        psycopg.IntegrityError,
        psycopg.OperationalError,
    )
except ImportError:  # pragma: no cover - PostgreSQL support not installed
    _RAW_ERRORS = (sqlite3.Error,)
    _RAW_TRANSIENT = (sqlite3.IntegrityError, sqlite3.OperationalError)


def is_storage_error(exc: BaseException) -> bool:
    """A database failure, wrapped by SQLAlchemy or raised by the driver itself."""
    return isinstance(exc, (DBAPIError, *_RAW_ERRORS))


def is_transient(exc: BaseException) -> bool:
    """Serialization failures, deadlocks, locked SQLite files, duplicate-key races."""
    if isinstance(exc, (IntegrityError, OperationalError, *_RAW_TRANSIENT)):
        return True  # e.g. a concurrent insert of the same key: the retry sees it and replays
    orig = exc.orig if isinstance(exc, DBAPIError) else exc
    if isinstance(exc, (DBAPIError, *_RAW_ERRORS)):
        code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
        return code in ("40001", "40P01", "55P03")
    return False
