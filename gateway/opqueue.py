"""The operator queue's presentation: rejected outbox rows as JSON and as a text table.

One place for both the ``posgw queue`` CLI and the daemon's ``/v1/queue`` endpoint, so the two
show the same fields under the same names. Pure functions plus one async reader; no state.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from gateway.outbox import Outbox, OutboxRow


def format_age(seconds: float) -> str:
    """A short human age: 45s, 12m, 5h, 3d."""
    s = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{s // size}{unit}"
    return f"{s}s"


def row_view(row: OutboxRow, now: float) -> dict[str, Any]:
    """The JSON form of one row: ``posgw queue`` and the daemon's ``/v1/queue`` both use it."""
    return {
        "id": row.id,
        "key": row.key,
        "register_id": row.register_id,
        "register_seq": row.register_seq,
        "kind": row.kind,
        "state": row.state,
        "attempts": row.attempts,
        "created_at": row.created_at,
        "created_at_iso": datetime.fromtimestamp(row.created_at, UTC).isoformat(),
        "age_s": round(max(0.0, now - row.created_at), 3),
        "reason": row.reason,
        "last_error": row.last_error,
        "note": row.note,
    }


async def queue_json(outbox: Outbox, *, now: float | None = None) -> dict[str, Any]:
    """``{"count": n, "rejected": [row_view, ...]}`` in outbox order (oldest first)."""
    at = time.time() if now is None else now
    rows = await outbox.rejected()
    return {"count": len(rows), "rejected": [row_view(r, at) for r in rows]}


COLUMNS = (("id", "ID"), ("register_id", "REGISTER"), ("kind", "KIND"), ("key", "KEY"),
           ("reason", "REASON"), ("age", "AGE"))


def format_table(rows: Sequence[dict[str, Any]], *, max_key: int = 48) -> str:
    """A fixed-width table of row summaries (keys longer than ``max_key`` are shortened)."""
    cells = []
    for r in rows:
        key = str(r["key"])
        if len(key) > max_key:
            key = key[: max_key - 1] + "…"
        cells.append({"id": str(r["id"]), "register_id": str(r["register_id"]), "kind": str(r["kind"]),
                      "key": key, "reason": str(r["reason"] or "-"), "age": format_age(float(r["age_s"]))})
    widths = {c: max([len(h)] + [len(x[c]) for x in cells]) for c, h in COLUMNS}
    lines = ["  ".join(h.ljust(widths[c]) for c, h in COLUMNS).rstrip()]
    lines += ["  ".join(x[c].ljust(widths[c]) for c, _ in COLUMNS).rstrip() for x in cells]
    return "\n".join(lines)
