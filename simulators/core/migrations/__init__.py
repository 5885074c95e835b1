"""Alembic migrations of the reference core's schema (applied by :mod:`simulators.core.schema`)."""
