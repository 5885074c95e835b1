"""drivers.onec.config: the [drivers.onec] options: defaults, the public URL and time zone checked,
the password a secret (from the environment too)."""

from __future__ import annotations

from pathlib import Path

import pytest

from drivers.onec.config import Config
from tests.drivers.config_helpers import load_section, section_problems


def load(tmp_path: Path, options: str = "", environ: dict[str, str] | None = None) -> Config:
    model = load_section(tmp_path, "onec", options, environ)
    assert isinstance(model, Config)
    return model


def test_defaults(tmp_path: Path) -> None:
    c = load(tmp_path)
    assert (c.user, c.password.get_secret_value(), c.timezone, c.point_value_kopecks) == (
        "1c",
        "",
        "Europe/Moscow",
        100,
    )
    assert c.public_url == "http://127.0.0.1:8080/v1/onec/POSProcessing.asmx" and c.remember_days == 30


def test_values_and_the_password_from_the_environment(tmp_path: Path) -> None:
    c = load(
        tmp_path,
        'public_url = "https://gw.shop.example/v1/onec/POSProcessing.asmx"\ntimezone = "Asia/Omsk"\n'
        "point_value_kopecks = 50\n",
        environ={"POSGW_DRIVERS_ONEC_PASSWORD": "from-env"},
    )
    assert (c.public_url, c.timezone, c.point_value_kopecks) == (
        "https://gw.shop.example/v1/onec/POSProcessing.asmx",
        "Asia/Omsk",
        50,
    )
    assert c.password.get_secret_value() == "from-env"


@pytest.mark.parametrize(
    ("options", "key", "words"),
    [
        ('public_url = "ftp://x/POSProcessing.asmx"', "public_url", "http"),
        ('public_url = "https://x/a\\"b"', "public_url", "quotes"),
        ('timezone = "Mars/Olympus"', "timezone", "IANA"),
        ("point_value_kopecks = 0", "point_value_kopecks", "greater"),
        ("remember_days = 0", "remember_days", "greater"),
        ('user = ""', "user", "at least"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, options: str, key: str, words: str) -> None:
    found = section_problems(tmp_path, "onec", options)
    assert [k for k, _, _ in found] == [f"drivers.onec.{key}"], found
    assert words in found[0][1] + found[0][2], found
