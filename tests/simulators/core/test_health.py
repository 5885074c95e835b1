"""Acceptance: the core reports gRPC health SERVING and ships its program as a versioned
document (GetProgram: version = SHA-256 of config_json, which loads back to the same program).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.core_pb.loyalty.v1 import loyalty_pb2 as pb
from tests.simulators.core.acceptance import DEADLINE_S, load, running


async def test_health_serving_and_program(tmp_path: Path) -> None:
    async with running("seed002", f"sqlite:///{tmp_path / 'core.db'}") as core:
        health = health_pb2_grpc.HealthStub(core.channel)
        for service in ("", "loyalty.v1.LoyaltyCoreService"):
            resp = await health.Check(health_pb2.HealthCheckRequest(service=service), timeout=DEADLINE_S)
            assert resp.status == health_pb2.HealthCheckResponse.SERVING, service

        from gateway.rules.program import program_from_json

        program = await core.stub.GetProgram(pb.GetProgramRequest(), timeout=DEADLINE_S)
        assert program.program_id == "seed002"
        assert program.version == hashlib.sha256(program.config_json.encode()).hexdigest()
        assert program_from_json(program.config_json) == load("seed002")
