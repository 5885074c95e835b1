"""drivers.evotor.config: the [drivers.evotor] options: defaults, bounds, strict types, unknown
keys refused with a guess, the three tokens as secrets (from the environment too, redacted)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from drivers.evotor.config import Config
from gateway.config import EdgeOptions, load_config
from tests.drivers.config_helpers import load_section, section_problems, write_section


def load(tmp_path: Path, options: str = "", environ: dict[str, str] | None = None) -> Config:
    model = load_section(tmp_path, "evotor", options, environ)
    assert isinstance(model, Config)
    return model


def problems(tmp_path: Path, options: str) -> list[tuple[str, str, str]]:
    return section_problems(tmp_path, "evotor", options)


def test_defaults(tmp_path: Path) -> None:
    c = load(tmp_path)
    assert c == Config()
    assert isinstance(c, EdgeOptions)
    assert (c.max_body_bytes, c.read_timeout_ms) == (1 << 20, 5000)
    assert c.pairing_tokens == [] and (c.store_id, c.print_balance) == ("", True)
    assert isinstance(c.cloud_user_token, SecretStr) and c.cloud_user_token.get_secret_value() == ""
    assert c.cloud_app_token.get_secret_value() == ""


def test_values_are_read(tmp_path: Path) -> None:
    c = load(tmp_path, 'pairing_tokens = ["p1", "p2"]\ncloud_user_token = "u"\ncloud_app_token = "a"\n'
                       'store_id = "S-1"\nprint_balance = false\nmax_body_bytes = 1024\n'
                       'read_timeout_ms = 60000\n')
    assert [t.get_secret_value() for t in c.pairing_tokens] == ["p1", "p2"]
    assert (c.cloud_user_token.get_secret_value(), c.cloud_app_token.get_secret_value()) == ("u", "a")
    assert (c.store_id, c.print_balance, c.max_body_bytes, c.read_timeout_ms) == ("S-1", False, 1024, 60000)


@pytest.mark.parametrize(("options", "key", "problem", "fix"), [
    ("max_body_bytes = 1023\n", "max_body_bytes", "1023: input should be greater than or equal to 1024",
     "use a value that fits, e.g. 1048576"),
    (f"max_body_bytes = {(64 << 20) + 1}\n", "max_body_bytes",
     f"{(64 << 20) + 1}: input should be less than or equal to 67108864",
     "use a value that fits, e.g. 1048576"),
    ("read_timeout_ms = 99\n", "read_timeout_ms", "99: input should be greater than or equal to 100",
     "use a value that fits, e.g. 5000"),
    ("read_timeout_ms = 60001\n", "read_timeout_ms", "60001: input should be less than or equal to 60000",
     "use a value that fits, e.g. 5000"),
    (f'store_id = "{"x" * 65}"\n', "store_id", f"'{'x' * 65}': string should have at most 64 characters",
     "string should have at most 64 characters"),
    ('print_balance = "yes"\n', "print_balance", "expected true or false, got 'yes'", "write true or false"),
    ('pairing_tokens = "p1"\n', "pairing_tokens", "expected a list, got 'p1'", 'write a list like ["..."]'),
    ("cloud_user_token = 5\n", "cloud_user_token", "expected a quoted string, got 5",
     "write a quoted string"),
    ("cloud_usr_token = 'x'\n", "cloud_usr_token", "unknown key", "did you mean 'cloud_user_token'?"),
    ("token = 'x'\n", "token", "unknown key", "remove it; known keys: cloud_app_token, cloud_user_token, "
     "enabled, max_body_bytes, pairing_tokens, print_balance, read_timeout_ms, store_id"),
])
def test_problems(tmp_path: Path, options: str, key: str, problem: str, fix: str) -> None:
    assert problems(tmp_path, options) == [(f"drivers.evotor.{key}", problem, fix)]


def test_boundaries_accepted(tmp_path: Path) -> None:
    c = load(tmp_path, f'max_body_bytes = {64 << 20}\nread_timeout_ms = 100\nstore_id = "{"x" * 64}"\n')
    assert (c.max_body_bytes, c.read_timeout_ms, len(c.store_id)) == (64 << 20, 100, 64)


def test_every_problem_at_once(tmp_path: Path) -> None:
    found = problems(tmp_path, "max_body_bytes = 1\nprint_balance = 1\nzz = 1\n")
    assert [k for k, _, _ in found] == ["drivers.evotor.max_body_bytes", "drivers.evotor.print_balance",
                                        "drivers.evotor.zz"]


def test_secrets_from_the_environment_win_and_are_redacted(tmp_path: Path) -> None:
    options = 'pairing_tokens = ["toml"]\ncloud_user_token = "toml-user"\n'
    environ = {"POSGW_DRIVERS_EVOTOR_PAIRING_TOKENS": "env-1, env-2\nenv-3",
               "POSGW_DRIVERS_EVOTOR_CLOUD_USER_TOKEN": "env-user",
               "POSGW_DRIVERS_EVOTOR_CLOUD_APP_TOKEN": "env-app"}
    config = load_config(write_section(tmp_path, "evotor", options), environ=environ)
    c = config.driver_config("evotor")
    assert isinstance(c, Config)
    assert [t.get_secret_value() for t in c.pairing_tokens] == ["env-1", "env-2", "env-3"]
    assert (c.cloud_user_token.get_secret_value(), c.cloud_app_token.get_secret_value()) == (
        "env-user", "env-app")
    assert set(config.secrets()) == {"env-1", "env-2", "env-3", "env-user", "env-app"}
    assert "env-user" not in repr(c) and "env-1" not in str(c)


def test_store_id_is_not_taken_from_the_environment(tmp_path: Path) -> None:
    assert load(tmp_path, environ={"POSGW_DRIVERS_EVOTOR_STORE_ID": "S9"}).store_id == ""


def test_model_is_strict_frozen_and_closed() -> None:
    with pytest.raises(ValidationError):
        Config(print_balance="true")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        Config(pairing_tokn=[])  # type: ignore[call-arg]
    c = Config(store_id="S")
    with pytest.raises(ValidationError):
        c.store_id = "T"  # type: ignore[misc]
    assert all(f.description for f in Config.model_fields.values())
