"""The poll compliance suite against the SBIS driver and the fake SBIS cloud."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from drivers.sbis import NAME
from drivers.sbis.cursor import Cursor
from drivers.sbis.driver import SbisDriver
from gateway.driver import Driver
from simulators.registers.sbis.cloud import FakeSbis
from tests.drivers.compliance_poll import PollAdapter, PollComplianceSuite, PollVendor
from tests.drivers.sbis.cloud_fixtures import FN, cloud, fast_config, sale


class SbisVendor:
    """The fake cloud seen as the suite's PollVendor; ``unread`` reads the driver's cursor (its FD sets)."""

    def __init__(self, sbis: FakeSbis) -> None:
        self.sbis = sbis

    @property
    def fetches(self) -> int:
        return self.sbis.fetches

    def publish(self, *docs: Any) -> None:
        for doc in docs:
            self.sbis.publish(FN, doc)

    def stall(self) -> None:
        self.sbis.stall()

    def release(self) -> None:
        self.sbis.release()

    def unread(self, cursor: str | None) -> list[str]:
        drive = Cursor.decode(cursor).drives.get(FN) if cursor else None
        out = []
        for wrapper in self.sbis.docs[FN]:
            fd = next(iter(wrapper.values()))["fiscalDocumentNumber"]
            if drive is None or not drive.passed(fd):
                out.append(f"{FN}:{fd}")
        return out


class SbisAdapter(PollAdapter):
    name = NAME
    relisted_counter = None  # overlapping windows re-read every document by design: filtered by the cursor

    def vendor(self) -> AbstractAsyncContextManager[PollVendor]:
        @asynccontextmanager
        async def serving() -> AsyncIterator[PollVendor]:
            async with cloud().serving() as sbis:
                yield SbisVendor(sbis)

        return serving()

    def driver(self, vendor: PollVendor) -> Driver:
        assert isinstance(vendor, SbisVendor)
        return SbisDriver(fast_config(vendor.sbis.url))

    def docs(self, n: int) -> list[Any]:
        return [sale(fd) for fd in range(1, n + 1)]

    def malformed(self) -> Any:
        bad = sale(100)
        bad["receipt"]["totalSum"] = "lots"
        return bad

    def doc_id(self, doc: Any) -> str:
        return f"{FN}:{doc['receipt']['fiscalDocumentNumber']}"

    def key(self, doc: Any) -> str:
        return f"{NAME}:{FN}:{doc['receipt']['fiscalDocumentNumber']}"


class TestSbisPollCompliance(PollComplianceSuite):
    adapter = SbisAdapter()
