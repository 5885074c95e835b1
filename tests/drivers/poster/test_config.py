"""drivers.poster.config: the [drivers.poster] options: defaults, bounds (clock skew, link days,
URL length), strict types, unknown keys refused, pairing tokens and the application secret as
secrets (from the environment too)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from drivers.poster.config import Config
from gateway.config import EdgeOptions, load_config
from tests.drivers.config_helpers import load_section, section_problems, write_section


def load(tmp_path: Path, options: str = "", environ: dict[str, str] | None = None) -> Config:
    model = load_section(tmp_path, "poster", options, environ)
    assert isinstance(model, Config)
    return model


def problems(tmp_path: Path, options: str) -> list[tuple[str, str, str]]:
    return section_problems(tmp_path, "poster", options)


def test_defaults(tmp_path: Path) -> None:
    c = load(tmp_path)
    assert c == Config() and isinstance(c, EdgeOptions)
    assert (c.pairing_tokens, c.application_secret.get_secret_value(), c.public_url) == ([], "", "")
    assert (c.max_clock_skew_s, c.link_keep_days) == (3 * 86_400, 180)
    assert (c.store_id, c.print_balance, c.max_body_bytes, c.read_timeout_ms) == ("", True, 1 << 20, 5000)


def test_values_and_boundaries_accepted(tmp_path: Path) -> None:
    c = load(tmp_path, f'public_url = "{"u" * 512}"\nmax_clock_skew_s = 0\nlink_keep_days = 1\n'
                       'application_secret = "s"\nprint_balance = false\n')
    assert (len(c.public_url), c.max_clock_skew_s, c.link_keep_days) == (512, 0, 1)
    assert (c.application_secret.get_secret_value(), c.print_balance) == ("s", False)
    c = load(tmp_path, "max_clock_skew_s = 2592000\nlink_keep_days = 3650\n")
    assert (c.max_clock_skew_s, c.link_keep_days) == (30 * 86_400, 3650)


@pytest.mark.parametrize(("options", "key", "problem", "fix"), [
    ("max_clock_skew_s = -1\n", "max_clock_skew_s", "-1: input should be greater than or equal to 0",
     "use a value that fits, e.g. 259200"),
    ("max_clock_skew_s = 2592001\n", "max_clock_skew_s",
     "2592001: input should be less than or equal to 2592000", "use a value that fits, e.g. 259200"),
    ("max_clock_skew_s = 1.5\n", "max_clock_skew_s", "expected an integer, got 1.5",
     "write an integer like 259200"),
    ("link_keep_days = 0\n", "link_keep_days", "0: input should be greater than or equal to 1",
     "use a value that fits, e.g. 180"),
    ("link_keep_days = 3651\n", "link_keep_days", "3651: input should be less than or equal to 3650",
     "use a value that fits, e.g. 180"),
    (f'public_url = "{"u" * 513}"\n', "public_url",
     f"'{'u' * 513}': string should have at most 512 characters",
     "string should have at most 512 characters"),
    ("application_secret = ['s']\n", "application_secret", "expected a quoted string, got ['s']",
     "write a quoted string"),
    ("app_secret = 's'\n", "app_secret", "unknown key", "did you mean 'application_secret'?"),
    ("read_timeout_ms = 50\n", "read_timeout_ms", "50: input should be greater than or equal to 100",
     "use a value that fits, e.g. 5000"),
])
def test_problems(tmp_path: Path, options: str, key: str, problem: str, fix: str) -> None:
    assert problems(tmp_path, options) == [(f"drivers.poster.{key}", problem, fix)]


def test_secrets_from_the_environment(tmp_path: Path) -> None:
    config = load_config(write_section(tmp_path, "poster", 'application_secret = "toml"\n'), environ={
        "POSGW_DRIVERS_POSTER_APPLICATION_SECRET": "env-secret",
        "POSGW_DRIVERS_POSTER_PAIRING_TOKENS": "p1,p2",
        "POSGW_DRIVERS_POSTER_PUBLIC_URL": "https://not.a.secret/",  # not env-capable: ignored
    })
    c = config.driver_config("poster")
    assert isinstance(c, Config)
    assert c.application_secret.get_secret_value() == "env-secret"
    assert [t.get_secret_value() for t in c.pairing_tokens] == ["p1", "p2"]
    assert c.public_url == ""
    assert set(config.secrets()) == {"env-secret", "p1", "p2"}
    assert "env-secret" not in repr(c)


def test_model_is_strict_frozen_and_closed() -> None:
    with pytest.raises(ValidationError):
        Config(link_keep_days="180")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        Config(verify=True)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        Config().link_keep_days = 5  # type: ignore[misc]
    assert all(f.description for f in Config.model_fields.values())
