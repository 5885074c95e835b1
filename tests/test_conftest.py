"""tests/conftest.py's require_vendor: skips with the reason locally, fails the run under CI=true."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import VENDOR, require_vendor


def test_present_file_is_returned(tmp_path: Path) -> None:
    present = tmp_path / "example.json"
    present.write_text("{}")
    assert require_vendor(present, {"CI": "true"}) == present


def test_missing_file_skips_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "absent.json"
    with pytest.raises(pytest.skip.Exception, match=r"vendor fixtures absent: .*absent\.json"):
        require_vendor(missing, {})


@pytest.mark.parametrize("value", ["true", "TRUE"])
def test_missing_file_fails_under_ci(tmp_path: Path, value: str) -> None:
    missing = tmp_path / "absent.json"
    with pytest.raises(pytest.fail.Exception, match=r"CI=true: vendor fixtures absent: .*absent\.json"):
        require_vendor(missing, {"CI": value})


def test_other_ci_values_still_skip(tmp_path: Path) -> None:
    with pytest.raises(pytest.skip.Exception):
        require_vendor(tmp_path / "absent.json", {"CI": "false"})


def test_vendor_folder_is_shared_fixtures_vendor() -> None:
    expected = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "vendor"
    assert VENDOR.resolve() == expected.resolve()
