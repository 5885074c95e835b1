"""The core's server: reflection lets tools see the API without the proto file, and every answer
names the replica that gave it."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from gateway.core_pb.loyalty.v1 import loyalty_pb2 as pb
from gateway.core_pb.loyalty.v1 import loyalty_pb2_grpc as pb_grpc
from simulators.core import server
from tests.simulators.core.acceptance import load


def test_reflection_describes_the_api_and_answers_name_the_replica(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("POSGW_CORE_REPLICA", "core-test-1")
    with server.serve_in_thread(load("seed002"), f"sqlite:///{tmp_path / 'core.db'}") as address, \
            grpc.insecure_channel(address) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        services = set(database.get_services())
        assert {server.SERVICE_NAME, "grpc.health.v1.Health"} <= services
        pool = DescriptorPool(database)
        calculate = pool.FindServiceByName(server.SERVICE_NAME).FindMethodByName("Calculate")
        assert calculate.input_type.full_name == pb.CalculateRequest.DESCRIPTOR.full_name
        assert "redeem_points" in pool.FindMessageTypeByName("loyalty.v1.ReceiptDraft").fields_by_name

        stub = pb_grpc.LoyaltyCoreServiceStub(channel)  # type: ignore[no-untyped-call]
        _, call = stub.GetProgram.with_call(pb.GetProgramRequest(), timeout=10)
        assert dict(call.initial_metadata())[server.REPLICA_METADATA] == "core-test-1"


@pytest.mark.parametrize(("value", "ok"), [("", 10_000), ("500", 500), ("0", None), ("ten", None)])
def test_min_ping_interval(value: str, ok: int | None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSGW_CORE_MIN_PING_INTERVAL_MS", value)
    if ok is None:
        with pytest.raises(ValueError, match="POSGW_CORE_MIN_PING_INTERVAL_MS"):
            server.min_ping_interval_ms()
    else:
        assert server.min_ping_interval_ms() == ok


async def test_a_schema_it_cannot_use_stops_the_start_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("POSGW_CORE_DB_MIGRATE", "never")
    with pytest.raises(SystemExit, match=r"^posgw core: POSGW_CORE_DB_MIGRATE='never': use 'upgrade'"):
        await server.serve("127.0.0.1:0", load("seed002"), f"sqlite:///{tmp_path / 'core.db'}")
