"""1C pull driver: polls the infobase's ``LoyaltyFeed`` SOAP publication through zeep (thin; mapping in
mapping.py, the loop in gateway.poll).

Invariants: the cursor is the last ``BatchNo`` whose receipts were all stored (``gateway.poll`` writes
it only then), and it travels to 1C as ``AckNo`` of the next call, so 1C drops a batch's registrations
only after ``submit`` returned for all of it (a crash before that gets the batch again: the outbox
stores each receipt once). zeep runs in a worker thread with a WSDL deadline and an operation
deadline; the WSDL is loaded once and kept (again after a failure). A 401/403 raises the alarm
``auth`` (cleared by the next good call) and backs off like any failure, up to ``backoff_max_s``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
from collections.abc import Mapping
from typing import Any
from zoneinfo import ZoneInfo

import requests
import zeep
from requests.auth import HTTPBasicAuth
from zeep.helpers import serialize_object
from zeep.transports import Transport

from drivers.onec_pull import NAME, mapping
from drivers.onec_pull.config import Config
from gateway import poll
from gateway.driver import DriverContext
from gateway.errors import BadInput
from gateway.receipt import Event

SERVICE, PORT = "LoyaltyFeed", "LoyaltyFeedSoap"
AUTH_ALARM = "auth"


class AuthRefused(Exception):
    """The publication refused our user (401/403): fix the user or password in [drivers.onec_pull]."""


class FeedSource:
    """``gateway.poll.PollSource`` over ``GetReceipts(Node, AckNo, MaxCount)``."""

    def __init__(self, config: Config, ctx: DriverContext) -> None:
        self.config, self.ctx = config, ctx
        self.zone = ZoneInfo(config.timezone)
        self._service: Any = None
        self._session = requests.Session()
        self._lock = threading.Lock()

    def close(self) -> None:
        """Forget the client and close its connections (a call still running in its thread ends by
        its own deadline)."""
        with self._lock:
            service, self._service = self._service, None
        if service is not None:
            self._session.close()

    def _bound(self) -> Any:
        with self._lock:
            if self._service is None:
                session = self._session = requests.Session()
                if self.config.user:
                    session.auth = HTTPBasicAuth(self.config.user, self.config.password.get_secret_value())
                transport = Transport(  # type: ignore[no-untyped-call]
                    session=session,
                    timeout=self.config.wsdl_timeout_s,
                    operation_timeout=self.config.operation_timeout_s,
                )
                client = zeep.Client(  # type: ignore[no-untyped-call]
                    self.config.wsdl_url, transport=transport, settings=zeep.Settings(strict=False)
                )
                binding = next(iter(client.wsdl.services[SERVICE].ports.values())).binding.name
                self._service = client.create_service(binding, self.config.call_url)  # type: ignore[no-untyped-call]
            return self._service

    def _call(self, ack: int) -> dict[str, Any]:
        try:
            result = self._bound().GetReceipts(
                Node=self.config.node, AckNo=ack, MaxCount=self.config.max_count
            )
        except (requests.HTTPError, zeep.exceptions.TransportError) as exc:
            status = getattr(getattr(exc, "response", None), "status_code", None) or getattr(
                exc, "status_code", 0
            )
            if status in (401, 403):
                with self._lock:
                    self._service = None  # the WSDL itself may be refused: load it again with new credentials
                raise AuthRefused(f"HTTP {status}") from None
            raise
        except Exception:
            with self._lock:
                self._service = None
            raise
        batch = serialize_object(result, dict)  # type: ignore[no-untyped-call]
        if not isinstance(batch, dict):
            raise ValueError(f"GetReceipts answered {type(batch).__name__}, not a Batch")
        return batch

    async def fetch(self, cursor: str | None) -> poll.Page[dict[str, Any]]:
        ack = int(cursor) if cursor else 0
        try:
            batch = await asyncio.to_thread(self._call, ack)
        except AuthRefused as exc:
            self.ctx.alarm(
                AUTH_ALARM,
                f"the 1C publication refused the user ({exc}): check user and password "
                "of [drivers.onec_pull] and the infobase user's rights",
            )
            raise
        self.ctx.alarm(AUTH_ALARM, None)
        docs = [d for d in batch.get("Receipt") or [] if d is not None]
        number = batch.get("BatchNo")
        if not docs:
            return poll.Page([], cursor or "0")
        if not isinstance(number, int) or number <= 0:
            raise ValueError(f"a batch with receipts needs a positive BatchNo, got {number!r}")
        if number <= ack:
            self.ctx.log.warning(
                "1C batch number went backwards (infobase restored?): following 1C's numbering",
                extra={"driver": NAME, "ack": ack, "batch": number},
            )
        return poll.Page(docs, str(number))

    def doc_id(self, doc: dict[str, Any]) -> str:
        """The receipt's 1C ``Id``; a record without one is named ``no-id-<digest of its content>``:
        each such record keeps its own skipped record (one key for all overwrote the first), and a
        re-read of the same record names it the same."""
        return str(doc.get("Id") or "")[:128] or "no-id-" + _digest(doc)

    def to_event(self, doc: dict[str, Any]) -> Event | None:
        if not isinstance(doc, dict):
            raise BadInput("not a receipt", "Receipt")
        return mapping.to_event(
            doc, self.zone, store_id=self.config.store_id, pv=self.config.point_value_kopecks
        )


def _digest(doc: Mapping[str, Any]) -> str:
    text = json.dumps(doc, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class OneCPullDriver:
    name = NAME
    edge = None

    def __init__(self, config: Config, options: poll.PollOptions | None = None) -> None:
        self.config = config
        self.options = options or poll.PollOptions(
            interval_s=config.interval_s,
            fetch_timeout_s=config.operation_timeout_s + config.wsdl_timeout_s + 1,
            backoff_initial_s=min(2.0, config.backoff_max_s),
            backoff_max_s=config.backoff_max_s,
        )

    def routes(self, ctx: DriverContext) -> list[Any]:
        return []

    async def run(self, ctx: DriverContext) -> None:
        source = FeedSource(self.config, ctx)
        try:
            await poll.poll(ctx, source, self.options)
        finally:
            source.close()


def create(options: Mapping[str, Any]) -> OneCPullDriver:
    """The registry factory: ``options`` is the ``[drivers.onec_pull]`` section without ``enabled``."""
    return OneCPullDriver(Config.model_validate(dict(options)))
