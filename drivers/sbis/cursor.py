"""The poll cursor of the SBIS driver: one entry per fiscal drive, gaps in its document numbers: pure.

The cursor is JSON text kept by :mod:`gateway.poll` under its cursor key and written only after
every document of the page was stored or skipped. Per fiscal drive (FN) it holds:

- ``top``: the highest fiscal document number (FD) taken (0: none yet). A drive that began
  within the horizon (``fresh``: replaced after the first run) expects every number from 1; any
  other drive starts at its first number seen, numbers before it are history, not expected;
- ``gaps``: ranges of FD numbers below ``top`` not seen yet (an offline till uploads them late),
  each with the raw ``dateTime`` of its neighbours (where to look again) and when it opened;
- ``start``: the newest raw ``dateTime`` taken; the next window starts ``overlap_s`` before it.

Invariants: a document is *passed* (never submitted again, only checked against its fiscal sign)
iff its FD is at most ``top`` and in no gap; :func:`advance` only adds numbers to the passed set
that the page carried, so a cursor written after the page never passes an unread document;
encoding is canonical (sorted keys), so an unchanged cursor encodes to the same text. Raw times
are seconds in the documents' own frame (see :mod:`drivers.sbis.wire`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

MAX_GAPS = 500  # ranges per drive; beyond that the oldest are given up (with the alarm)


@dataclass(frozen=True, slots=True)
class Gap:
    lo: int
    hi: int  # inclusive
    t_lo: float  # raw dateTime of the document before lo (a lower bound of where the missing ones are)
    t_hi: float  # raw dateTime of the document after hi
    opened: float  # gateway Unix time the gap was first seen

    def __contains__(self, fd: object) -> bool:
        return isinstance(fd, int) and self.lo <= fd <= self.hi


@dataclass(frozen=True, slots=True)
class Drive:
    reg: str  # kktRegId of the register the drive is in
    start: float  # raw: the newest dateTime taken (or where reading starts)
    top: int = 0
    gaps: tuple[Gap, ...] = ()
    checked: float = 0.0  # gateway Unix time the gaps were last read again
    fresh: bool = False  # began within the horizon: numbers from 1 are expected

    def passed(self, fd: int) -> bool:
        return 0 < fd <= self.top and not any(fd in g for g in self.gaps)

    def missing(self) -> int:
        return sum(g.hi - g.lo + 1 for g in self.gaps)


@dataclass(frozen=True, slots=True)
class Cursor:
    since: float  # raw: the horizon of the very first run; no drive reads before it
    drives: dict[str, Drive] = field(default_factory=dict)

    def encode(self) -> str:
        return json.dumps(
            {
                "v": 1,
                "since": self.since,
                "drives": {
                    fn: {
                        "reg": d.reg,
                        "start": d.start,
                        "top": d.top,
                        "checked": d.checked,
                        "fresh": d.fresh,
                        "gaps": [[g.lo, g.hi, g.t_lo, g.t_hi, g.opened] for g in d.gaps],
                    }
                    for fn, d in self.drives.items()
                },
            },
            sort_keys=True,
            separators=(",", ":"),
        )

    @classmethod
    def decode(cls, text: str) -> Cursor:
        """The cursor ``encode`` wrote; ValueError for anything else (a damaged state row)."""
        try:
            data: Any = json.loads(text)
            drives = {
                str(fn): Drive(
                    str(d["reg"]),
                    float(d["start"]),
                    int(d["top"]),
                    tuple(Gap(int(a), int(b), float(c), float(e), float(o)) for a, b, c, e, o in d["gaps"]),
                    float(d.get("checked", 0.0)),
                    bool(d.get("fresh", False)),
                )
                for fn, d in data["drives"].items()
            }
            return cls(float(data["since"]), drives)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"not an SBIS cursor: {text[:120]!r}") from exc

    def with_drive(self, fn: str, drive: Drive) -> Cursor:
        return replace(self, drives={**self.drives, fn: drive})


def advance(drive: Drive, taken: Iterable[tuple[int, float | None]], now: float) -> Drive:
    """``drive`` after the page's documents ``taken`` ((fd, raw dateTime or None) each) were stored:
    their numbers leave the gaps, numbers skipped above ``top`` open new gaps, ``start`` moves to
    the newest dateTime. ``now`` is the gateway's Unix time (stamps new gaps)."""
    times = {fd: at for fd, at in taken}
    if not times:
        return drive
    new_top = max(drive.top, max(times))
    base = drive.top if drive.top or drive.fresh else min(times) - 1
    gaps: list[Gap] = []
    for g in drive.gaps:
        gaps += _split(g, times)
    if new_top > base + 1:
        lower_t = drive.start
        run: int | None = None
        for fd in range(base + 1, new_top + 1) if new_top - base <= 100_000 else ():
            if fd in times:
                if run is not None:
                    gaps.append(Gap(run, fd - 1, lower_t, times[fd] or lower_t, now))
                    run = None
                lower_t = times[fd] or lower_t
            elif run is None:
                run = fd
        if new_top - base > 100_000:  # absurd jump: one gap, no per-number walk
            gaps.append(Gap(base + 1, new_top - 1, drive.start, times[new_top] or drive.start, now))
    known = [at for at in times.values() if at is not None]
    start = max([drive.start, *known])
    gaps.sort(key=lambda g: g.lo)
    return replace(drive, top=new_top, gaps=tuple(gaps), start=start)


