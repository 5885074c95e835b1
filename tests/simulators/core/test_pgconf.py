"""PostgreSQL as users run it: pool limits and server-side timeouts from POSGW_CORE_DB_*, applied
to every connection of the core; a lock held by a replica that stopped answering fails a
statement in bounded time (retriable) instead of hanging it."""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from simulators.core import pgconf
from simulators.core.db import Database
from simulators.core.db_errors import is_transient


def test_defaults_and_overrides() -> None:
    assert pgconf.from_environ({}) == pgconf.PgSettings()
    s = pgconf.from_environ({"POSGW_CORE_DB_POOL_SIZE": "4", "POSGW_CORE_DB_POOL_TIMEOUT_S": "2.5",
                             "POSGW_CORE_DB_STATEMENT_TIMEOUT_MS": " 3000 "})
    assert (s.pool_size, s.pool_timeout_s, s.statement_timeout_ms) == (4, 2.5, 3000)
    kwargs = s.engine_kwargs()
    assert kwargs["pool_size"] == 4 and kwargs["pool_pre_ping"] is True
    assert "-c statement_timeout=3000" in kwargs["connect_args"]["options"]


@pytest.mark.parametrize(("name", "value", "says"), [
    ("POSGW_CORE_DB_POOL_SIZE", "ten", "is not a number"),
    ("POSGW_CORE_DB_POOL_SIZE", "0", "between 1 and 500"),
    ("POSGW_CORE_DB_LOCK_TIMEOUT_MS", "1.5", "is not a number"),
    ("POSGW_CORE_DB_IDLE_IN_TRANSACTION_TIMEOUT_MS", "10", "out of range"),
])
def test_a_bad_value_names_the_variable(name: str, value: str, says: str) -> None:
    with pytest.raises(ValueError, match=name) as err:
        pgconf.from_environ({name: value})
    assert says in str(err.value)


@pytest.mark.postgres
def test_every_connection_carries_the_timeouts(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSGW_CORE_DB_STATEMENT_TIMEOUT_MS", "4000")
    monkeypatch.setenv("POSGW_CORE_DB_LOCK_TIMEOUT_MS", "200")
    monkeypatch.setenv("POSGW_CORE_DB_IDLE_IN_TRANSACTION_TIMEOUT_MS", "20000")
    db = Database(pg_url)
    try:
        with db.engine.connect() as conn:
            shown = {name: conn.execute(text(f"SHOW {name}")).scalar()
                     for name in ("statement_timeout", "lock_timeout", "idle_in_transaction_session_timeout",
                                  "application_name")}
        assert shown == {"statement_timeout": "4s", "lock_timeout": "200ms",
                         "idle_in_transaction_session_timeout": "20s", "application_name": "posgw-core"}
        assert db.engine.pool.size() == pgconf.PgSettings().pool_size  # type: ignore[attr-defined]
        # another session (a replica gone quiet mid-transaction) holds the meta row's lock
        other = psycopg.connect(pg_url.replace("postgresql+psycopg://", "postgresql://"))
        try:
            other.execute("SELECT value FROM meta WHERE key = 'schema_version' FOR UPDATE")
            with pytest.raises(OperationalError) as err, db.engine.begin() as conn:
                conn.execute(text("UPDATE meta SET value = value WHERE key = 'schema_version'"))
            assert is_transient(err.value)  # the gateway is told to resend, not that it failed
        finally:
            other.close()
    finally:
        db.dispose()
