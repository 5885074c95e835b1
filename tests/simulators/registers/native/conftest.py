"""A running :class:`FakeGateway` per test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.simulators.registers.native.fake_gateway import FakeGateway


@pytest.fixture
async def fake() -> AsyncIterator[FakeGateway]:
    gw = FakeGateway()
    await gw.start()
    yield gw
    await gw.stop()
