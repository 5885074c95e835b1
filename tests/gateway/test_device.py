"""gateway.device: the frame splitter, and the port worker on real pty pairs."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from gateway.device import FrameSplitter, PortAbsent, PortOptions, PortWorker, run_device
from tests.drivers.fake_context import FakeContext
from tests.gateway.pty_pair import PtyPair, link

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="pty pairs are POSIX")

FAST_RECONNECT = (0.02, 0.05)


# ------------------------------------------------------------ the splitter (pure)


@pytest.mark.parametrize(("chunks", "frames"), [
    ([b"LQ1:K7M2P9XQ4T\r"], [b"LQ1:K7M2P9XQ4T"]),
    ([b"2770012345601\r\n"], [b"2770012345601"]),
    ([b"A\nB\r\n\r\nC\r"], [b"A", b"B", b"C"]),
    ([b"LQ1:", b"K7M", b"\r"], [b"LQ1:K7M"]),
    ([b"0104\x1d93Ab\xff\r"], [b"0104\x1d93Ab\xff"]),  # GS and non-UTF-8 bytes kept: split before decoding
    ([b"\r\n\r\n"], []),
])
def test_splitter(chunks: list[bytes], frames: list[bytes]) -> None:
    s = FrameSplitter()
    assert [f for c in chunks for f in s.feed(c)] == frames


def test_splitter_drops_an_overlong_frame_whole_and_goes_on() -> None:
    s = FrameSplitter(b"\r", max_frame=4)
    assert s.feed(b"1234") == []
    assert s.feed(b"56789\rok\r") == [b"ok"] and s.dropped == 1
    assert s.feed(b"12345") == [] and s.flush() is None and s.dropped == 2


def test_splitter_flush_and_custom_terminator() -> None:
    s = FrameSplitter(b"\x03")
    assert s.feed(b"a\rb\x03c") == [b"a\rb"]
    assert s.flush() == b"c" and s.flush() is None


# ------------------------------------------------------------ the worker on a pty


@pytest.fixture
async def pty() -> AsyncIterator[PtyPair]:
    pair = PtyPair()
    yield pair
    pair.close()


def options(url: str, **kw: object) -> PortOptions:
    return PortOptions(url, reconnect_s=FAST_RECONNECT, **kw)  # type: ignore[arg-type]


async def until(predicate: Callable[[], bool], timeout: float = 3.0) -> None:  # noqa: ASYNC109
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, "condition not reached in time"
        await asyncio.sleep(0.01)


async def frames(worker: PortWorker, n: int) -> list[bytes]:
    return [await asyncio.wait_for(worker.next_frame(), 2) for _ in range(n)]


def tally(into: list[str]) -> Callable[[str, int], None]:
    """A PortWorker ``count``: each counted name ``n`` times into ``into``."""
    return lambda what, n: into.extend([what] * n)


def port_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("port-")]


async def test_frames_arrive_in_order_and_partial_frames_are_joined(pty: PtyPair) -> None:
    counted: list[str] = []
    async with PortWorker(options(pty.path), count=tally(counted)) as worker:
        await until(lambda: worker.present)
        pty.send(b"LQ1:K7M2P9XQ4T\r2770012345601\r\n")
        pty.send(b"+7903")
        await asyncio.sleep(0.04)  # one scan split over reads 40 ms apart
        pty.send(b"5550142\r\n")
        assert await frames(worker, 3) == [b"LQ1:K7M2P9XQ4T", b"2770012345601", b"+79035550142"]
    assert counted.count("device_frame") == 3


async def test_idle_flush_delivers_a_frame_without_terminator(pty: PtyPair) -> None:
    async with PortWorker(options(pty.path, idle_flush_s=0.15)) as worker:
        await until(lambda: worker.present)
        pty.send(b"NOSUFFIX")
        assert await frames(worker, 1) == [b"NOSUFFIX"]


async def test_full_queue_drops_the_oldest_frame(pty: PtyPair) -> None:
    async with PortWorker(options(pty.path, queue_size=2)) as worker:
        await until(lambda: worker.present)
        pty.send(b"1\r2\r3\r4\r")
        await asyncio.sleep(0.2)
        assert await frames(worker, 2) == [b"3", b"4"]


async def test_write_goes_out_through_the_worker_thread(pty: PtyPair) -> None:
    async with PortWorker(options(pty.path)) as worker:
        await until(lambda: worker.present)
        await asyncio.wait_for(worker.write(b"\x1b@\x0cHELLO"), 1)
        assert await pty.read(8) == b"\x1b@\x0cHELLO"


async def test_a_missing_port_is_retried_reported_absent_and_recovers(tmp_path: Path) -> None:
    path = tmp_path / "by-id-scanner"
    counted: list[str] = []
    async with PortWorker(options(str(path)), count=tally(counted)) as worker:
        await until(lambda: worker.state == "absent")
        assert not worker.present and counted.count("device_absent") >= 3
        with pytest.raises(PortAbsent):
            await worker.write(b"x")
        pair = PtyPair()
        try:
            link(path, pair)
            await until(lambda: worker.present)
            pair.send(b"AFTER\r")
            assert await frames(worker, 1) == [b"AFTER"]
        finally:
            pair.close()


async def test_a_vanished_port_is_reopened_when_it_is_back(tmp_path: Path) -> None:
    path = tmp_path / "by-id-scanner"
    first = PtyPair()
    link(path, first)
    counted: list[str] = []
    async with PortWorker(options(str(path)), count=tally(counted)) as worker:
        await until(lambda: worker.present)
        first.send(b"BEFORE\r")
        assert await frames(worker, 1) == [b"BEFORE"]
        first.send(b"HALF-")  # unplugged mid-scan: the partial frame must not survive
        await asyncio.sleep(0.05)
        first.vanish()
        await until(lambda: not worker.present)
        await until(lambda: "device_absent" in counted)
        second = PtyPair()
        try:
            link(path, second)
            await until(lambda: worker.present)
            assert worker.opened == 2
            second.send(b"AGAIN\r")
            assert await frames(worker, 1) == [b"AGAIN"]
        finally:
            second.close()


async def test_stop_is_prompt_even_with_a_long_read_timeout(pty: PtyPair) -> None:
    worker = PortWorker(options(pty.path, read_timeout_s=5.0))
    await worker.start()
    await until(lambda: worker.present)
    await asyncio.sleep(0.05)  # the thread is inside a 5 s read
    started = time.monotonic()
    await worker.stop()
    assert time.monotonic() - started < 0.3
    assert port_threads() == [] and worker.state == "stopped"


async def test_stop_while_absent_is_prompt(tmp_path: Path) -> None:
    worker = PortWorker(PortOptions(str(tmp_path / "nothing"), reconnect_s=(5.0,)))
    await worker.start()
    await asyncio.sleep(0.05)
    started = time.monotonic()
    await worker.stop()
    assert time.monotonic() - started < 0.3 and port_threads() == []


async def test_run_device_hands_frames_to_the_driver_and_stops_on_ctx_stopping(pty: PtyPair) -> None:
    ctx = FakeContext("scanner")
    seen: list[bytes] = []

    async def handle(frame: bytes, worker: PortWorker) -> None:
        seen.append(frame)
        await worker.write(b"OK\r\n")

    task = asyncio.create_task(run_device(ctx, options(pty.path), handle))
    await until(lambda: bool(port_threads()))
    await asyncio.sleep(0.1)
    pty.send(b"SCAN\r")
    assert await pty.read(4) == b"OK\r\n"
    started = time.monotonic()
    ctx.stopping.set()
    await asyncio.wait_for(task, 1)
    assert time.monotonic() - started < 0.5
    assert seen == [b"SCAN"] and ctx.counts["device_frame"] == 1 and port_threads() == []


async def test_state_changes_are_told_on_the_loop_in_order(tmp_path: Path) -> None:
    path = tmp_path / "by-id-display"
    states: list[tuple[str, bool]] = []
    loop_thread = threading.current_thread()

    def on_state(state: str) -> None:
        states.append((state, threading.current_thread() is loop_thread))

    worker = PortWorker(options(str(path)), on_state=on_state)
    async with worker:
        await until(lambda: worker.state == "absent")
        pair = PtyPair()
        try:
            link(path, pair)
            await until(lambda: worker.present)
            await until(lambda: states[-1][0] == "open")
        finally:
            pair.close()
    assert [s for s, _ in states] == ["connecting", "absent", "open", "stopped"]
    assert all(on_loop for _, on_loop in states)


async def test_the_frames_of_one_read_reach_the_loop_in_one_callback(
        pty: PtyPair, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    async with PortWorker(options(pty.path)) as worker:
        original = worker._deliver_all

        def spy(frames: list[bytes], read: int) -> None:
            calls.append(len(frames))
            original(frames, read)

        monkeypatch.setattr(worker, "_deliver_all", spy)
        await until(lambda: worker.present)
        pty.send(b"a\rb\rc\rd\r")
        assert await frames(worker, 4) == [b"a", b"b", b"c", b"d"]
    assert sum(calls) == 4 and len(calls) < 4


async def test_a_flood_in_one_read_keeps_only_the_newest_frames(pty: PtyPair) -> None:
    counted: list[str] = []
    async with PortWorker(options(pty.path, queue_size=3), count=tally(counted)) as worker:
        await until(lambda: worker.present)
        pty.send(b"".join(b"%d\r" % i for i in range(1000)))
        await until(lambda: counted.count("device_frame") == 1000)
        assert await frames(worker, 3) == [b"997", b"998", b"999"]


async def test_exchange_runs_a_dialogue_in_the_worker_thread_and_listen_false_reads_nothing(
        pty: PtyPair) -> None:
    async with PortWorker(options(pty.path, listen=False)) as worker:
        await until(lambda: worker.present)
        pty.send(b"unasked\r")  # a device that talks out of turn: nobody reads it but a dialogue

        def dialogue(port: object) -> tuple[bytes, str]:
            port.write(b"\x05")  # type: ignore[attr-defined]
            return port.read(8), threading.current_thread().name  # type: ignore[attr-defined]

        got, thread = await asyncio.wait_for(worker.exchange(dialogue), 2)
        assert got == b"unasked\r" and thread.startswith("port-")
        assert await pty.read(1) == b"\x05"

        def broken(port: object) -> None:
            raise ValueError("the answer made no sense")

        with pytest.raises(ValueError, match="no sense"):
            await worker.exchange(broken)
        assert worker.present  # the port is fine
    with pytest.raises(PortAbsent):
        await worker.exchange(dialogue)
