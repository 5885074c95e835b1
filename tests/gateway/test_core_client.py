"""CoreClient against a real grpc.aio fake core on 127.0.0.1: error translation, breaker,
deadlines, one channel, the event stream through the same breaker and table, TLS and mTLS."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import grpc.aio
import pytest

from gateway import convert, core_client
from gateway.breaker import CircuitBreaker
from gateway.core_client import CoreCalls, CoreClient, CoreTarget
from gateway.core_pb.loyalty.v1 import loyalty_pb2 as pb
from gateway.errors import BusinessRejection, ConfigError, CoreRefused, CoreUnavailable
from gateway.metrics import Metrics
from tests.gateway import fake_core as stream_fakes
from tests.gateway.calc_fakes import (
    SERVER_NAME,
    BlackHole,
    Failure,
    FakeCore,
    TlsFiles,
    closed_port,
    code_name_count,
    make_tls,
    start_core,
)

S = grpc.StatusCode


def draft(redeem: int = 0) -> pb.ReceiptDraft:
    return pb.ReceiptDraft(
        customer=pb.CustomerRef(phone="+79123456789"),
        lines=[pb.Line(line_id="1", qty_milli=1000, amount=10000)],
        redeem_points=redeem,
        register_id="r1",
    )


@pytest.fixture
async def core() -> AsyncIterator[tuple[FakeCore, int]]:
    fake = FakeCore()
    server, port = await start_core(fake)
    yield fake, port
    await server.stop(None)


async def client_for(address: str, **kw: object) -> CoreClient:
    client = CoreClient(CoreTarget(address), **kw)  # type: ignore[arg-type]
    await client.start()
    return client


async def test_calculate_ok_over_one_long_lived_channel(core: tuple[FakeCore, int]) -> None:
    fake, port = core
    metrics = Metrics()
    client = await client_for(f"127.0.0.1:{port}", metrics=metrics)
    try:
        for _ in range(5):
            calc = await client.calculate(draft(redeem=10), timeout=2.0, hold_ttl_s=30)
            assert calc.customer_id == "c1" and calc.lines[0].discount == 1000 and calc.hold_id == "hold-1"
        assert fake.count("Calculate") == 5
        assert fake.requests[0][1].hold_ttl_s == 30
        assert len(fake.peers) == 1  # every call on the same connection
        assert code_name_count(metrics.registry, "Calculate", "OK") == 5
    finally:
        await client.close()


async def test_business_rejection_carries_error_info_and_keeps_breaker_closed(
    core: tuple[FakeCore, int],
) -> None:
    fake, port = core
    breaker = CircuitBreaker(2, 60.0)
    metrics = Metrics()
    client = await client_for(f"127.0.0.1:{port}", breaker=breaker, metrics=metrics)
    fake.always_fail = Failure(
        S.FAILED_PRECONDITION,
        "REDEMPTION_CAP_EXCEEDED",
        {"max_points": "20", "limited_by": "tier_cap"},
        "too many points",
    )
    try:
        for _ in range(4):
            with pytest.raises(BusinessRejection) as info:
                await client.calculate(draft(redeem=50), timeout=2.0)
            assert info.value.reason == "REDEMPTION_CAP_EXCEEDED"
            assert info.value.metadata == {"max_points": "20", "limited_by": "tier_cap"}
            assert "too many points" in str(info.value)
        assert breaker.state == "closed"
        assert code_name_count(metrics.registry, "Calculate", "FAILED_PRECONDITION") == 4
        fake.always_fail = Failure(S.INVALID_ARGUMENT, "INVALID_RECEIPT", {"field": "draft.lines[0].amount"})
        with pytest.raises(BusinessRejection) as info:
            await client.calculate(draft(), timeout=2.0)
        assert (
            info.value.reason == "INVALID_RECEIPT" and info.value.metadata["field"] == "draft.lines[0].amount"
        )
        fake.always_fail = Failure(S.PERMISSION_DENIED)  # no ErrorInfo: reason from the code
        with pytest.raises(BusinessRejection) as info:
            await client.calculate(draft(), timeout=2.0)
        assert info.value.reason == "REDEMPTION_NOT_PERMITTED"
    finally:
        await client.close()


@pytest.mark.parametrize("code", [S.UNAVAILABLE, S.ABORTED, S.RESOURCE_EXHAUSTED, S.INTERNAL, S.UNKNOWN])
async def test_core_trouble_is_unavailable_and_opens_breaker(core: tuple[FakeCore, int], code: S) -> None:
    fake, port = core
    breaker = CircuitBreaker(3, 60.0)
    metrics = Metrics()
    client = await client_for(f"127.0.0.1:{port}", breaker=breaker, metrics=metrics)
    fake.always_fail = Failure(code, "WHATEVER")
    try:
        for _ in range(3):
            with pytest.raises(CoreUnavailable):
                await client.calculate(draft(), timeout=2.0)
        assert breaker.state == "open"
        assert metrics.registry.get_sample_value("posgw_core_breaker_open") == 1
        calls = fake.count("Calculate")
        t0 = time.perf_counter()
        with pytest.raises(CoreUnavailable, match="breaker open"):
            await client.calculate(draft(), timeout=2.0)
        assert time.perf_counter() - t0 < 0.05
        assert fake.count("Calculate") == calls  # no call went out
        assert code_name_count(metrics.registry, "Calculate", "BREAKER_OPEN") == 1
        assert code_name_count(metrics.registry, "Calculate", code.name) == 3
    finally:
        await client.close()


@pytest.mark.parametrize("code", [S.UNIMPLEMENTED, S.UNAUTHENTICATED, S.DATA_LOSS])
async def test_other_codes_are_refusals_that_no_retry_cures(core: tuple[FakeCore, int], code: S) -> None:
    fake, port = core
    breaker = CircuitBreaker(3, 60.0)
    client = await client_for(f"127.0.0.1:{port}", breaker=breaker)
    fake.always_fail = Failure(code, "WHATEVER")
    try:
        with pytest.raises(CoreRefused, match=code.name) as info:
            await client.calculate(draft(), timeout=2.0)
        assert isinstance(info.value, CoreUnavailable)  # the calc path answers offline
        assert info.value.retriable is False
        assert breaker.consecutive_failures == 1
    finally:
        await client.close()


def test_one_table_decides_retriable() -> None:
    assert core_client.RETRIABLE_CODES.isdisjoint(core_client.BUSINESS_CODES)
    for code in S:
        err = grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), "x")
        assert core_client.error_from("M", err).retriable is (code in core_client.RETRIABLE_CODES)


async def test_slow_core_hits_the_callers_deadline(core: tuple[FakeCore, int]) -> None:
    fake, port = core
    metrics = Metrics()
    client = await client_for(f"127.0.0.1:{port}", metrics=metrics)
    try:
        await client.calculate(draft(), timeout=2.0)  # warm: connected
        fake.delay_s = 1.0
        t0 = time.perf_counter()
        with pytest.raises(CoreUnavailable, match="DEADLINE_EXCEEDED"):
            await client.calculate(draft(), timeout=0.1)
        elapsed = time.perf_counter() - t0
        assert 0.09 <= elapsed < 0.4
        assert client.breaker.consecutive_failures == 1
    finally:
        await client.close()


async def test_down_core_fails_fast() -> None:
    client = await client_for(f"127.0.0.1:{closed_port()}")
    try:
        t0 = time.perf_counter()
        with pytest.raises(CoreUnavailable, match="UNAVAILABLE"):
            await client.calculate(draft(), timeout=1.5)
        assert time.perf_counter() - t0 < 1.0  # wait_for_ready=False: no waiting for the deadline
    finally:
        await client.close()


async def test_black_hole_core_ends_at_the_deadline() -> None:
    hole = BlackHole()
    port = await hole.start()
    client = await client_for(f"127.0.0.1:{port}")
    try:
        t0 = time.perf_counter()
        with pytest.raises(CoreUnavailable):
            await client.calculate(draft(), timeout=0.15)
        assert time.perf_counter() - t0 < 0.5
    finally:
        await client.close()
        await hole.stop()


async def test_no_time_left_is_refused_locally(core: tuple[FakeCore, int]) -> None:
    fake, port = core
    client = await client_for(f"127.0.0.1:{port}")
    try:
        with pytest.raises(CoreUnavailable, match="no time"):
            await client.calculate(draft(), timeout=0.0)
        assert fake.count("Calculate") == 0
        assert client.breaker.consecutive_failures == 0
    finally:
        await client.close()


async def test_cancelled_call_counts_as_failure(core: tuple[FakeCore, int]) -> None:
    fake, port = core
    client = await client_for(f"127.0.0.1:{port}")
    fake.delay_s = 1.0
    try:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.1):
                await client.calculate(draft(), timeout=5.0)
        assert client.breaker.consecutive_failures == 1
    finally:
        await client.close()


async def test_identify_unknown_is_none_and_known_is_customer(core: tuple[FakeCore, int]) -> None:
    fake, port = core
    fake.customers["+79123456789"] = pb.Customer(customer_id="c1", display_name="Анна К.", balance=42)
    client = await client_for(f"127.0.0.1:{port}")
    try:
        found = await client.identify(pb.CustomerRef(phone="+79123456789"), timeout=2.0)
        assert found is not None and found.customer_id == "c1" and found.balance == 42
        assert await client.identify(pb.CustomerRef(phone="+79990000000"), timeout=2.0) is None
        assert client.breaker.state == "closed"
    finally:
        await client.close()


async def test_program_and_paged_balances(core: tuple[FakeCore, int]) -> None:
    fake, port = core
    fake.balances = [pb.BalanceEntry(customer_id=f"c{i}", ordinary_points=i) for i in range(7)]
    client = await client_for(f"127.0.0.1:{port}")
    try:
        program = await client.get_program(timeout=2.0)
        assert program.version == "v1"
        pages = [p async for p in client.balance_pages(timeout=2.0, page_size=3)]
        assert [len(p.customers) for p in pages] == [3, 3, 1]
        assert [e.customer_id for p in pages for e in p.customers] == [f"c{i}" for i in range(7)]
    finally:
        await client.close()


def test_stub_before_start_is_an_error() -> None:
    with pytest.raises(RuntimeError):
        _ = CoreClient(CoreTarget("127.0.0.1:1")).stub
    with pytest.raises(RuntimeError):
        CoreClient(CoreTarget("127.0.0.1:1")).open_events()


def test_core_client_is_the_core_calls_protocol() -> None:
    calls: CoreCalls = CoreClient(CoreTarget("127.0.0.1:1"))  # mypy checks the structure
    assert callable(calls.balance_pages)


# ---------------------------------------------------------------- the event stream


def batch(*keys: str) -> pb.StreamEventsRequest:
    return pb.StreamEventsRequest(events=[pb.EventEnvelope(event_id=k, register_id="R1", register_seq=i + 1,
                                                  commit=pb.CommitRequest())
                                 for i, k in enumerate(keys)])


def stream_calls(metrics: Metrics, code: str) -> float:
    return code_name_count(metrics.registry, "StreamEvents", code)


async def test_stream_acks_are_breaker_successes_and_a_clean_close_counts_closed() -> None:
    metrics = Metrics()
    served = await stream_fakes.serve(stream_fakes.FakeCore(), metrics)
    client = served.client
    try:
        client.breaker.record_failure()
        client.breaker.record_failure()
        stream = client.open_events()
        await stream.write(batch("a", "b"))
        reply = await stream.read()
        assert [a.event_id for a in reply.acks] == ["a", "b"]
        assert client.breaker.consecutive_failures == 0  # the core answers: healthy
        stream.close()
        stream.close()
        assert stream_calls(metrics, "CLOSED") == 1
    finally:
        await served.close()


async def test_the_stream_sends_serialized_batches_as_they_are() -> None:
    core = stream_fakes.FakeCore()
    served = await stream_fakes.serve(core)
    try:
        stream = served.client.open_events()
        framed = [convert.frame_envelope(k, "R1", i + 1, pb.EventEnvelope(commit=pb.CommitRequest(
            idempotency_key=k)).SerializeToString()) for i, k in enumerate(("a", "b"))]
        await stream.write(convert.frame_batch(framed))  # bytes: written through the identity serializer
        reply = await stream.read()
        assert [(a.event_id, a.register_seq) for a in reply.acks] == [("a", 1), ("b", 2)]
        assert core.order["R1"] == ["a", "b"]
        stream.close()
    finally:
        await served.close()


async def test_stream_failures_count_like_unary_failures_and_open_the_shared_breaker() -> None:
    metrics = Metrics()
    server, port = await stream_fakes.start_server(stream_fakes.FakeCore())
    await server.stop(0)  # the core is down
    client = await client_for(f"127.0.0.1:{port}", metrics=metrics, breaker=CircuitBreaker(2, 60.0))
    try:
        for _ in range(2):
            stream = client.open_events()
            with pytest.raises(CoreUnavailable, match="StreamEvents: UNAVAILABLE") as info:
                await stream.write(batch("a"))
                await stream.read()
            assert info.value.retriable
            stream.close()  # after a failure: not counted again
        assert stream_calls(metrics, "UNAVAILABLE") == 2 and stream_calls(metrics, "CLOSED") == 0
        assert client.breaker.state == "open"
        with pytest.raises(CoreUnavailable, match="breaker open"):
            client.open_events()
        assert stream_calls(metrics, "BREAKER_OPEN") == 1
        with pytest.raises(CoreUnavailable, match="breaker open"):  # the calc path sees it too
            await client.calculate(draft(), timeout=1.0)
    finally:
        await client.close()


async def test_stream_faults_found_by_the_caller_are_failures_counted_once() -> None:
    metrics = Metrics()
    core = stream_fakes.FakeCore(lambda env, n: stream_fakes.Action("noack"))
    client = stream_fakes.InProcClient(core, metrics=metrics, breaker=CircuitBreaker(5, 60.0))
    stream = client.open_events()
    await stream.write(batch("a"))
    exc = stream.fault(S.DEADLINE_EXCEEDED, "no ack within 1s")
    assert isinstance(exc, CoreUnavailable) and exc.retriable and "no ack" in str(exc)
    stream.close()
    assert client.breaker.consecutive_failures == 1
    assert stream_calls(metrics, "DEADLINE_EXCEEDED") == 1 and stream_calls(metrics, "CLOSED") == 0


async def test_the_core_ending_the_stream_is_retriable_and_no_breaker_failure() -> None:
    class Ended(stream_fakes.InProcCall):
        async def read(self) -> object:
            return grpc.aio.EOF  # type: ignore[attr-defined]

    metrics = Metrics()
    client = stream_fakes.InProcClient(stream_fakes.FakeCore(), call=Ended, metrics=metrics)
    stream = client.open_events()
    with pytest.raises(CoreUnavailable, match="closed the stream") as info:
        await stream.read()
    assert info.value.retriable and client.breaker.consecutive_failures == 0
    assert stream_calls(metrics, "OK") == 1


# ---------------------------------------------------------------- TLS


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls(tmp_path_factory.mktemp("tls"))


def server_creds(tls: TlsFiles, *, require_client: bool) -> grpc.ServerCredentials:
    return grpc.ssl_server_credentials(
        [(tls.server_key.read_bytes(), tls.server_cert.read_bytes())],
        root_certificates=tls.ca.read_bytes() if require_client else None,
        require_client_auth=require_client,
    )


async def tls_client(port: int, tls: TlsFiles, *, ca: Path | None = None, client_cert: bool) -> CoreClient:
    target = CoreTarget(
        f"127.0.0.1:{port}",
        tls=True,
        ca_file=str(ca or tls.ca),
        server_name=SERVER_NAME,
        cert_file=str(tls.client_cert) if client_cert else "",
        key_file=str(tls.client_key) if client_cert else "",
    )
    client = CoreClient(target)
    await client.start()
    return client


async def test_tls_with_pinned_ca_and_name_override(tls: TlsFiles) -> None:
    fake = FakeCore()
    server, port = await start_core(fake, creds=server_creds(tls, require_client=False))
    good = await tls_client(port, tls, client_cert=False)
    wrong_ca = await tls_client(port, tls, ca=tls.other_ca, client_cert=False)
    try:
        assert (await good.calculate(draft(), timeout=5.0)).customer_id == "c1"
        with pytest.raises(CoreUnavailable):
            await wrong_ca.calculate(draft(), timeout=5.0)
        assert fake.count("Calculate") == 1
    finally:
        await good.close()
        await wrong_ca.close()
        await server.stop(None)


async def test_mtls_requires_the_client_certificate(tls: TlsFiles) -> None:
    fake = FakeCore()
    server, port = await start_core(fake, creds=server_creds(tls, require_client=True))
    with_cert = await tls_client(port, tls, client_cert=True)
    without = await tls_client(port, tls, client_cert=False)
    try:
        assert (await with_cert.calculate(draft(), timeout=5.0)).customer_id == "c1"
        with pytest.raises(CoreUnavailable):
            await without.calculate(draft(), timeout=5.0)
        assert fake.count("Calculate") == 1
    finally:
        await with_cert.close()
        await without.close()
        await server.stop(None)


async def test_tls_config_problems_name_the_key(tls: TlsFiles, tmp_path: Path) -> None:
    half = CoreClient(CoreTarget("127.0.0.1:1", tls=True, cert_file=str(tls.client_cert)))
    with pytest.raises(ConfigError, match="key_file"):
        await half.start()
    missing = CoreClient(CoreTarget("127.0.0.1:1", tls=True, ca_file=str(tmp_path / "nope.pem")))
    with pytest.raises(ConfigError, match="ca_file"):
        await missing.start()
