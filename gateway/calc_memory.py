"""Which calc memory keys hold a remembered calc: an index in process memory of what is stored.

Every sale without a calc token looks for its calc's memory under two keys (see
:mod:`gateway.pipeline`), but a calc is remembered only when it was answered offline, with a
hold, or for a bound customer: most sales have nothing to find. Asking the outbox file for each
key cost a reader-thread trip per sale (measured: about a tenth of the gateway's CPU per sale
with 32 tills committing). The index answers "nothing stored under this key" without the trip.

Invariants:

- the pipeline is the only writer of the calc memory (namespace ``_calc`` of ``driver_state``):
  this process adds every key it writes to the index (:meth:`MemoryIndex.add`) *before* the
  write starts, and the keys already stored are read once from the file before the first lookup
  (:meth:`MemoryIndex.ready`), merged without removing anything added meanwhile. So a key that
  holds a calc in the file is always in the index: :meth:`MemoryIndex.lookup` never answers
  0 for it (a false "may hold" costs one read that finds nothing: a failed write, a key
  forgotten while the index loaded);
- a key leaves the index when the calc that was found under it is forgotten
  (:meth:`MemoryIndex.discard`, after the sale that used it is stored; a calc remembered under
  the same key since the lookup stays) or a minute after the file lets it expire (the file's
  expiry is set at its write, a little after the index's);
- bounded: at most ``limit`` keys (:data:`MAX_KEYS`, about 10 MB). Past it, or when the file holds
  more, the index gives up (:attr:`MemoryIndex.complete` False, one WARNING) and every key is
  read from the file again, as before the index, until the process restarts.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence

log = logging.getLogger(__name__)

MAX_KEYS = 50_000  # two keys per remembered calc: 25,000 calcs offline or with a hold in two days
EXPIRY_MARGIN_S = 60.0  # the file's expiry is computed when the writer runs, after the index's

Loader = Callable[[int], Awaitable[Sequence[tuple[str, float | None]]]]


class MemoryIndex:
    """The calc memory keys that may hold a calc, with when each expires (wall clock)."""

    def __init__(self, load: Loader, *, keep_s: float, limit: int = MAX_KEYS,
                 clock: Callable[[], float] = time.time) -> None:
        self._load = load  # (limit) -> up to limit + 1 stored (key, expires_at), non-empty values only
        self._keep_s = keep_s
        self._limit = limit
        self._clock = clock
        self._expiry: dict[str, tuple[float, int]] = {}  # key -> (expires at, which write)
        self._gen = 0
        self._loaded: asyncio.Future[None] | None = None
        self._prune_at = limit // 2  # the size at which expired keys are next looked for
        self.complete = True
        self.loaded = False  # True once the stored keys are in

    async def ready(self) -> None:
        """Read the stored keys once (concurrent callers share the read; a failed read is tried
        again by the next caller and raises to this one: the caller then reads the file)."""
        if self._loaded is None or (self._loaded.done() and not self.loaded):  # none yet, or it failed
            self._loaded = asyncio.ensure_future(self._read())
        await asyncio.shield(self._loaded)

    async def _read(self) -> None:
        stored = await self._load(self._limit)
        if not self.complete:
            self.loaded = True
            return
        if len(stored) > self._limit:
            self._give_up(f"the file holds more than {self._limit} remembered calc keys")
            self.loaded = True
            return
        margin = EXPIRY_MARGIN_S
        for key, expires in stored:
            if key not in self._expiry:  # one added meanwhile is newer than the file's
                self._gen += 1
                self._expiry[key] = (float("inf") if expires is None else expires + margin, self._gen)
        self._bound()
        self.loaded = True

    def add(self, keys: Iterable[str]) -> None:
        """``keys`` are about to be written (call before the write starts)."""
        if not self.complete:
            return
        at = self._clock() + self._keep_s + EXPIRY_MARGIN_S
        for key in keys:
            self._gen += 1
            self._expiry[key] = (at, self._gen)
        self._bound()

    def lookup(self, key: str) -> int:
        """0 only when ``key`` holds no calc in the file (call after :meth:`ready`); else a number
        that names this write of the key, for :meth:`discard`."""
        if not self.complete:
            return -1
        entry = self._expiry.get(key)
        if entry is None:
            return 0
        if entry[0] <= self._clock():
            del self._expiry[key]
            return 0
        return entry[1]

    def discard(self, key: str, found: int) -> None:
        """``key``'s calc, as :meth:`lookup` found it (``found``), was forgotten (written empty);
        a calc remembered under ``key`` since then stays."""
        entry = self._expiry.get(key)
        if entry is not None and entry[1] == found:
            del self._expiry[key]

    def empty(self) -> bool:
        """True when no key may hold a calc (call after :meth:`ready`)."""
        return self.complete and not self._expiry

    def __len__(self) -> int:
        return len(self._expiry)

    def _bound(self) -> None:
        if len(self._expiry) < self._prune_at:
            return
        now = self._clock()
        for key in [k for k, (at, _) in self._expiry.items() if at <= now]:
            del self._expiry[key]
        if len(self._expiry) > self._limit:
            self._give_up(f"more than {self._limit} calcs remembered at once")
            return
        self._prune_at = max(self._limit // 2, min(self._limit + 1, 2 * len(self._expiry)))

    def _give_up(self, why: str) -> None:
        self.complete = False
        self._expiry.clear()
        log.warning("calc memory index given up: every sale reads its calc memory from the file",
                    extra={"why": why, "action": "nothing is lost; restart the gateway once the "
                                                 "remembered calcs have been committed or expired"})
