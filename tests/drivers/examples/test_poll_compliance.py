"""The poll compliance suite against the example JSON poll driver and its fake vendor."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any

from gateway.driver import Driver
from gateway.poll import PollOptions
from tests.drivers.compliance_poll import PollAdapter, PollComplianceSuite, PollVendor
from tests.drivers.examples.poll_json import NAME, ExamplePollDriver, FakeVendor

FAST = PollOptions(interval_s=0.02, fetch_timeout_s=5.0, backoff_initial_s=0.01, backoff_max_s=0.05)


class ExamplePollAdapter(PollAdapter):
    name = NAME

    def vendor(self) -> AbstractAsyncContextManager[PollVendor]:
        return FakeVendor().serving()

    def driver(self, vendor: PollVendor) -> Driver:
        assert isinstance(vendor, FakeVendor)
        return ExamplePollDriver(vendor.url, page_size=2, options=FAST)

    def docs(self, n: int) -> list[Any]:
        return [{"id": f"D{i}", "register": "R1", "number": str(i), "total": 10_000 + i,
                 "at": "2025-03-14T12:00:00+03:00"} for i in range(1, n + 1)]

    def malformed(self) -> Any:
        return {"id": "BAD1", "register": "R1", "number": "99", "total": "lots", "at": "2025-03-14T12:00:00Z"}

    def doc_id(self, doc: Any) -> str:
        return str(doc["id"])

    def key(self, doc: Any) -> str:
        return f"{NAME}:{doc['id']}"


class TestExamplePollCompliance(PollComplianceSuite):
    adapter = ExamplePollAdapter()
