"""The core's schema versioning: Alembic revisions that reproduce the tables, a database made
before migrations upgraded at start with its rows kept, a check-only start that changes nothing,
a revision from a newer posgw refused."""

from __future__ import annotations

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import MetaData, create_engine, inspect, text

from simulators.core import schema
from simulators.core.db import Database, make_engine
from simulators.core.tables import SCHEMA_VERSION, Base


def legacy_database(url: str) -> None:
    """The schema every core made before migrations: version 1's tables, meta.schema_version 1."""
    old = MetaData()
    for table in Base.metadata.sorted_tables:
        if table.name != "register_leases":
            table.to_metadata(old)
    engine = create_engine(url)
    try:
        old.create_all(engine)
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO meta (key, value) VALUES ('schema_version', '1')"))
            conn.execute(text("INSERT INTO grant_marks (key, customer_id, kind, points, at) "
                              "VALUES ('birthday:1:2025', 1, 'birthday', 500, '2025-06-02 09:00:00')"))
    finally:
        engine.dispose()


def test_head_is_the_last_revision_file() -> None:
    assert schema.script_head() == schema.HEAD
    assert schema.BASELINE in schema.known_revisions()


def test_the_revisions_build_exactly_the_tables_of_this_core(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            command.upgrade(schema.alembic_config(conn), "head")
            conn.commit()
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            diffs = compare_metadata(context, Base.metadata)
            assert diffs == []
            assert schema.revision_of(conn) == schema.HEAD
    finally:
        engine.dispose()


def test_a_database_from_before_migrations_is_upgraded_at_start_with_its_rows(db_url: str) -> None:
    legacy_database(db_url)
    db = Database(db_url)  # the core's start
    try:
        with db.engine.connect() as conn:
            assert schema.revision_of(conn) == schema.HEAD
            assert inspect(conn).has_table("register_leases")
            assert conn.execute(text("SELECT points FROM grant_marks")).scalar() == 500
        assert db.meta("schema_version") == str(SCHEMA_VERSION)
    finally:
        db.dispose()
    again = Database(db_url)  # a second start finds it current
    again.dispose()


def test_check_mode_refuses_an_old_schema_and_changes_nothing(db_url: str) -> None:
    legacy_database(db_url)
    engine = make_engine(db_url)
    try:
        with pytest.raises(schema.SchemaError, match=r"needs revision 0002.*POSGW_CORE_DB_MIGRATE=upgrade"):
            schema.prepare(engine, mode="check")
        with engine.connect() as conn:
            assert schema.revision_of(conn) is None
            assert not inspect(conn).has_table("register_leases")
        assert schema.prepare(engine) == "upgraded from version 1"
        assert schema.prepare(engine, mode="check") == "current"
    finally:
        engine.dispose()


def test_a_revision_from_a_newer_posgw_is_refused(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        assert schema.prepare(engine) == "created"
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = '0999'"))
        with pytest.raises(schema.SchemaError, match="0999 is newer than this core"):
            schema.prepare(engine)
        with pytest.raises(schema.SchemaError, match="'sometimes'"):
            schema.prepare(engine, mode="sometimes")
    finally:
        engine.dispose()
