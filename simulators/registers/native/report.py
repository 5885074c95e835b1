"""What a simulator run observed: acknowledgements, counters, calc latencies (no I/O).

Owns :class:`Ack` (one acknowledged sale / refund / cancel with the gateway's answer),
:class:`Recorder` (mutable, shared by every till of a run: asyncio runs them on one thread)
and :class:`SimReport` (the frozen summary). ``acks`` is the ground truth the crash test and
the demo compare with the core: every key the gateway acknowledged, nothing else.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

MAX_ERROR_MESSAGES = 50


@dataclass(frozen=True, slots=True)
class Ack:
    """One 200 answer to a commit: kind ("sale" | "refund" | "cancel"), the till's identity of
    the document, the gateway's key and duplicate flag, attempts it took, the whole answer."""

    kind: str
    identity: str
    register_id: str
    key: str
    duplicate: bool
    attempts: int
    response: dict[str, Any]


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (0 for no values)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass
class Recorder:
    """Counters and samples shared by the tills of one run."""

    receipts: int = 0
    identified: int = 0
    offline_answers: int = 0
    rejections: int = 0
    retries: int = 0
    timeouts: int = 0
    unauthorized: int = 0
    unacknowledged: int = 0
    errors: int = 0
    error_messages: list[str] = field(default_factory=list)
    calc_ms: list[float] = field(default_factory=list)
    acks: list[Ack] = field(default_factory=list)

    def error(self, message: str) -> None:
        self.errors += 1
        if len(self.error_messages) < MAX_ERROR_MESSAGES:
            self.error_messages.append(message)

    def report(self, *, seed: int, tills: int, elapsed_s: float, asked: int | None = None,
               interrupted: bool = False) -> SimReport:
        def acked(kind: str) -> int:
            return len({a.identity for a in self.acks if a.kind == kind})

        return SimReport(
            seed=seed, tills=tills, receipts=self.receipts, acknowledged=acked("sale"),
            unacknowledged=self.unacknowledged, refunds=acked("refund"), cancels=acked("cancel"),
            duplicates=sum(a.duplicate for a in self.acks), errors=self.errors,
            error_messages=list(self.error_messages), calc_count=len(self.calc_ms),
            calc_p50_ms=round(percentile(self.calc_ms, 50), 3),
            calc_p99_ms=round(percentile(self.calc_ms, 99), 3),
            calc_max_ms=round(max(self.calc_ms, default=0.0), 3),
            offline_answers=self.offline_answers, rejections=self.rejections,
            identified=self.identified, retries=self.retries, timeouts=self.timeouts,
            unauthorized=self.unauthorized, elapsed_s=round(elapsed_s, 3), acks=list(self.acks),
            asked=self.receipts if asked is None else asked, interrupted=interrupted,
        )


@dataclass(frozen=True)
class SimReport:
    """Summary of a run. ``acknowledged``/``refunds``/``cancels`` count distinct documents the
    gateway acknowledged; ``duplicates`` counts answers flagged ``duplicate``; ``errors``
    counts everything that went wrong (inconsistent answers, 4xx, commits given up)."""

    seed: int
    tills: int
    receipts: int
    acknowledged: int
    unacknowledged: int
    refunds: int
    cancels: int
    duplicates: int
    errors: int
    error_messages: list[str]
    calc_count: int
    calc_p50_ms: float
    calc_p99_ms: float
    calc_max_ms: float
    offline_answers: int
    rejections: int
    identified: int
    retries: int
    timeouts: int
    unauthorized: int
    elapsed_s: float
    acks: list[Ack]
    asked: int = 0  # receipts the run was asked for (``receipts`` is what was rung up)
    interrupted: bool = False  # stopped by Ctrl-C before ``asked`` receipts were rung up

    @property
    def ack_keys(self) -> set[str]:
        """Every key the gateway acknowledged (sales, refunds and cancels)."""
        return {a.key for a in self.acks}

    def to_json(self, *, with_acks: bool = True) -> dict[str, Any]:
        data = asdict(self)
        if not with_acks:
            del data["acks"]
        return data

    def summary(self) -> str:
        """Human-readable lines for the terminal."""
        lines = [
            f"receipts {self.receipts} on {self.tills} tills in {self.elapsed_s:.1f} s (seed {self.seed})"
            + (f": INTERRUPTED by Ctrl-C, {self.asked} asked" if self.interrupted else ""),
            f"acknowledged {self.acknowledged} sales, {self.refunds} refunds, {self.cancels} cancels; "
            f"unacknowledged {self.unacknowledged}; duplicates answered {self.duplicates}",
            f"calculate: {self.calc_count} answers, p50 {self.calc_p50_ms:.1f} ms, "
            f"p99 {self.calc_p99_ms:.1f} ms, max {self.calc_max_ms:.1f} ms; offline answers "
            f"{self.offline_answers}; rejections {self.rejections}",
            f"identified {self.identified}; retries {self.retries}; timeouts {self.timeouts}; "
            f"bad-token 401s {self.unauthorized}",
            f"errors {self.errors}",
        ]
        lines += [f"  - {m}" for m in self.error_messages[:10]]
        return "\n".join(lines)
