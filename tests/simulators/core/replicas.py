"""Real ``posgw core`` processes over one database, for the replica and balancing tests.

:func:`start_replica` runs ``python -m gateway.cli core --listen 127.0.0.1:0`` and waits for its
"core listening address=" log line (the port the kernel chose); its log is drained by a thread
so a chatty replica never blocks on a full pipe. :meth:`Replica.kill` is SIGKILL (no graceful
stop: in-flight transactions are rolled back by PostgreSQL when the connection drops);
:meth:`Replica.stop` is SIGTERM (after SIGCONT: a test may have frozen it with SIGSTOP), then
SIGKILL after a bound.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from simulators.fleet.streams import STAFF, now_ts, sale_event

__all__ = ["STAFF", "Replica", "now_ts", "replicas", "sale_event", "start_replica"]

ROOT = Path(__file__).resolve().parents[3]
PROGRAM = ROOT / "config" / "programs" / "seed002.toml"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
_LISTENING = re.compile(r"core listening address=(\S+)")


@dataclass
class Replica:
    name: str
    proc: subprocess.Popen[str]
    address: str = ""
    log: list[str] = field(default_factory=list)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(STOP_TIMEOUT_S)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # a frozen replica (SIGSTOP) must hear SIGTERM
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.kill()


def start_replica(
    db_url: str, name: str, program: Path = PROGRAM, listen: str = "127.0.0.1:0",
    extra_env: dict[str, str] | None = None,
) -> Replica:
    env = {**os.environ, "POSGW_CORE_REPLICA": name, "PYTHONUNBUFFERED": "1", **(extra_env or {})}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "core", "--listen", listen, "--program", str(program),
         "--db", db_url],
        cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True,
    )
    replica = Replica(name, proc)
    ready = threading.Event()

    def drain() -> None:
        assert proc.stderr is not None
        for text in proc.stderr:
            replica.log.append(text.rstrip())
            found = _LISTENING.search(text)
            if found and not replica.address:
                replica.address = found.group(1)
                ready.set()
        ready.set()  # the process ended without listening

    threading.Thread(target=drain, name=f"replica-log-{name}", daemon=True).start()
    if not ready.wait(START_TIMEOUT_S) or not replica.address:
        replica.kill()
        raise RuntimeError(f"core replica {name} did not start:\n" + "\n".join(replica.log[-20:]))
    return replica


@contextmanager
def replicas(db_url: str, count: int, extra_env: dict[str, str] | None = None) -> Iterator[list[Replica]]:
    """``count`` replicas on ``db_url``; every one stopped (or killed) at the end."""
    started: list[Replica] = []
    try:
        for i in range(count):
            started.append(start_replica(db_url, f"r{i + 1}", extra_env=extra_env))
        yield started
    finally:
        for r in started:
            r.stop()
