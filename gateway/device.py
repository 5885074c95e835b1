"""The device shape: one worker thread per serial port, frames handed to asyncio.

:class:`PortWorker` owns one pyserial port (``serial_for_url``: a device path, ``COM3``,
``hwgrep://VID:PID``, ``loop://``, ``socket://``) in a dedicated thread; :func:`run_device` is
the loop a device driver calls from ``run(ctx)``.

Invariants:

- **Only the worker thread touches the port** (open, read, write, close); the event loop only
  calls ``cancel_read()`` to wake it, under the same lock that guards open/close.
- **Frames**: bytes are split on any byte of ``options.terminators`` (CR or LF by default)
  *before* any decoding, empty pieces are dropped (CR LF is one terminator), a partial frame is
  kept across reads and joined. A frame longer than ``max_frame`` bytes without a terminator is
  dropped whole (logged). With ``idle_flush_s`` set, a partial frame is delivered after that
  much silence (scanners set up without a suffix). The partial buffer is dropped when the port
  is lost: a frame never mixes bytes from before and after a reconnect. Each frame is counted
  ``device_frame``.
- **Backpressure: drop-oldest.** Frames reach asyncio through ``call_soon_threadsafe`` (one
  call per read, carrying every frame of it: a flood of short frames costs the loop one
  callback per read, not one per frame) into a bounded queue of ``queue_size``; when it is
  full the oldest frame is dropped (logged WARNING), never the reader blocked: a blocked
  reader would let the OS buffer overflow mid-frame, and for a scanner the newest scan is the
  one that matters.
- **Reconnect**: a port that cannot be opened or that fails (unplugged, EIO, "readiness to read
  but returned no data") is closed and reopened after ``reconnect_s`` delays (0.5, 1, 2, then
  every 5 s), the path resolved again by pyserial each time. Every failed open is counted
  ``device_absent``; :attr:`PortWorker.state` says ``absent`` only after ``absent_after`` failed
  opens in a row (``connecting`` before), ``open`` once open, ``stopped`` after stop; each
  change is told to ``on_state(state)`` on the event loop (a driver raises or clears its alarm).
- **Writes** (a customer display) are queued to the worker thread and done there between reads
  (so within about ``read_timeout_s``); :meth:`PortWorker.write` raises :class:`PortAbsent`
  when the port is not open or is lost before the write, TimeoutError on a write timeout.
  :meth:`PortWorker.exchange` queues a whole request/response dialogue the same way (a device
  that answers, such as a fiscal register: ``listen=False`` then reads nothing in between).
- **Stop** sets the stop flag, calls ``cancel_read()`` and joins the thread (bounded): with the
  default 0.1 s read timeout the thread is gone well under a second; pending writes fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import re
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import serial

from gateway.driver import DriverContext

log = logging.getLogger("posgw.device")
T = TypeVar("T")


class PortAbsent(Exception):
    """The port is not open (absent, reconnecting or stopped): nothing was written."""


@dataclass(frozen=True, slots=True)
class PortOptions:
    url: str  # /dev/serial/by-id/..., COM3, hwgrep://VID:PID, loop://
    baudrate: int = 9600
    parity: str = serial.PARITY_NONE
    read_timeout_s: float = 0.1
    write_timeout_s: float = 1.0
    terminators: bytes = b"\r\n"  # any of these bytes ends a frame
    max_frame: int = 4096
    idle_flush_s: float | None = None  # deliver a partial frame after this much silence
    queue_size: int = 256
    reconnect_s: tuple[float, ...] = (0.5, 1.0, 2.0, 5.0)  # the last one repeats
    absent_after: int = 3  # failed opens in a row before the state says absent
    exclusive: bool = True
    listen: bool = True  # False: nothing is read but by exchange() (a request/response device)


class FrameSplitter:
    """Bytes in, whole frames out (see the module docstring). Pure; not thread-safe."""

    def __init__(self, terminators: bytes = b"\r\n", max_frame: int = 4096) -> None:
        self._ends = frozenset(terminators)
        self._split: Callable[[bytes], list[bytes]] = (
            re.compile(b"[" + re.escape(terminators) + b"]").split if terminators else (lambda data: [data]))
        self._max = max_frame
        self._buf = bytearray()
        self._discarding = False
        self.dropped = 0  # frames dropped for exceeding max_frame

    def feed(self, data: bytes) -> list[bytes]:
        pieces = self._split(data)  # all but the last end with a terminator
        frames: list[bytes] = []
        if len(pieces) > 1:  # the first piece completes the partial frame
            first = pieces[0]
            if self._discarding:
                self._discarding = False
            elif len(self._buf) + len(first) > self._max:
                self.dropped += 1
            elif self._buf or first:
                frames.append(bytes(self._buf) + first)
            self._buf.clear()
            middle = pieces[1:-1]  # whole frames: one comprehension (a flood is many of them)
            frames += [piece for piece in middle if piece and len(piece) <= self._max]
            self.dropped += sum(len(piece) > self._max for piece in middle)
        if not self._discarding:
            self._buf += pieces[-1]
            if len(self._buf) > self._max:
                self._buf.clear()
                self._discarding = True  # the rest of this frame, up to its terminator, goes too
                self.dropped += 1
        return frames

    def flush(self) -> bytes | None:
        """The partial frame, if any, as a frame (and forget it)."""
        frame = None if self._discarding else bytes(self._buf) or None
        self.clear()
        return frame

    def clear(self) -> None:
        self._buf.clear()
        self._discarding = False


Opener = Callable[[PortOptions], Any]  # returns an open pyserial port


def open_port(options: PortOptions) -> Any:
    """Open ``options.url`` with the settings every device here uses (8N1, no flow control)."""
    return serial.serial_for_url(
        options.url, baudrate=options.baudrate, bytesize=serial.EIGHTBITS, parity=options.parity,
        stopbits=serial.STOPBITS_ONE, timeout=options.read_timeout_s, write_timeout=options.write_timeout_s,
        xonxoff=False, rtscts=False, dsrdtr=False, exclusive=options.exclusive,
    )


class PortWorker:
    """One port, one thread. ``async with PortWorker(...)`` starts and stops it."""

    def __init__(self, options: PortOptions, *, name: str = "",
                 count: Callable[[str, int], None] | None = None,  # (what, n): DriverContext.count
                 logger: logging.Logger | None = None, opener: Opener = open_port,
                 on_state: Callable[[str], None] | None = None) -> None:
        self.options = options
        self.name = name or options.url
        self._count = count or (lambda what, n: None)
        self._log = logger or log
        self._open = opener
        self._on_state = on_state
        self._state = "stopped"
        self._lock = threading.Lock()  # guards self._port between open/close and cancel_read
        self._port: Any = None
        self._stop = threading.Event()
        self._writes: queue.SimpleQueue[tuple[bytes | Callable[[Any], Any], asyncio.Future[Any]]] = (
            queue.SimpleQueue())
        self._frames: asyncio.Queue[bytes] = asyncio.Queue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.opened = 0  # successful opens (for tests and the status page)

    @property
    def state(self) -> str:
        """``connecting``, ``open``, ``absent`` or ``stopped`` (see the module docstring)."""
        return self._state

    @property
    def present(self) -> bool:
        return self._state == "open"

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._frames = asyncio.Queue(self.options.queue_size)
        self._stop.clear()
        self._set_state("connecting")
        self._thread = threading.Thread(target=self._main, name=f"port-{self.name}", daemon=True)
        self._thread.start()

    async def stop(self, timeout_s: float = 1.0) -> None:
        self._stop.set()
        with self._lock:
            if self._port is not None:
                with contextlib.suppress(Exception):
                    self._port.cancel_read()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, timeout_s)
            if self._thread.is_alive():
                self._log.error("port thread did not stop", extra={"port": self.name, "timeout_s": timeout_s})
        self._fail_writes()
        self._set_state("stopped")

    async def __aenter__(self) -> PortWorker:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def next_frame(self) -> bytes:
        return await self._frames.get()

    async def frames(self, stopping: asyncio.Event) -> AsyncIterator[bytes]:
        """Frames in arrival order until ``stopping`` is set."""
        while not stopping.is_set():
            try:  # frames waiting: no futures (a flood would pay two per frame)
                frame = self._frames.get_nowait()
            except asyncio.QueueEmpty:
                pass
            else:
                yield frame
                continue
            getting = asyncio.ensure_future(self._frames.get())
            waiting = asyncio.ensure_future(stopping.wait())
            try:
                await asyncio.wait({getting, waiting}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiting.cancel()
                if not getting.done():
                    getting.cancel()
            if getting.done() and not getting.cancelled():
                yield getting.result()

    async def write(self, data: bytes) -> None:
        """Write ``data`` in the worker thread; PortAbsent when not open, TimeoutError on a stall."""
        if not self.present or self._loop is None:
            raise PortAbsent(f"port {self.name} is {self._state}")
        done: asyncio.Future[None] = self._loop.create_future()
        self._writes.put((data, done))
        await done

    async def exchange(self, job: Callable[[Any], T]) -> T:
        """Run ``job(port)`` in the worker thread between reads (a request/response dialogue
        with the device, e.g. a fiscal register's status); its result, or what it raised:
        PortAbsent when the port is not open or is lost meanwhile (the worker reconnects)."""
        if not self.present or self._loop is None:
            raise PortAbsent(f"port {self.name} is {self._state}")
        done: asyncio.Future[T] = self._loop.create_future()
        self._writes.put((job, done))
        return await done

    # ------------------------------------------------------------ the worker thread

    def _main(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                port = self._open(self.options)
            except Exception as exc:  # SerialException, OSError, ValueError: all mean "not there now"
                failures += 1
                self._absent(failures, exc)
                delays = self.options.reconnect_s
                self._stop.wait(delays[min(failures, len(delays)) - 1])
                continue
            failures = 0
            with self._lock:
                self._port = port
            self.opened += 1
            self._set_state("open")
            self._log.info("port open", extra={"port": self.name})
            try:
                self._pump(port)
            except (serial.SerialException, OSError) as exc:
                if not self._stop.is_set():
                    self._log.warning("port lost, reconnecting", extra={"port": self.name, "error": str(exc)})
            except Exception:  # a bug here must not leave a dead thread behind an "open" state
                self._log.exception("port worker failed, reconnecting", extra={"port": self.name})
            finally:
                if not self._stop.is_set():
                    self._set_state("connecting")
                with self._lock:
                    self._port = None
                with contextlib.suppress(Exception):
                    port.close()
                self._fail_writes()

    def _pump(self, port: Any) -> None:
        if not self.options.listen:
            while not self._stop.is_set():
                try:
                    item = self._writes.get(timeout=self.options.read_timeout_s)
                except queue.Empty:
                    continue
                self._do_one(port, *item)
            return
        splitter = FrameSplitter(self.options.terminators, self.options.max_frame)
        last_byte = time.monotonic()
        while not self._stop.is_set():
            self._do_writes(port)
            data = port.read(port.in_waiting or 1)
            if self._stop.is_set():
                return
            now = time.monotonic()
            if data:
                last_byte = now
                dropped = splitter.dropped
                frames = splitter.feed(data)
                if frames:  # only the newest queue_size can be kept: the loop never sees the rest
                    self._to_loop(self._deliver_all, frames[-self.options.queue_size:], len(frames))
                if splitter.dropped > dropped:
                    self._log.warning("frame too long, dropped",
                                      extra={"port": self.name, "max_frame": self.options.max_frame})
            elif self.options.idle_flush_s is not None and now - last_byte >= self.options.idle_flush_s:
                partial = splitter.flush()
                if partial is not None:
                    self._to_loop(self._deliver, partial)

    def _do_writes(self, port: Any) -> None:
        while True:
            try:
                job, done = self._writes.get_nowait()
            except queue.Empty:
                return
            self._do_one(port, job, done)

    def _do_one(self, port: Any, job: bytes | Callable[[Any], Any], done: asyncio.Future[Any]) -> None:
        result = None
        try:
            if callable(job):
                result = job(port)
            else:
                port.write(job)
                port.flush()
        except serial.SerialTimeoutException as exc:
            self._to_loop(_settle, done, TimeoutError(f"write to {self.name} timed out: {exc}"))
        except (serial.SerialException, OSError) as exc:
            self._to_loop(_settle, done, PortAbsent(f"port {self.name} lost: {exc}"))
            raise
        except Exception as exc:  # e.g. not bytes, or the device's answer refused: the port is fine
            self._to_loop(_settle, done, exc)
        else:
            self._to_loop(_settle, done, None, result)

    def _fail_writes(self) -> None:
        while True:
            try:
                _, done = self._writes.get_nowait()
            except queue.Empty:
                return
            self._to_loop(_settle, done, PortAbsent(f"port {self.name} is not open"))

    def _absent(self, failures: int, exc: BaseException) -> None:
        self._to_loop(self._count, "device_absent", 1)
        if failures >= self.options.absent_after:
            self._set_state("absent")
        if failures in (1, self.options.absent_after):
            (self._log.warning if failures > 1 else self._log.info)(
                "port cannot be opened", extra={"port": self.name, "failures": failures, "error": str(exc)})

    def _set_state(self, state: str) -> None:
        """Any thread; ``on_state`` is called on the loop, in order, for each change."""
        if state == self._state:
            return
        self._state = state
        if self._on_state is not None:
            if self._loop is not None and threading.current_thread() is not self._thread:
                self._on_state(state)  # on the loop already (start, stop)
            else:
                self._to_loop(self._on_state, state)

    # ------------------------------------------------------------ to the event loop

    def _deliver(self, frame: bytes) -> None:  # runs in the loop
        self._deliver_all([frame], 1)

    def _deliver_all(self, frames: list[bytes], read: int) -> None:  # runs in the loop
        """``frames``: the newest of the ``read`` frames of one read (the others are dropped)."""
        dropped = read - len(frames)
        for frame in frames:
            if self._frames.full():
                self._frames.get_nowait()
                dropped += 1
            self._frames.put_nowait(frame)
        if dropped:
            self._log.warning("frame queue full, oldest frames dropped", extra={"port": self.name,
                                                                               "dropped": dropped})
        self._count("device_frame", read)

    def _to_loop(self, fn: Callable[..., None], *args: Any) -> None:
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is listening
                self._loop.call_soon_threadsafe(fn, *args)


def _settle(done: asyncio.Future[Any], error: BaseException | None, result: Any = None) -> None:
    if done.done():
        return
    if error is None:
        done.set_result(result)
    else:
        done.set_exception(error)


Handler = Callable[[bytes, PortWorker], Awaitable[None]]


async def run_device(ctx: DriverContext, options: PortOptions, handle: Handler) -> None:
    """The device driver's ``run``: one port worker; ``handle(frame, worker)`` for every frame,
    one at a time, until ``ctx.stopping`` is set; a begun ``handle`` is always finished; the
    worker is stopped on the way out, whatever ``handle`` raised."""
    worker = PortWorker(options, name=f"{ctx.name}:{options.url}", count=ctx.count, logger=ctx.log)
    async with worker:
        async for frame in worker.frames(ctx.stopping):
            await handle(frame, worker)
