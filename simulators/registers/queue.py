"""What a till simulator's run left in the gateway's operator queue: the documents it sent that
the core did NOT apply (refused for good, or a refund whose sale never came). Every simulator asks
at the end of its run (``GET /v1/queue``) and exits non-zero when there is any.
No ``drivers`` import; one aiohttp request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import aiohttp

QUEUE_SETTLE_S = 3.0  # how long the end-of-run check lets the gateway finish delivering


async def operator_queue(gateway: str, *, since: float, admin_key: str = "",
                         settle_s: float = QUEUE_SETTLE_S) -> tuple[list[dict[str, Any]], str]:
    """The gateway's operator queue (``GET /v1/queue``) rows created at or after ``since`` (Unix
    seconds): what this run sent that the core did NOT apply. Waits ``settle_s`` first so late
    rejections are in. Returns (rows, problem): problem names why the queue could not be read
    ("" when it was), e.g. a missing admin key (``POSGW_ADMIN_KEY``)."""
    await asyncio.sleep(settle_s)
    headers = {"Authorization": f"Bearer {admin_key}"} if admin_key else {}
    try:
        async with aiohttp.ClientSession() as session, session.get(
                f"{gateway.rstrip('/')}/v1/queue", headers=headers,
                timeout=aiohttp.ClientTimeout(total=10)) as resp:
            if resp.status != 200:
                return [], f"HTTP {resp.status} from /v1/queue (set POSGW_ADMIN_KEY: the gateway admin key)"
            data = await resp.json()
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        return [], f"cannot read /v1/queue: {exc!r}"
    # the daemon answers a JSON list of rows; {"rejected": [...]} is `posgw queue --json`'s form
    rows = data if isinstance(data, list) else data.get("rejected", []) if isinstance(data, dict) else []
    return [r for r in rows if isinstance(r, dict) and float(r.get("created_at", 0)) >= since], ""


def queue_lines(rows: Sequence[dict[str, Any]]) -> list[str]:
    """One error line per operator-queue row: key, reason, what the gateway says."""
    return [f"not applied at the core, in the gateway's operator queue: {r.get('kind')} {r.get('key')} "
            f"{r.get('reason')}: {r.get('last_error')}" for r in rows]
