"""Alembic environment of the reference core: always run on a connection the caller hands over
(``config.attributes["connection"]``, see :mod:`simulators.core.schema`), never from a URL in an
ini file: the core's own engine (pool, timeouts, SQLite pragmas) runs the migrations."""

from __future__ import annotations

from alembic import context

from simulators.core.tables import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run the core's migrations through simulators.core.schema (posgw core does at start)")
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters a table by copying it
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
