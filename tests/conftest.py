"""Shared fixtures for the whole suite; kept small on purpose.

- ``pg_server`` (session): a private PostgreSQL server started once, only when a test asks
  for it, and always stopped at the end of the session (see :mod:`tests.pg`). Without the
  server binaries the test is skipped, or fails loudly when the ``CI`` variable is set
  (CI installs them in ``.ci/run``).
- ``pg_url``: a fresh, empty PostgreSQL database per test, as a SQLAlchemy URL
  ``postgresql+psycopg://postgres@127.0.0.1:PORT/NAME``.
- ``db_url``: parametrised over ``sqlite`` (a file in ``tmp_path``) and ``postgres``, for
  tests that must pass on both storage back ends.
- :func:`require_vendor`: the one way a test reaches ``../shared/fixtures/vendor``: a missing
  file skips the test with the reason, or fails it when ``CI=true`` (a CI run that silently
  skipped every vendor example would pass without checking them).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.pg import PgServer, PgUnavailable, start_server

VENDOR = Path(__file__).resolve().parents[1] / ".." / "shared" / "fixtures" / "vendor"


def require_vendor(path: Path, environ: dict[str, str] | None = None) -> Path:
    """``path`` (a file of the vendor fixtures) if it exists; otherwise skip the test saying
    which file is absent, or fail it when the ``CI`` variable is ``true``."""
    if path.exists():
        return path
    env = os.environ if environ is None else environ
    reason = f"vendor fixtures absent: {path} (../shared/fixtures/vendor is not checked out)"
    if env.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    try:
        server = start_server()
    except PgUnavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI is set but PostgreSQL is unavailable: {exc}", pytrace=False)
        pytest.skip(f"PostgreSQL unavailable: {exc}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_url(pg_server: PgServer) -> Iterator[str]:
    url = pg_server.create_database()
    yield url
    try:
        pg_server.drop_database(url)
    except Exception:  # a connection still open in a failing test must not mask its failure
        pass


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'core.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url
