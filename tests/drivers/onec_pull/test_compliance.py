"""The poll compliance suite against the 1C pull driver and the fake 1C publication (exchange plan)."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any

from drivers.onec_pull import NAME
from drivers.onec_pull.driver import OneCPullDriver
from drivers.onec_pull.mapping import doc_key
from gateway.driver import Driver
from gateway.poll import PollOptions
from simulators.registers.onec_pull import FakePublication
from tests.drivers.compliance_poll import PollAdapter, PollComplianceSuite, PollVendor
from tests.drivers.onec_pull.receipts import PASSWORD, USER, config, receipt

FAST = PollOptions(interval_s=0.02, fetch_timeout_s=10.0, backoff_initial_s=0.01, backoff_max_s=0.05)


class OneCPullAdapter(PollAdapter):
    name = NAME

    def vendor(self) -> AbstractAsyncContextManager[PollVendor]:
        return FakePublication(USER, PASSWORD).serving()  # type: ignore[return-value]

    def driver(self, vendor: PollVendor) -> Driver:
        assert isinstance(vendor, FakePublication)
        return OneCPullDriver(config(vendor), options=FAST)

    def docs(self, n: int) -> list[Any]:
        return [receipt(i) for i in range(1, n + 1)]

    def malformed(self) -> Any:
        return {**receipt(99), "OperationType": "Inventory"}

    def doc_id(self, doc: Any) -> str:
        return str(doc["Id"])

    def key(self, doc: Any) -> str:
        return doc_key(str(doc["Id"]))


class TestOneCPullCompliance(PollComplianceSuite):
    adapter = OneCPullAdapter()
