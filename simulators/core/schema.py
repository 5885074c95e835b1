"""The reference core's schema version: checked at every start, upgraded with Alembic.

The revisions live in ``simulators/core/migrations/versions`` (``0001`` is the schema every core
created before migrations existed; each later one is one step). At start (:func:`prepare`):

- a database at :data:`HEAD` starts at once (one SELECT: the common case costs no Alembic);
- an empty database gets the current tables (``create_all``) and is stamped :data:`HEAD`;
- a database made before migrations existed (tables and ``meta.schema_version`` = 1, no
  ``alembic_version``) is stamped ``0001`` and upgraded;
- an older revision is upgraded; a revision this core does not know (a newer posgw migrated it)
  refuses to start, naming both revisions.

``POSGW_CORE_DB_MIGRATE=check`` never changes the schema: anything but :data:`HEAD` refuses to
start (for clusters that migrate in a separate step, ``posgw core`` of the new version with the
default ``upgrade`` run once). On PostgreSQL the whole preparation runs under a session advisory
lock, so replicas starting together migrate once and the others wait, then find :data:`HEAD`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, inspect, text
from sqlalchemy.orm import Session

from simulators.core.tables import SCHEMA_VERSION, Base, Meta

if TYPE_CHECKING:  # alembic itself is imported only when a migration has to run
    from alembic.config import Config

HEAD = "0002"
BASELINE = "0001"
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
MIGRATION_LOCK = 0x706F736777_00  # "posgw" + 0: the jobs use 1..3
MODES = ("upgrade", "check")


class SchemaError(RuntimeError):
    """The database's schema cannot be used by this core (and was not changed)."""


def revision_of(conn: Connection) -> str | None:
    """The database's Alembic revision; None when it has no ``alembic_version`` table."""
    if not inspect(conn).has_table("alembic_version"):
        return None
    value = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    return None if value is None else str(value)


def alembic_config(conn: Connection) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = conn
    return cfg


def known_revisions() -> set[str]:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory(str(MIGRATIONS))
    return {rev.revision for rev in script.walk_revisions()}


def script_head() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    assert head is not None
    return head


def prepare(engine: Engine, mode: str | None = None) -> str:
    """Bring the schema to :data:`HEAD` (or check it) as the module docstring says; returns what
    was done: "current", "created", "upgraded from X". Raises :class:`SchemaError`."""
    mode = mode or os.environ.get("POSGW_CORE_DB_MIGRATE", "upgrade").strip() or "upgrade"
    if mode not in MODES:
        raise SchemaError(f"POSGW_CORE_DB_MIGRATE={mode!r}: use 'upgrade' (the default) or 'check'")
    postgres = engine.dialect.name == "postgresql"
    with engine.connect() as conn:
        if not postgres:
            return _prepare(conn, mode)
        # another replica may be migrating: wait for it however long (the pool's lock and
        # statement timeouts are lifted for this session while it prepares, then restored)
        conn.execute(text("SET lock_timeout = 0"))
        conn.execute(text("SET statement_timeout = 0"))
        conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK})
        conn.commit()
        try:
            return _prepare(conn, mode)
        finally:
            conn.rollback()
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK})
            conn.execute(text("RESET lock_timeout"))
            conn.execute(text("RESET statement_timeout"))
            conn.commit()


def _prepare(conn: Connection, mode: str) -> str:
    current = revision_of(conn)
    legacy = current is None and inspect(conn).has_table("meta")
    conn.rollback()
    if current == HEAD:
        _check_meta(conn)
        return "current"
    if mode == "check":
        found = current or ("the schema before migrations (version 1)" if legacy else "an empty database")
        raise SchemaError(f"database schema is at {found}, this core needs revision {HEAD}; "
                          "run posgw core once with POSGW_CORE_DB_MIGRATE=upgrade (the default)")
    if current is not None and current not in known_revisions():
        raise SchemaError(f"database schema revision {current} is newer than this core ({HEAD}); "
                          "upgrade posgw or point --db at another database")
    if current is None and not legacy:  # empty: the current tables at once, stamped HEAD
        Base.metadata.create_all(conn)
        conn.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)"))
        conn.execute(text("INSERT INTO alembic_version (version_num) VALUES (:v)"), {"v": HEAD})
        conn.commit()
        _check_meta(conn)
        return "created"
    from alembic import command

    cfg = alembic_config(conn)
    if current is None:
        _check_meta(conn, write=False)  # a meta version newer than ours: refused before any change
        command.stamp(cfg, BASELINE)
        conn.commit()
    command.upgrade(cfg, "head")
    conn.commit()
    _check_meta(conn)
    return f"upgraded from {current or 'version 1'}"


def _check_meta(conn: Connection, write: bool = True) -> None:
    """``meta.schema_version``: recorded, raised to ours, a newer one refused (as before Alembic)."""
    with Session(bind=conn) as s:
        row = s.get(Meta, "schema_version")
        if row is not None and int(row.value) > SCHEMA_VERSION:
            raise SchemaError(
                f"database schema version {row.value} is newer than this core ({SCHEMA_VERSION}); "
                "upgrade posgw or point --db at another database"
            )
        if write and row is None:
            s.add(Meta(key="schema_version", value=str(SCHEMA_VERSION)))
        elif write and row is not None and int(row.value) < SCHEMA_VERSION:
            row.value = str(SCHEMA_VERSION)
        s.commit()
    conn.commit()
