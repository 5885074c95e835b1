"""The calc memory index: never misses a stored key, forgets what is forgotten or expired, bounded."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import pytest

from gateway.calc_memory import EXPIRY_MARGIN_S, MemoryIndex
from gateway.errors import StorageError

KEEP_S = 100.0


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


class Stored:
    """What the file holds: (key, expires_at) pairs; ``gate`` holds the read until set."""

    def __init__(self, rows: Sequence[tuple[str, float | None]] = ()) -> None:
        self.rows = list(rows)
        self.reads = 0
        self.fail = False
        self.gate: asyncio.Event | None = None

    async def __call__(self, limit: int) -> list[tuple[str, float | None]]:
        self.reads += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise StorageError("disk unreadable (test)")
        return self.rows[: limit + 1]


def index(stored: Stored, clock: Clock, limit: int = 100) -> MemoryIndex:
    return MemoryIndex(stored, keep_s=KEEP_S, limit=limit, clock=clock)


async def test_keys_stored_before_the_start_are_found_and_others_are_not() -> None:
    clock = Clock()
    stored = Stored([("r1\x1f7", clock.now + 50), ("forever", None)])
    memory = index(stored, clock)
    assert not memory.loaded
    await asyncio.gather(memory.ready(), memory.ready())  # concurrent callers share one read
    assert memory.loaded and stored.reads == 1
    assert memory.lookup("r1\x1f7") and memory.lookup("forever")
    assert memory.lookup("r1\x1f8") == 0
    clock.now += 50 + EXPIRY_MARGIN_S + 1  # the file's expiry has passed, and the margin
    assert memory.lookup("r1\x1f7") == 0 and memory.lookup("forever")
    assert len(memory) == 1


async def test_a_key_added_while_the_file_is_read_is_kept() -> None:
    """The load merges: a key written meanwhile (and perhaps forgotten in the file by the time
    it is read) stays in the index."""
    clock = Clock()
    stored = Stored([("old", clock.now + 10)])
    stored.gate = asyncio.Event()
    memory = index(stored, clock)
    loading = asyncio.ensure_future(memory.ready())
    await asyncio.sleep(0)
    memory.add(["new"])
    stored.gate.set()
    await loading
    assert memory.lookup("new") and memory.lookup("old")


async def test_an_added_key_expires_with_the_files_and_a_margin() -> None:
    clock = Clock()
    memory = index(Stored(), clock)
    await memory.ready()
    assert memory.empty()
    memory.add(["k1", "k2"])
    assert not memory.empty()
    clock.now += KEEP_S + EXPIRY_MARGIN_S - 1
    assert memory.lookup("k1")
    clock.now += 2
    assert memory.lookup("k1") == 0 and memory.lookup("k2") == 0 and len(memory) == 0
    assert memory.empty()


async def test_discard_forgets_the_calc_it_found_but_not_a_newer_one() -> None:
    clock = Clock()
    memory = index(Stored(), clock)
    await memory.ready()
    memory.add(["k"])
    found = memory.lookup("k")
    memory.discard("k", found)
    assert memory.lookup("k") == 0
    memory.add(["k"])
    found = memory.lookup("k")
    memory.add(["k"])  # another calc remembered under the same key since the lookup
    memory.discard("k", found)
    assert memory.lookup("k")  # the newer calc is still in the file: still indexed


async def test_a_failed_read_raises_and_the_next_caller_reads_again() -> None:
    stored = Stored([("k", None)])
    stored.fail = True
    memory = index(stored, Clock())
    with pytest.raises(StorageError):
        await memory.ready()
    assert not memory.loaded
    stored.fail = False
    await memory.ready()
    assert memory.loaded and stored.reads == 2 and memory.lookup("k")


async def test_past_its_bound_the_index_gives_up_and_every_key_may_hold(
        caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    memory = index(Stored(), clock, limit=10)
    await memory.ready()
    with caplog.at_level(logging.WARNING, logger="gateway.calc_memory"):
        for i in range(6):
            memory.add([f"a{i}", f"b{i}"])
    assert not memory.complete and len(memory) == 0 and not memory.empty()
    assert memory.lookup("never-written") != 0  # read from the file: nothing is missed
    assert [r.message for r in caplog.records].count(
        "calc memory index given up: every sale reads its calc memory from the file") == 1


async def test_expired_keys_are_pruned_before_the_bound_is_judged() -> None:
    clock = Clock()
    memory = index(Stored(), clock, limit=10)
    await memory.ready()
    for i in range(30):  # 60 keys in all, never more than 10 alive
        memory.add([f"a{i}", f"b{i}"])
        clock.now += (KEEP_S + EXPIRY_MARGIN_S) / 3
    assert memory.complete and len(memory) <= 10


async def test_a_file_holding_more_than_the_bound_is_not_indexed() -> None:
    clock = Clock()
    memory = index(Stored([(f"k{i}", None) for i in range(20)]), clock, limit=10)
    await memory.ready()
    assert memory.loaded and not memory.complete
    assert memory.lookup("anything") != 0
