"""drivers.sbis.config: the section through the real loader; bad values named with their key."""

from __future__ import annotations

from pathlib import Path

from drivers.sbis.config import Config
from drivers.sbis.driver import check, create
from gateway.config import load_config
from tests.drivers.config_helpers import load_section, section_problems

ROOT = Path(__file__).resolve().parents[3]


def test_defaults_and_secret_from_environment(tmp_path: Path) -> None:
    cfg = load_section(
        tmp_path,
        "sbis",
        'inn = "7701234567"\napp_client_id = "id"\n',
        environ={"POSGW_DRIVERS_SBIS_APP_SECRET": "s3cret"},
    )
    assert isinstance(cfg, Config)
    assert cfg.app_secret.get_secret_value() == "s3cret"
    assert cfg.interval_s == 60.0 and cfg.overlap_s == 14_400.0 and cfg.page_limit == 500
    assert "s3cret" not in repr(cfg)


def test_bad_values_name_the_key(tmp_path: Path) -> None:
    problems = section_problems(tmp_path, "sbis", 'inn = "12ab"\nauth = "oauth"\npage_limit = 5000\n')
    assert {p[0] for p in problems} >= {"drivers.sbis.inn", "drivers.sbis.auth", "drivers.sbis.page_limit"}


def test_unknown_zone_and_sign_keep_shorter_than_gaps_are_refused(tmp_path: Path) -> None:
    problems = section_problems(tmp_path, "sbis", 'doc_time_zone = "Mars/Olympus"\n')
    assert any("doc_time_zone" in p[1] for p in problems)
    problems = section_problems(tmp_path, "sbis", "gap_max_age_s = 100.0\nsign_keep_s = 50.0\n")
    assert any("sign_keep_s" in p[1] for p in problems)


def test_check_names_missing_inn_and_credentials() -> None:
    found = {f.key for f in check({})}
    assert found == {"inn", "app_client_id"}
    assert {f.key for f in check({"auth": "login", "inn": "7701234567"})} == {"login"}
    assert check({"inn": "7701234567", "app_client_id": "a", "app_secret": "b", "secret_key": "c"}) == []
    assert create({"inn": "7701234567"}).config.inn == "7701234567"


def test_the_sample_section_loads_with_its_mapping() -> None:
    cfg = load_config(ROOT / "drivers" / "sbis" / "sample.toml", environ={}).driver_config("sbis")
    assert isinstance(cfg, Config)
    assert cfg.registers == {"0006543210012345": "shop1-till1"} and cfg.auth == "token"
