"""drivers.modulkassa.config: the [drivers.modulkassa] options: defaults, bounds, strict types,
unknown keys refused with a guess, pairing tokens as secrets (from the environment too)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from drivers.modulkassa.config import Config
from gateway.config import EdgeOptions, load_config
from tests.drivers.config_helpers import load_section, section_problems, write_section


def load(tmp_path: Path, options: str = "", environ: dict[str, str] | None = None) -> Config:
    model = load_section(tmp_path, "modulkassa", options, environ)
    assert isinstance(model, Config)
    return model


def problems(tmp_path: Path, options: str) -> list[tuple[str, str, str]]:
    return section_problems(tmp_path, "modulkassa", options)


def test_defaults(tmp_path: Path) -> None:
    c = load(tmp_path)
    assert c == Config() and isinstance(c, EdgeOptions)
    assert (c.pairing_tokens, c.store_id, c.print_balance) == ([], "", True)
    assert (c.max_body_bytes, c.read_timeout_ms) == (1048576, 5000)


def test_values_are_read(tmp_path: Path) -> None:
    c = load(tmp_path, 'pairing_tokens = ["a", "b"]\nstore_id = "rp-1"\nprint_balance = false\n'
                       "max_body_bytes = 2048\nread_timeout_ms = 250\n")
    assert [t.get_secret_value() for t in c.pairing_tokens] == ["a", "b"]
    assert (c.store_id, c.print_balance, c.max_body_bytes, c.read_timeout_ms) == ("rp-1", False, 2048, 250)


@pytest.mark.parametrize(("options", "key", "problem", "fix"), [
    ("max_body_bytes = 0\n", "max_body_bytes", "0: input should be greater than or equal to 1024",
     "use a value that fits, e.g. 1048576"),
    ("read_timeout_ms = 100000\n", "read_timeout_ms", "100000: input should be less than or equal to 60000",
     "use a value that fits, e.g. 5000"),
    (f'store_id = "{"я" * 65}"\n', "store_id", f"'{'я' * 65}': string should have at most 64 characters",
     "string should have at most 64 characters"),
    ("print_balance = 0\n", "print_balance", "expected true or false, got 0", "write true or false"),
    ("pairing_tokens = [1]\n", "pairing_tokens[0]", "expected a quoted string, got 1",
     "write a quoted string"),
    ("paring_tokens = []\n", "paring_tokens", "unknown key", "did you mean 'pairing_tokens'?"),
    ("cloud_user_token = 'x'\n", "cloud_user_token", "unknown key", "remove it; known keys: enabled, "
     "max_body_bytes, pairing_tokens, print_balance, read_timeout_ms, store_id"),
])
def test_problems(tmp_path: Path, options: str, key: str, problem: str, fix: str) -> None:
    assert problems(tmp_path, options) == [(f"drivers.modulkassa.{key}", problem, fix)]


def test_boundaries_accepted(tmp_path: Path) -> None:
    c = load(tmp_path, f'max_body_bytes = 1024\nread_timeout_ms = 60000\nstore_id = "{"я" * 64}"\n')
    assert (c.max_body_bytes, c.read_timeout_ms, len(c.store_id)) == (1024, 60000, 64)


def test_pairing_tokens_from_the_environment_are_secrets(tmp_path: Path) -> None:
    config = load_config(write_section(tmp_path, "modulkassa", 'pairing_tokens = ["toml"]\n'),
                         environ={"POSGW_DRIVERS_MODULKASSA_PAIRING_TOKENS": " t1 ,t2,, "})
    c = config.driver_config("modulkassa")
    assert [t.get_secret_value() for t in c.pairing_tokens] == ["t1", "t2"]  # type: ignore[attr-defined]
    assert config.secrets() == ["t1", "t2"]
    assert "t1" not in repr(c)


def test_model_is_strict_frozen_and_closed() -> None:
    with pytest.raises(ValidationError):
        Config(max_body_bytes="2048")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        Config(extra=1)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        Config().print_balance = False  # type: ignore[misc]
    assert all(f.description for f in Config.model_fields.values())
