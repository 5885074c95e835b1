"""gateway.errors: the error hierarchy's messages, fields and retriable flags."""

from __future__ import annotations

import pytest

from gateway.errors import (
    AuthError,
    BadInput,
    BusinessRejection,
    ConfigError,
    CoreRefused,
    CoreUnavailable,
    GatewayError,
    StorageError,
)


def test_config_error_names_file_key_problem_and_fix() -> None:
    err = ConfigError("posgw.toml", "core.address", "too short", "write host:port")
    assert str(err) == "posgw.toml: core.address: too short (fix: write host:port)"
    assert (err.file, err.key, err.problem) == ("posgw.toml", "core.address", "too short")
    assert err.fix == "write host:port"


def test_bad_input_prefixes_the_field_when_given() -> None:
    assert str(BadInput("not a number", "lines[2].amount")) == "lines[2].amount: not a number"
    assert str(BadInput("body is not JSON")) == "body is not JSON" and BadInput("x").field == ""


def test_auth_error_keeps_reason_and_status() -> None:
    err = AuthError("wrong_token", status=403)
    assert (err.reason, err.status, str(err)) == ("wrong_token", 403, "wrong_token")
    assert AuthError("no_token").status == 401


def test_business_rejection_carries_reason_metadata_and_the_cores_retriable() -> None:
    err = BusinessRejection("INSUFFICIENT_POINTS", "only 10 left", {"balance": "10"})
    assert str(err) == "INSUFFICIENT_POINTS: only 10 left" and err.metadata == {"balance": "10"}
    assert err.retriable is False
    assert BusinessRejection("BUSY", "later", retriable=True).retriable is True


@pytest.mark.parametrize(("cls", "retriable"), [
    (GatewayError, False), (CoreUnavailable, True), (CoreRefused, False), (StorageError, True),
])
def test_retriable_decides_what_may_succeed_later(cls: type[GatewayError], retriable: bool) -> None:
    assert cls.retriable is retriable


def test_everything_is_a_gateway_error_and_core_refused_is_unavailable() -> None:
    assert issubclass(CoreRefused, CoreUnavailable)
    for cls in (ConfigError, BadInput, AuthError, CoreUnavailable, BusinessRejection, StorageError):
        assert issubclass(cls, GatewayError)
