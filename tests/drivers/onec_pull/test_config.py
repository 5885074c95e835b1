"""drivers.onec_pull.config: defaults, the URLs and time zone checked, the password a secret."""

from __future__ import annotations

from pathlib import Path

import pytest

from drivers.onec_pull.config import Config
from tests.drivers.config_helpers import load_section, section_problems


def test_defaults_and_the_call_url(tmp_path: Path) -> None:
    c = load_section(tmp_path, "onec_pull", "", {"POSGW_DRIVERS_ONEC_PULL_PASSWORD": "p"})
    assert isinstance(c, Config)
    assert (c.node, c.max_count, c.operation_timeout_s, c.password.get_secret_value()) == (
        "posgw",
        100,
        30.0,
        "p",
    )
    assert c.call_url == "http://127.0.0.1/retail/ws/loyalty.1cws"
    assert Config(endpoint="http://other/x.1cws").call_url == "http://other/x.1cws"


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ('wsdl_url = "ftp://x/ws/a.1cws?wsdl"', "wsdl_url"),
        ('timezone = "Nowhere/City"', "timezone"),
        ("max_count = 0", "max_count"),
        ("operation_timeout_s = 0", "operation_timeout_s"),
        ('node = ""', "node"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, options: str, key: str) -> None:
    assert [k for k, _, _ in section_problems(tmp_path, "onec_pull", options)] == [f"drivers.onec_pull.{key}"]
