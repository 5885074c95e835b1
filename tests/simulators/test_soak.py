"""Mirror of simulators.soak: schedules, options from the environment, drivers config, verdict, report."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from simulators.soak import (
    PHONES,
    VENDORS,
    SoakOptions,
    SoakResult,
    all_drivers_toml,
    flap_schedule,
    kill_schedule,
    phone_program,
    write_report,
)


def result(**changes: object) -> SoakResult:
    base: dict[str, object] = dict(
        seed=5, kills_planned=3, kills_done=3, vendors=["native"], flap_ms=(1000, 200), duration_s=9.0,
        restart_s_p50=1.5, restart_s_max=2.0, acknowledged=40, applied_total=40, lost=[], doubled=[],
        in_operator_queue=[], applied_unacknowledged=0, pending_after_drain=0, drain_s=0.5,
        per_vendor={"native": {"receipts": 40, "acknowledged": 38, "refunds": 2, "cancels": 0,
                               "unacknowledged": 0, "errors": 1}},
    )
    base.update(changes)
    return SoakResult(**base)  # type: ignore[arg-type]


def test_kill_schedule_is_reproducible_and_bounded() -> None:
    a = kill_schedule(11, 1000)
    assert a == kill_schedule(11, 1000) and a != kill_schedule(12, 1000)
    assert len(a) == 1000 and all(0.05 <= x <= 1.0 for x in a)
    assert kill_schedule(11, 0) == []
    assert all(0.2 <= x <= 0.3 for x in kill_schedule(1, 50, min_life_s=0.2, max_life_s=0.3))


def test_flap_schedule_is_seeded() -> None:
    up, down = flap_schedule(3)
    assert (up, down) == flap_schedule(3)
    assert 800 <= up <= 2500 and 150 <= down <= 700


def test_options_from_the_environment() -> None:
    opts = SoakOptions.from_env({"POSGW_SOAK_KILLS": "1200", "POSGW_SOAK_SEED": "99",
                                 "POSGW_SOAK_DURATION_S": "600", "POSGW_SOAK_VENDORS": "native, poster",
                                 "POSGW_SOAK_RATE": "10", "POSGW_SOAK_KEEP": "1"})
    assert (opts.kills, opts.seed, opts.duration_s, opts.vendors, opts.rate, opts.keep) == \
        (1200, 99, 600.0, ("native", "poster"), 10.0, True)
    defaults = SoakOptions.from_env({})
    assert defaults.kills >= 1000 and defaults.vendors == VENDORS and defaults.duration_s is None


@pytest.mark.parametrize("changes", [{"vendors": ("native", "sbis")}, {"vendors": ()}, {"kills": -1},
                                     {"rate": 0.0}, {"min_life_s": 2.0, "max_life_s": 1.0}])
def test_bad_options_are_refused(changes: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        SoakOptions(**changes)  # type: ignore[arg-type]


def test_every_vendor_driver_is_enabled_in_the_gateway_config() -> None:
    drivers = tomllib.loads(all_drivers_toml())["drivers"]
    assert set(drivers) == {"evotor", "modulkassa", "poster"}  # native: the stack's own section
    assert all(section["enabled"] for section in drivers.values())


def test_phone_program_allows_redemption_by_phone(tmp_path: Path) -> None:
    text = phone_program(tmp_path).read_text(encoding="utf-8")
    assert 'redeem_with = ["phone", "card", "app_code"]' in text
    bad = tmp_path / "other.toml"
    bad.write_text('id = "other"\n', encoding="utf-8")
    with pytest.raises(ValueError, match="seed002"):
        phone_program(tmp_path, bad)
    assert len(set(PHONES)) == len(PHONES)


def test_verdict_and_summary() -> None:
    good = result()
    assert good.ok and "soak PASS" in good.summary() and "LOST 0  DOUBLED 0" in good.summary()
    assert "POSGW_SOAK_SEED=5" in good.summary()
    for bad in (result(lost=["k1"]), result(doubled=["sale:k x2"]), result(pending_after_drain=3),
                result(acknowledged=0), result(in_operator_queue=["sale:k"])):
        assert not bad.ok and "soak FAIL" in bad.summary()
    assert "lost: k1" in result(lost=["k1"]).summary()


def test_report_is_json_with_the_verdict(tmp_path: Path) -> None:
    path = write_report(result(lost=["x"]), tmp_path)
    data = json.loads(path.read_text(encoding="utf-8"))
    assert path.name == "soak-5.json" and data["ok"] is False and data["lost"] == ["x"]
