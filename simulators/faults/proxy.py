"""An asyncio TCP proxy that injects network faults, switchable at run time.

Owns the listener, the set of live proxied connections and the counters. It is a byte pipe:
it never parses what flows through, so HTTP/1, HTTP/2 (gRPC) and anything else work alike.
Modes are described in :mod:`simulators.faults.modes`.

Invariants:
- buffers are bounded: each direction holds at most one ``chunk_size`` read, written with
  ``drain()`` so a slow reader back-pressures the writer (no queues);
- every connection is tracked from accept to close and owned by its handler task; ``cut``
  and ``stop`` reset the sockets (RST) and cancel those tasks, so nothing outlives the proxy;
- the bound port never changes: ``down`` closes the listening socket and going back up
  binds the same port again.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from simulators.faults.modes import FaultSettings, Mode, ProxyStats

Sleep = Callable[[float], Awaitable[None]]


def _reset(writer: asyncio.StreamWriter | None) -> None:
    """Close a connection with RST (SO_LINGER 0), so the peer sees a reset, not a clean EOF."""
    if writer is None or writer.transport.is_closing():
        return
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


@dataclass(eq=False)
class _Conn:
    """One proxied connection: the client side, the upstream side once connected, its task."""

    client: asyncio.StreamWriter
    task: asyncio.Task[Any] | None
    upstream: asyncio.StreamWriter | None = None
    broken: bool = field(default=False)

    def reset(self) -> None:
        self.broken = True
        _reset(self.client)
        _reset(self.upstream)


class FaultProxy:
    """TCP proxy ``listen -> upstream`` with run-time switchable faults.

    Use as ``async with FaultProxy(...) as proxy`` or call :meth:`start` / :meth:`stop`.
    ``listen_port`` 0 picks a free port; read it back from :attr:`port`.
    """

    def __init__(
        self,
        listen_host: str,
        listen_port: int,
        upstream_host: str,
        upstream_port: int,
        *,
        settings: FaultSettings | None = None,
        chunk_size: int = 64 * 1024,
        connect_timeout_s: float = 5.0,
        rng: random.Random | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.listen_host = listen_host
        self._port = listen_port
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self._settings = settings or FaultSettings()
        self._chunk = chunk_size
        self._connect_timeout = connect_timeout_s
        self._rng = rng or random.Random()
        self._sleep = sleep
        self._server: asyncio.Server | None = None
        self._conns: set[_Conn] = set()
        self._flow = asyncio.Event()
        self._lock = asyncio.Lock()
        self._flap_task: asyncio.Task[None] | None = None
        self._flap_down = False
        self._started = False
        self._counts = dict.fromkeys(
            ("connections_total", "refused", "upstream_failures", "bytes_up", "bytes_down", "cuts",
             "cut_connections"), 0)

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind the listener (unless the initial mode is ``down``) and apply the initial mode."""
        if self._started:
            return
        self._started = True
        initial, self._settings = self._settings, FaultSettings()
        await self._listen()
        await self.apply(initial)

    async def stop(self) -> None:
        """Stop listening, reset every connection and wait for their tasks to end."""
        if not self._started:
            return
        self._started = False
        async with self._lock:
            await self._stop_flap()
            self._close_listener()
            tasks = [c.task for c in self._conns if c.task is not None]
            for conn in list(self._conns):
                conn.reset()
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.wait(tasks, timeout=5)
            self._conns.clear()

    async def __aenter__(self) -> FaultProxy:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # -- control ---------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The listening port (fixed once started, even while ``down``)."""
        return self._port

    @property
    def address(self) -> str:
        """``host:port`` clients connect to."""
        return f"{self.listen_host}:{self._port}"

    @property
    def settings(self) -> FaultSettings:
        return self._settings

    @property
    def mode(self) -> Mode:
        return self._settings.mode

    @property
    def flap_phase(self) -> str:
        """``"down"`` during a flap outage, else ``"up"``."""
        return "down" if self._flap_down else "up"

    async def set_mode(self, mode: Mode | str, **params: int) -> FaultSettings:
        """Switch mode, e.g. ``set_mode("latency", latency_ms=200, jitter_ms=20)``.

        Parameters not given keep their current values. ``"cut"`` cuts all connections
        and leaves the mode as it is. Returns the settings now in force.
        """
        if mode == "cut":
            await self.cut()
            return self._settings
        new = FaultSettings.from_json({"mode": str(mode), **params}, base=self._settings)
        await self.apply(new)
        return new

    async def apply(self, new: FaultSettings) -> None:
        """Put ``new`` settings in force (listener, gate and flap task follow the mode)."""
        async with self._lock:
            old, self._settings = self._settings, new
            if new.mode is Mode.BLACKHOLE:
                self._flow.clear()
            else:
                self._flow.set()
            if old.mode is Mode.FLAP or new.mode is Mode.FLAP:
                await self._stop_flap()
            if not self._started:
                return
            if new.mode is Mode.DOWN:
                self._close_listener()
            elif self._server is None:
                await self._listen()
            if new.mode is Mode.FLAP:
                self._flap_task = asyncio.create_task(self._flap(new), name=f"faultproxy-flap-{self._port}")

    async def cut(self) -> int:
        """Reset every current connection now (one-shot); returns how many were cut."""
        return self._cut_all()

    def stats(self) -> ProxyStats:
        return ProxyStats(connections_active=len(self._conns), **self._counts)

    # -- internals -------------------------------------------------------------------------

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(
            self._handle, self.listen_host, self._port, limit=self._chunk, reuse_address=True
        )
        self._port = self._server.sockets[0].getsockname()[1]

    def _close_listener(self) -> None:
        if self._server is not None:
            self._server.close()  # closes the listening socket now; connections are ours
            self._server = None

    async def _stop_flap(self) -> None:
        task, self._flap_task = self._flap_task, None
        self._flap_down = False
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _flap(self, settings: FaultSettings) -> None:
        try:
            while True:
                await self._sleep(settings.flap_ms / 1000)
                self._flap_down = True
                self._cut_all()
                await self._sleep(settings.down_ms / 1000)
                self._flap_down = False
        finally:
            self._flap_down = False

    def _cut_all(self) -> int:
        conns = list(self._conns)
        self._counts["cuts"] += 1
        self._counts["cut_connections"] += len(conns)
        for conn in conns:
            conn.reset()
            if conn.task is not None and conn.task is not asyncio.current_task():
                conn.task.cancel()
        return len(conns)

    def _refusing(self) -> bool:
        mode = self._settings.mode
        return mode is Mode.REFUSE or mode is Mode.DOWN or (mode is Mode.FLAP and self._flap_down)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._refusing() or not self._started:
            self._counts["refused"] += 1
            _reset(writer)
            return
        self._counts["connections_total"] += 1
        conn = _Conn(client=writer, task=asyncio.current_task())
        self._conns.add(conn)
        try:
            await self._flow.wait()  # blackhole holds new connections here
            try:
                up_reader, up_writer = await asyncio.wait_for(
                    asyncio.open_connection(self.upstream_host, self.upstream_port, limit=self._chunk),
                    self._connect_timeout,
                )
            except (OSError, TimeoutError):
                self._counts["upstream_failures"] += 1
                conn.reset()
                return
            conn.upstream = up_writer
            await asyncio.gather(
                self._pump(conn, reader, up_writer, "bytes_up"),
                self._pump(conn, up_reader, writer, "bytes_down"),
            )
        except asyncio.CancelledError:
            # cut() / stop() reset the connection, then cancel us: that is a normal end (asyncio
            # streams would log a cancelled handler task as an error). Anything else propagates.
            if not conn.broken:
                raise
        finally:
            self._conns.discard(conn)
            if conn.broken:
                conn.reset()
            else:
                for w in (writer, conn.upstream):
                    if w is not None:
                        w.close()

    async def _pump(
        self, conn: _Conn, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, counter: str
    ) -> None:
        try:
            while True:
                data = await reader.read(self._chunk)
                if not data:
                    break
                await self._hold()
                writer.write(data)
                await writer.drain()
                self._counts[counter] += len(data)
            if writer.can_write_eof() and not writer.transport.is_closing():
                writer.write_eof()
        except (ConnectionError, OSError):
            conn.reset()  # one side broke: break the other so its pump ends too

    async def _hold(self) -> None:
        """Delay a chunk as the mode says: wait out a blackhole, then add latency."""
        while True:
            await self._flow.wait()
            s = self._settings
            if s.mode is Mode.LATENCY and (s.latency_ms or s.jitter_ms):
                jitter = self._rng.randint(0, s.jitter_ms) if s.jitter_ms else 0
                await self._sleep((s.latency_ms + jitter) / 1000)
            if self._flow.is_set():
                return
