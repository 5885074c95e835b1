"""A real pseudo-terminal pair standing in for a serial device (POSIX only).

The daemon side opens ``path`` with pyserial (open it first, as pyserial flushes input on
open); the test plays the device on the master fd: :meth:`PtyPair.send` writes, :meth:`PtyPair.read`
collects what the daemon wrote. :meth:`PtyPair.vanish` closes both ends: the device is unplugged
and ``path`` stops existing. :func:`link` points a stable symlink (a ``/dev/serial/by-id`` name)
at a pair, so a replug under a new pts number can be staged.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tty
from pathlib import Path


class PtyPair:
    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.master)
        tty.setraw(self.slave)
        os.set_blocking(self.master, False)
        self.path = os.ttyname(self.slave)
        self.closed = False

    def send(self, data: bytes) -> None:
        os.write(self.master, data)

    def release_slave(self) -> None:
        """Close the test's own slave fd (after the daemon opened the port), so that closing the
        master later unplugs the device for real."""
        if self.slave >= 0:
            with contextlib.suppress(OSError):
                os.close(self.slave)
            self.slave = -1

    async def read(self, size: int, timeout: float = 2.0) -> bytes:  # noqa: ASYNC109 - a test helper
        """At least ``size`` bytes written by the daemon, or what came within ``timeout``."""
        got = b""
        end = asyncio.get_running_loop().time() + timeout
        while len(got) < size and asyncio.get_running_loop().time() < end:
            try:
                got += os.read(self.master, 4096)
            except BlockingIOError:
                await asyncio.sleep(0.005)
        return got

    def opened_elsewhere(self) -> bool:
        """True once another fd of this process (the daemon's pyserial port) has the slave open
        (Linux: counted in /proc/self/fd; the test's own slave fd is not counted)."""
        ours = {str(self.slave)}
        fds = Path("/proc/self/fd")
        found = 0
        for fd in fds.iterdir():
            with contextlib.suppress(OSError):
                if fd.name not in ours and os.readlink(fd) == self.path:
                    found += 1
        return found > 0

    def vanish(self) -> None:
        if not self.closed:
            self.closed = True
            self.release_slave()
            with contextlib.suppress(OSError):
                os.close(self.master)

    def close(self) -> None:
        self.vanish()


def link(at: Path, pair: PtyPair) -> None:
    """Point the symlink ``at`` at ``pair``'s slave (replacing whatever it pointed at)."""
    tmp = at.with_name(at.name + ".new")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    tmp.symlink_to(pair.path)
    tmp.replace(at)
