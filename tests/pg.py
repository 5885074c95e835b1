"""A throw-away PostgreSQL server for the test session.

Owns: finding the server binaries, ``initdb`` into a temporary directory, starting the server
with ``pg_ctl`` on a free 127.0.0.1 port (unix socket in the same temporary directory, so it
never touches a system cluster), creating one database per test, and stopping the server and
deleting the directory however the session ends.

Invariants:
- the server only listens on 127.0.0.1 and trusts local connections (user ``postgres``);
- ``fsync``/``synchronous_commit``/``full_page_writes`` are off: durability is not under test
  here, speed is;
- ``initdb`` refuses to run as root, so when the effective uid is 0 every server command runs
  as the ``postgres`` user through ``runuser`` and the directory is handed to that user;
- :meth:`PgServer.stop` is idempotent and also registered with :mod:`atexit`, so an aborted
  session does not leave a postmaster behind.
"""

from __future__ import annotations

import atexit
import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import psycopg

CMD_TIMEOUT_S = 60
CONNECT_TIMEOUT_S = 10


class PgUnavailable(RuntimeError):
    """The server binaries are missing or the server would not start."""


def find_bin_dir() -> Path | None:
    """The directory holding ``initdb`` and ``pg_ctl``: newest /usr/lib/postgresql/N/bin, else PATH."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0,
        reverse=True,
    )
    for initdb in candidates:
        bin_dir = Path(initdb).parent
        if (bin_dir / "pg_ctl").exists():
            return bin_dir
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(os.path.realpath(found)).parent
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class PgServer:
    """One running PostgreSQL server in a private temporary directory."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.base = Path(tempfile.mkdtemp(prefix="posgw-pg-"))
        self.data = self.base / "data"
        self.sock = self.base / "sock"
        self.log = self.base / "server.log"
        self.port = 0
        self._as_postgres = os.geteuid() == 0
        self._running = False
        self._db_counter = itertools.count(1)

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        self.sock.mkdir()
        if self._as_postgres:
            pw = pwd.getpwnam("postgres")  # KeyError -> no such user: reported by start_server
            for path in (self.base, self.sock):
                os.chown(path, pw.pw_uid, pw.pw_gid)
        self._run(
            [str(self.bin_dir / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
             "--encoding=UTF8", "--locale=C", "--no-sync"],
        )
        last_error = ""
        for _attempt in range(3):  # the free port may be taken between probe and bind
            self.port = _free_port()
            opts = (
                f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.sock} -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
            )
            try:
                self._run(
                    [str(self.bin_dir / "pg_ctl"), "start", "-w", "-t", str(CMD_TIMEOUT_S), "-D",
                     str(self.data), "-l", str(self.log), "-o", opts],
                )
            except PgUnavailable as exc:
                last_error = f"{exc}\n{self._log_tail()}"
                continue
            self._running = True
            atexit.register(self.stop)
            return
        raise PgUnavailable(f"PostgreSQL did not start: {last_error}")

    def stop(self) -> None:
        """Stop the server (immediate mode) and remove its directory. Safe to call twice."""
        if self._running:
            self._running = False
            try:
                self._run([str(self.bin_dir / "pg_ctl"), "stop", "-w", "-m", "immediate", "-D",
                           str(self.data)])
            except (PgUnavailable, subprocess.TimeoutExpired):
                pass
        shutil.rmtree(self.base, ignore_errors=True)

    # -- databases -----------------------------------------------------------------------

    def admin_conninfo(self, dbname: str = "postgres") -> str:
        return (
            f"host=127.0.0.1 port={self.port} user=postgres dbname={dbname} "
            f"connect_timeout={CONNECT_TIMEOUT_S}"
        )

    def create_database(self, prefix: str = "t") -> str:
        """Create an empty database and return its SQLAlchemy URL (psycopg 3 driver)."""
        name = f"{prefix}_{os.getpid()}_{next(self._db_counter)}"
        with psycopg.connect(self.admin_conninfo(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        with psycopg.connect(self.admin_conninfo(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def url(self, dbname: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{dbname}"

    # -- helpers -------------------------------------------------------------------------

    def _run(self, argv: list[str]) -> None:
        if self._as_postgres:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=CMD_TIMEOUT_S, check=False)
        if proc.returncode != 0:
            raise PgUnavailable(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip()}")

    def _log_tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-2000:]
        except OSError:
            return ""


def start_server() -> PgServer:
    """Find the binaries and start a server; :class:`PgUnavailable` says why not."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise PgUnavailable(
            "PostgreSQL server binaries not found (looked for /usr/lib/postgresql/*/bin/initdb "
            "and initdb/pg_ctl on PATH); install the `postgresql` package"
        )
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError as exc:
            raise PgUnavailable("running as root but there is no `postgres` user to run initdb as") from exc
    server = PgServer(bin_dir)
    try:
        server.start()
    except BaseException:
        server.stop()
        raise
    return server
