"""What a till simulator's run left undelivered or in the gateway's operator queue: the documents
it sent that the core did NOT apply (refused for good, or a refund whose sale never came). Every
simulator asks at the end of its run and exits non-zero when there is any.

The end-of-run check (:func:`operator_queue`) first waits, at most ``settle_s``, until the gateway
holds nothing pending or waiting for its sale (``GET /healthz``: ``pending``, ``waiting_for_sale``;
gateway-wide counts, polled every :data:`SETTLE_POLL_S`), then reads ``GET /v1/queue``. A gateway
still holding documents at the bound is a problem, not a pass: what it holds is not known to be
applied. :func:`add_queue_arguments` / :func:`check` are the CLI side every simulator shares
(``--no-queue-check``, ``--settle-s``). No ``drivers`` import; aiohttp requests only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Sequence
from typing import Any

import aiohttp

QUEUE_SETTLE_S = 60.0  # the longest the end-of-run check waits for pending/waiting documents
SETTLE_POLL_S = 0.1  # how often it asks /healthz meanwhile
ENV_ADMIN_KEY = "POSGW_ADMIN_KEY"


async def settled(session: aiohttp.ClientSession, gateway: str, settle_s: float) -> str:
    """Wait until the gateway's ``/healthz`` counts nothing ``pending`` and nothing
    ``waiting_for_sale`` (asked every :data:`SETTLE_POLL_S`, at least once, for at most
    ``settle_s``); "" then, else why not: what it still holds, or that ``/healthz`` could not be
    read. A missing ``waiting_for_sale`` (an older gateway) reads as 0; a missing ``pending`` as
    unreadable."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settle_s
    url = f"{gateway.rstrip('/')}/healthz"
    while True:
        try:  # 503 (not serving) still carries the counts when the outbox could be read
            async with session.get(url, timeout=aiohttp.ClientTimeout(total=10)) as resp:
                data = await resp.json(content_type=None)
            pending, waiting = int(data["pending"]), int(data.get("waiting_for_sale", 0))
            if pending == 0 and waiting == 0:
                return ""
            why = (f"after {settle_s:g} s the gateway still holds {pending} pending and {waiting} waiting "
                   "document(s): not known to be applied (is the core up? or raise --settle-s)")
        except (aiohttp.ClientError, TimeoutError, ValueError, KeyError, TypeError, AttributeError) as exc:
            why = f"cannot read the gateway's pending documents from /healthz: {exc!r}"
        left = deadline - loop.time()
        if left <= 0:
            return why
        await asyncio.sleep(min(SETTLE_POLL_S, left))


async def operator_queue(gateway: str, *, since: float, admin_key: str = "",
                         settle_s: float = QUEUE_SETTLE_S) -> tuple[list[dict[str, Any]], str]:
    """The gateway's operator queue (``GET /v1/queue``) rows created at or after ``since`` (Unix
    seconds): what this run sent that the core did NOT apply, read once :func:`settled` (at most
    ``settle_s``). Returns (rows, problem): problem names why the run cannot be known to be applied
    ("" when it can): documents still pending or waiting at the bound, or a queue that could not
    be read, e.g. a missing admin key (``POSGW_ADMIN_KEY``). The rows are read either way."""
    headers = {"Authorization": f"Bearer {admin_key}"} if admin_key else {}
    async with aiohttp.ClientSession() as session:
        unsettled = await settled(session, gateway, settle_s)
        try:
            async with session.get(f"{gateway.rstrip('/')}/v1/queue", headers=headers,
                                   timeout=aiohttp.ClientTimeout(total=10)) as resp:
                if resp.status != 200:
                    problem = (f"HTTP {resp.status} from /v1/queue "
                               "(set POSGW_ADMIN_KEY: the gateway admin key)")
                    return [], "; ".join(p for p in (unsettled, problem) if p)
                data = await resp.json()
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            return [], "; ".join(p for p in (unsettled, f"cannot read /v1/queue: {exc!r}") if p)
    # the daemon answers a JSON list of rows; {"rejected": [...]} is `posgw queue --json`'s form
    rows = data if isinstance(data, list) else data.get("rejected", []) if isinstance(data, dict) else []
    return [r for r in rows if isinstance(r, dict) and float(r.get("created_at", 0)) >= since], unsettled


def add_queue_arguments(parser: argparse.ArgumentParser) -> None:
    """``--no-queue-check`` and ``--settle-s``: the end-of-run check's switches."""
    parser.add_argument("--no-queue-check", action="store_true",
                        help="do not read the gateway's operator queue at the end (a gateway without "
                        "one, or no admin key): the run then cannot tell what the core refused")
    parser.add_argument("--settle-s", type=float, default=QUEUE_SETTLE_S, metavar="S",
                        help="at the end, wait at most this long for the gateway to deliver what is "
                        f"pending or waiting for its sale (default {QUEUE_SETTLE_S:g}); what it still "
                        "holds then fails the run")


async def check(args: argparse.Namespace, *, since: float) -> tuple[int, list[str]]:
    """The end-of-run check a CLI runs after its run (``args.gateway``, ``args.no_queue_check``,
    ``args.settle_s``; ``POSGW_ADMIN_KEY`` authorises the queue): (rows of this run in the
    operator queue, error lines). An unchecked queue or documents still held is an error line
    (unchecked is not applied-for-sure), never a pass. Skipped (0, []) under ``--no-queue-check``."""
    if getattr(args, "no_queue_check", False):
        return 0, []
    gateway = getattr(args, "gateway", "") or ""
    if not gateway:
        return 0, ["operator queue not checked: no --gateway (pass --no-queue-check to skip the check "
                   "knowingly)"]
    rows, problem = await operator_queue(
        gateway, since=since, admin_key=os.environ.get(ENV_ADMIN_KEY, ""),
        settle_s=getattr(args, "settle_s", QUEUE_SETTLE_S))
    lines = queue_lines(rows)
    if problem:
        lines = [f"operator queue not checked: {problem} (pass --no-queue-check to skip the check "
                 "knowingly)", *lines]
    return len(rows), lines


def queue_lines(rows: Sequence[dict[str, Any]]) -> list[str]:
    """One error line per operator-queue row: key, reason, what the gateway says."""
    return [f"not applied at the core, in the gateway's operator queue: {r.get('kind')} {r.get('key')} "
            f"{r.get('reason')}: {r.get('last_error')}" for r in rows]