def _split(gap: Gap, filled: dict[int, float | None]) -> list[Gap]:
    inside = sorted(fd for fd in filled if fd in gap)
    if not inside:
        return [gap]
    out, lo, t_lo = [], gap.lo, gap.t_lo
    for fd in inside:
        if fd > lo:
            out.append(Gap(lo, fd - 1, t_lo, filled[fd] or gap.t_hi, gap.opened))
        lo, t_lo = fd + 1, filled[fd] or t_lo
    if lo <= gap.hi:
        out.append(Gap(lo, gap.hi, t_lo, gap.t_hi, gap.opened))
    return out


def windows(
    drive: Drive, *, now_raw: float, now: float, overlap_s: float, ahead_s: float, gap_recheck_s: float
) -> tuple[list[tuple[float, float]], bool]:
    """The time windows (raw dateFrom, dateTo) to read for ``drive``, and whether they include the
    gaps' windows (then ``checked`` moves to ``now``). The main window runs from ``overlap_s``
    before the newest document taken to ``ahead_s`` past the gateway's clock; each gap's window
    spans its neighbours' times widened by ``overlap_s``, read every ``gap_recheck_s``."""
    main = (drive.start - overlap_s, max(now_raw + ahead_s, drive.start + 1))
    out = [main]
    recheck = bool(drive.gaps) and now - drive.checked >= gap_recheck_s
    if recheck:
        spans = sorted((g.t_lo - overlap_s, g.t_hi + overlap_s) for g in drive.gaps)
        merged: list[tuple[float, float]] = []
        for a, b in spans:
            if merged and a <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], b))
            else:
                merged.append((a, b))
        out += [(a, min(b, main[0])) for a, b in merged if a < main[0]]
    return out, recheck


def age(drive: Drive, now: float, max_age_s: float) -> tuple[Drive, list[Gap]]:
    """Gaps open longer than ``max_age_s`` (or beyond MAX_GAPS, the oldest) given up: the drive
    without them and the gaps given up (the caller raises the alarm)."""
    keep = [g for g in drive.gaps if now - g.opened < max_age_s]
    if len(keep) > MAX_GAPS:
        keep = sorted(keep, key=lambda g: g.opened)[-MAX_GAPS:]
    kept = set(keep)
    gone = [g for g in drive.gaps if g not in kept]
    if not gone:
        return drive, []
    return replace(drive, gaps=tuple(sorted(keep, key=lambda g: g.lo))), gone
