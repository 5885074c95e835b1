"""The gateway's client over several core replicas: ``core.address`` lists them, calls and
streams spread over them (round_robin), a replica that froze is left within the keepalive bound
and the register's stream resumes on another replica from the last acknowledged event.

Real ``posgw core`` processes over one PostgreSQL (tests.simulators.core.replicas); each answer
names its replica in the ``posgw-core-replica`` initial metadata.
"""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import grpc
import psycopg
import pytest

from gateway.core_client import ChannelTuning, CoreClient, CoreTarget
from gateway.core_pb.loyalty.v1 import loyalty_pb2 as pb
from gateway.core_pb.loyalty.v1 import loyalty_pb2_grpc as pb_grpc
from gateway.errors import ConfigError
from tests.simulators.core.replicas import STAFF, now_ts, replicas, sale_event

DEADLINE_S = 30.0
# keepalive: a ping after 1 s without data, 1 s for its answer; the replicas accept such pings
FAST = ChannelTuning(keepalive_time_ms=1000, keepalive_timeout_ms=1000, initial_reconnect_backoff_ms=100,
                     max_reconnect_backoff_ms=500)
PINGS_OK = {"POSGW_CORE_MIN_PING_INTERVAL_MS": "500"}


def test_one_address_is_the_target_itself() -> None:
    assert CoreTarget("core.example:50051").channel_target() == "core.example:50051"
    assert CoreTarget("dns:///core.example:50051").channel_target() == "dns:///core.example:50051"


def test_a_list_becomes_a_static_target() -> None:
    assert CoreTarget("10.0.0.1:1, 10.0.0.2:2").channel_target() == "ipv4:10.0.0.1:1,10.0.0.2:2"
    assert CoreTarget("[::1]:1,[::2]:2").channel_target() == "ipv6:[::1]:1,[::2]:2"
    resolved = CoreTarget("localhost:7001,127.0.0.1:7001").channel_target()
    assert resolved.startswith(("ipv4:", "ipv6:")) and resolved.count(":7001") >= 1
    assert CoreTarget("core-a:1,core-b:2", tls=True).authority_name() == "core-a"
    assert CoreTarget("10.0.0.1:1,10.0.0.2:2", tls=True, server_name="core").authority_name() == "core"


@pytest.mark.parametrize(("address", "says"), [
    ("10.0.0.1:50051,10.0.0.2", "is not host:port"),
    ("10.0.0.1:50051,10.0.0.2:99999", "is not host:port"),
    ("10.0.0.1:1,[::1]:2", "mixes IPv4 and IPv6"),
    ("10.0.0.1:1,no-such-host.invalid:2", "cannot resolve"),
])
def test_a_bad_list_is_a_config_error(address: str, says: str) -> None:
    with pytest.raises(ConfigError) as err:
        CoreTarget(address).channel_target()
    assert err.value.key == "core.address" and says in str(err.value)


def _db(url: str) -> list[str]:
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        return [str(r[0]) for r in conn.execute("SELECT key FROM operations WHERE kind = 'sale' ORDER BY id")]


async def _replica_of(call: Any) -> str:
    """The replica that took ``call``; "" when the call failed before any answer."""
    return str(dict(await call.initial_metadata()).get("posgw-core-replica", ""))


@pytest.mark.postgres
async def test_calls_and_streams_spread_and_a_frozen_replica_is_left(pg_url: str) -> None:
    with replicas(pg_url, 2, extra_env=PINGS_OK) as (r1, r2):
        client = CoreClient(CoreTarget(f"{r1.address},{r2.address}"), tuning=FAST)
        await client.start()
        try:
            async with grpc.aio.insecure_channel(r1.address) as channel:
                await pb_grpc.LoyaltyCoreServiceStub(channel).RegisterCustomer(  # type: ignore[no-untyped-call]
                    pb.RegisterCustomerRequest(phone="+79990000401", name="Покупатель", channel="cashier",
                                               staff=STAFF, occurred_at=now_ts()), timeout=DEADLINE_S)
            seen: set[str] = set()
            for _ in range(50):  # until both replicas answered (the second may connect a little later)
                call = client.stub.GetProgram(pb.GetProgramRequest(), timeout=DEADLINE_S)
                seen.add(await _replica_of(call))
                await call
                if len(seen) == 2:
                    break
            assert seen == {"r1", "r2"}

            streams: dict[str, Any] = {}
            for _ in range(20):  # streams spread too: one on each replica
                stream: Any = client._events_call()
                name = await _replica_of(stream)
                if name in streams:
                    stream.cancel()
                else:
                    streams[name] = stream
                if len(streams) == 2:
                    break
            assert set(streams) == {"r1", "r2"}
            for other in list(streams.values())[1:]:
                other.cancel()
            first_name, first = next(iter(streams.items()))
            doomed = r1 if first_name == "r1" else r2
            events = [sale_event("R1", seq, "+79990000401", 20_000 + seq) for seq in range(1, 11)]
            await first.write(pb.StreamEventsRequest(events=events[:5]).SerializeToString())
            acked = await asyncio.wait_for(first.read(), DEADLINE_S)
            assert [a.WhichOneof("result") for a in acked.acks] == ["commit"] * 5

            doomed.proc.send_signal(signal.SIGSTOP)  # frozen: no reset, only keepalive can tell
            await first.write(pb.StreamEventsRequest(events=events[5:]).SerializeToString())
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await asyncio.wait_for(first.read(), DEADLINE_S)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE

            for _ in range(20):  # the sender reopens: the new stream lands on the live replica
                resumed: Any = client._events_call()
                name = await asyncio.wait_for(_replica_of(resumed), DEADLINE_S)
                if name:  # else it failed on the frozen replica before the channel left it
                    break
            assert name != first_name
            await resumed.write(pb.StreamEventsRequest(events=events[5:]).SerializeToString())
            answer = await asyncio.wait_for(resumed.read(), DEADLINE_S)
            assert [a.WhichOneof("result") for a in answer.acks] == ["commit"] * 5
            resumed.cancel()
            assert _db(pg_url) == [e.event_id for e in events]  # once each, in order
            doomed.proc.send_signal(signal.SIGCONT)
        finally:
            await client.close()

