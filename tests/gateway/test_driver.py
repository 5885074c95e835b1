"""gateway.driver: registry discovery, load_driver, the counter names, Edge and Refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.driver import (
    CALLERS,
    COUNTERS,
    REGISTRY,
    SHAPES,
    CalcLine,
    CalcResult,
    Driver,
    DriverInfo,
    Edge,
    Refusals,
    discover,
    driver_check,
    driver_info,
    load_driver,
)
from gateway.errors import BadInput

ROOT = Path(__file__).resolve().parents[2]


def test_registry_is_every_driver_folder() -> None:
    folders = sorted(p.parent.name for p in (ROOT / "drivers").glob("*/driver.py"))
    assert sorted(REGISTRY) == folders and folders
    assert REGISTRY["native"] == "drivers.native.driver:create"


def test_discover_needs_a_package_with_driver_py(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = tmp_path / "somedrivers"
    for folder, files in {"good": ("__init__.py", "driver.py"), "no_driver": ("__init__.py", "wire.py"),
                          "not_a_package": ("driver.py",)}.items():
        (pkg / folder).mkdir(parents=True)
        for file in files:
            (pkg / folder / file).write_text("")
    (pkg / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert discover("somedrivers") == {"good": "somedrivers.good.driver:create"}
    assert discover("no_such_package_here") == {}


def test_load_driver_builds_by_name_and_names_the_known_ones() -> None:
    driver = load_driver("native", {"api_keys": ["k"]})
    assert driver.name == "native" and isinstance(driver, Driver)
    with pytest.raises(KeyError, match=r"unknown driver 'nope'; known: .*native"):
        load_driver("nope", {})


def test_counters_are_one_fixed_list() -> None:
    assert {"requests", "auth_failed", "bad_input", "storage_error", "committed", "duplicate"} <= COUNTERS
    assert not {"unauthorized", "storage_unavailable"} & COUNTERS  # the old native names are gone
    assert all(name.islower() and " " not in name for name in COUNTERS)


def test_edge_defaults_and_refusals_as_data() -> None:
    refusals = Refusals(
        unauthorized=lambda why: f"no: {why}".encode(), timeout=b"slow",
        too_large=lambda n: f"{n}".encode(), bad_input=lambda exc: str(exc).encode(), not_stored=b"again",
        other=lambda s, c, m: f"{s} {c}".encode(),
    )
    edge = Edge(refusals)
    assert (edge.max_body_bytes, edge.read_timeout_s) == (1 << 20, 10.0)
    assert refusals.content_type == "application/json" and dict(refusals.headers) == {}
    assert refusals.bad_input(BadInput("bad", "x")) == b"x: bad" and refusals.too_large(5) == b"5"
    assert Edge(refusals, 2048, 1.5).max_body_bytes == 2048


def test_calc_result_total_discount_adds_the_lines() -> None:
    lines = (CalcLine("1", 300, 700, True), CalcLine("2", 50, 950, False))
    result = CalcResult(lines=lines, redeemed_points=0, points_to_accrue=0, max_points=0, payable=1650,
                        offline=False, customer_found=True)
    assert result.total_discount == 350 and result.balance is None and result.token == ""


def test_driver_info_reads_the_packages_metadata() -> None:
    info = driver_info("evotor")
    assert info == DriverInfo("evotor", "Evotor (terminal plugin + cloud webhooks)", "push", info.delivery,
                              "cloud")
    assert "receipt uuid" in info.delivery
    assert {driver_info(n).shape for n in REGISTRY} <= set(SHAPES)


def test_called_by_defaults_to_till_and_names_the_cloud_called_drivers() -> None:
    assert driver_info("native").called_by == "till"
    assert driver_info("evotor").called_by == "cloud"
    assert {driver_info(n).called_by for n in REGISTRY} <= set(CALLERS)


def test_driver_check_is_empty_for_a_driver_without_one() -> None:
    assert driver_check("native", {}) == []
