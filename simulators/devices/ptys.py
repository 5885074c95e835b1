"""The device end of a pseudo-terminal pair (POSIX), reached by the gateway through a stable
symlink, as ``/dev/serial/by-id/...`` names are.

:class:`DevicePty` opens a pair in raw mode, points ``link`` at the slave and closes its own
slave fd, so :meth:`DevicePty.peer_open` can tell (POLLHUP on the master) whether the gateway
has the port open: write only then (bytes written before the gateway opens are flushed by
pyserial, see the notes). :meth:`DevicePty.unplug` closes the master (the gateway's reads fail
as on a USB unplug); :meth:`DevicePty.replug` opens a new pair under the same link.
"""

from __future__ import annotations

import contextlib
import os
import select
import time
import tty
from pathlib import Path


class DevicePty:
    def __init__(self, link: Path | None = None) -> None:
        self.link = link
        self.master = -1
        self.path = ""
        self.plug()

    def plug(self) -> None:
        master, slave = os.openpty()
        tty.setraw(master)
        tty.setraw(slave)
        os.set_blocking(master, False)
        self.master, self.path = master, os.ttyname(slave)
        if self.link is not None:
            tmp = self.link.with_name(self.link.name + ".new")
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            tmp.symlink_to(self.path)
            tmp.replace(self.link)
        os.close(slave)

    def peer_open(self) -> bool:
        """True while another process (or fd) has the slave open."""
        if self.master < 0:
            return False
        poller = select.poll()
        poller.register(self.master, select.POLLHUP)
        return not any(ev & select.POLLHUP for _, ev in poller.poll(0))

    def wait_peer(self, timeout_s: float) -> bool:
        end = time.monotonic() + timeout_s
        while not self.peer_open():
            if time.monotonic() > end:
                return False
            time.sleep(0.01)
        return True

    def send(self, data: bytes) -> int:
        """Write ``data`` (all of it, waiting while the pty buffer is full); bytes written."""
        view, sent = memoryview(data), 0
        while sent < len(data):
            try:
                sent += os.write(self.master, view[sent:])
            except BlockingIOError:
                select.select([], [self.master], [], 0.05)
        return sent

    def read(self) -> bytes:
        """What the gateway wrote since the last read (b"" when nothing)."""
        got = b""
        while True:
            try:
                chunk = os.read(self.master, 4096)
            except (BlockingIOError, OSError):
                return got
            if not chunk:
                return got
            got += chunk

    def unplug(self) -> None:
        if self.master >= 0:
            with contextlib.suppress(OSError):
                os.close(self.master)
            self.master = -1

    def replug(self) -> None:
        self.unplug()
        self.plug()

    def close(self) -> None:
        self.unplug()
        if self.link is not None and self.link.is_symlink() and os.readlink(self.link) == self.path:
            with contextlib.suppress(OSError):
                self.link.unlink()
