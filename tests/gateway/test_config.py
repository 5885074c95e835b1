"""gateway.config: every problem reported with file, key and fix; example config complete."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from gateway.config import (
    SECTIONS,
    ConfigErrors,
    DriverSection,
    GatewayConfig,
    driver_config_model,
    load_config,
    time_zone,
)
from gateway.driver import REGISTRY

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "posgw.example.toml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gw.toml"
    path.write_text(text, encoding="utf-8")
    return path


def problems(tmp_path: Path, text: str) -> dict[str, tuple[str, str]]:
    path = write(tmp_path, text)
    with pytest.raises(ConfigErrors) as info:
        load_config(path)
    assert all(e.file == str(path) for e in info.value.errors)
    return {e.key: (e.problem, e.fix) for e in info.value.errors}


@pytest.mark.parametrize(
    ("text", "key", "problem", "fix"),
    [
        ("[gateway]\ncalc_budgt_ms = 300\n", "gateway.calc_budgt_ms", "unknown key",
         "did you mean 'calc_budget_ms'?"),
        ("[gateway]\ncalc_budget_ms = '300'\n", "gateway.calc_budget_ms", "expected an integer",
         "write an integer like 300"),
        ("[gateway]\ncalc_budget_ms = 1.5\n", "gateway.calc_budget_ms", "expected an integer", "like 300"),
        ("[gateway]\nlog_format = 'xml'\n", "gateway.log_format", "'xml' is not allowed", "'text' or 'json'"),
        ("[gateway]\nlisten_port = 70000\n", "gateway.listen_port", "less than or equal to 65535",
         "e.g. 8080"),
        ("[gateway]\nhold_ttl_s = -1\n", "gateway.hold_ttl_s", "greater than or equal to 0", "e.g. 0"),
        ("[core]\ntls = 'yes'\n", "core.tls", "expected true or false", "write true or false"),
        ("[core]\nbreaker_failures = 0\n", "core.breaker_failures", "greater than or equal to 1", "e.g. 5"),
        ("[outbx]\n", "outbx", "unknown section", "did you mean 'outbox'?"),
        ("[offline]\nredeem_limit = 5\n", "offline.redeem_limit", "unknown key",
         "did you mean 'redeem_limit_points'?"),
        ("[drivers.natve]\nenabled = true\n", "drivers.natve", "unknown driver", "did you mean 'native'?"),
        ("[drivers.zzqq]\n", "drivers.zzqq", "unknown driver",
         "known drivers: " + ", ".join(sorted(REGISTRY))),
        ("[drivers.native]\nmax_bodybytes = 5\n", "drivers.native.max_bodybytes", "unknown key",
         "did you mean 'max_body_bytes'?"),
        ("[drivers.native]\nenabled = 1\n", "drivers.native.enabled", "expected true or false",
         "true or false"),
        ("[drivers.native]\napi_keys = 'abc'\n", "drivers.native.api_keys", "expected a list", '["..."]'),
        ("[drivers.native]\napi_keys = ['a', 3]\n", "drivers.native.api_keys[1]", "expected a quoted string",
         "quoted string"),
        ("[gateway]\nadmin_api_key_file = 'nope.key'\n", "gateway.admin_api_key_file", "cannot read",
         "LoadCredential"),
        ("[gateway\n", "-", "not valid TOML", "fix the TOML syntax"),
    ],
)
def test_problem_table(tmp_path: Path, text: str, key: str, problem: str, fix: str) -> None:
    found = problems(tmp_path, text)
    assert key in found, found
    assert problem in found[key][0]
    assert fix in found[key][1]


def test_every_problem_is_listed_not_just_the_first(tmp_path: Path) -> None:
    found = problems(tmp_path, "[gateway]\ncalc_budgt_ms = 1\nlog_level = 'LOUD'\n[core]\ntls = 1\n")
    assert set(found) == {"gateway.calc_budgt_ms", "gateway.log_level", "core.tls"}


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigErrors) as info:
        load_config(tmp_path / "absent.toml")
    assert info.value.errors[0].problem == "file not found"


def test_defaults_and_outbox_path(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, f"[gateway]\ndata_dir = '{tmp_path}'\n"))
    assert config.gateway.listen_host == "127.0.0.1"
    assert config.gateway.listen_port == 8080
    assert config.gateway.calc_budget_ms == 300
    assert config.gateway.shutdown_timeout_s == 10.0
    assert config.outbox_path == tmp_path / "outbox.db"
    assert config.enabled_drivers() == []
    assert config.gateway.admin_api_key.get_secret_value() == ""  # a SecretStr even by default
    assert config.secrets() == []


def test_secret_from_env_and_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "keys").write_text("k-file-1\nk-file-2\n")
    (tmp_path / "creds").mkdir()
    (tmp_path / "creds" / "admin").write_text("adm-secret\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path / "creds"))
    text = (
        "[gateway]\nadmin_api_key_file = 'admin'\n"
        "[drivers.native]\nenabled = true\napi_keys_file = 'keys'\n"
    )
    config = load_config(write(tmp_path, text))
    assert config.gateway.admin_api_key.get_secret_value() == "adm-secret"
    native = config.driver_config("native")
    assert [k.get_secret_value() for k in native.api_keys] == ["k-file-1", "k-file-2"]  # type: ignore[attr-defined]
    assert set(config.secrets()) == {"adm-secret", "k-file-1", "k-file-2"}
    # the environment wins over the file and the TOML
    env_config = load_config(
        write(tmp_path, text),
        environ={"POSGW_DRIVERS_NATIVE_API_KEYS": "e1, e2", "POSGW_CORE_KEY_FILE": "/k"},
    )
    env_native = env_config.driver_config("native")
    assert [k.get_secret_value() for k in env_native.api_keys] == ["e1", "e2"]  # type: ignore[attr-defined]
    assert env_config.core.key_file == "/k"
    assert "/k" not in env_config.secrets()  # a path, not a secret


def test_credential_found_in_the_installers_credentials_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)  # a check run by hand, not by systemd
    (tmp_path / "credentials").mkdir()
    (tmp_path / "credentials" / "admin_api_key").write_text("kept-by-install\n")
    config = load_config(write(tmp_path, "[gateway]\nadmin_api_key_file = 'admin_api_key'\n"))
    assert config.gateway.admin_api_key.get_secret_value() == "kept-by-install"
    (tmp_path / "admin_api_key").write_text("beside-the-config\n")  # beside the config wins
    config = load_config(write(tmp_path, "[gateway]\nadmin_api_key_file = 'admin_api_key'\n"))
    assert config.gateway.admin_api_key.get_secret_value() == "beside-the-config"


def test_example_config_loads_with_native_enabled() -> None:
    config = load_config(EXAMPLE)
    assert config.enabled_drivers() == ["native"]


def _keys_in(text: str) -> set[str]:
    # "key = value" lines, commented out or not ("# path = ..." documents an optional key), and
    # "[[drivers.<name>.key]]" arrays of tables (a list of sub-sections, such as serial devices)
    return set(re.findall(r"^#?\s*([a-z_]+)\s*=", text, flags=re.MULTILINE)) | set(
        re.findall(r"^#?\s*\[\[drivers\.[a-z0-9_]+\.([a-z_]+)\]\]", text, flags=re.MULTILINE))


def _fields(model: type[BaseModel]) -> set[str]:
    return set(model.model_fields)


def test_example_documents_every_field() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    keys = _keys_in(text)
    wanted: set[str] = set()
    for name, model in SECTIONS.items():
        assert f"[{name}]" in text
        wanted |= _fields(model)
    wanted |= _fields(DriverSection)
    # the example shows the native driver; every driver's own options are checked in its sample.toml
    assert "[drivers.native]" in text
    wanted |= _fields(driver_config_model("native"))
    assert wanted - keys == set()
    assert set(GatewayConfig.model_fields) == {*SECTIONS, "drivers"}


def test_every_field_documented_once_in_the_model() -> None:
    models: list[type[BaseModel]] = [*SECTIONS.values(), DriverSection]
    models += [driver_config_model(n) for n in REGISTRY]
    for model in models:
        for name, info in model.model_fields.items():
            assert info.description, f"{model.__name__}.{name} has no description"


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_driver_sample_toml_loads_and_documents_every_option(name: str) -> None:
    sample = ROOT / "drivers" / name / "sample.toml"
    config = load_config(sample)
    assert name in config.drivers
    assert _fields(driver_config_model(name)) | {"enabled"} <= _keys_in(sample.read_text(encoding="utf-8"))


def test_time_zone_accepts_iana_names_and_names_the_fix() -> None:
    assert time_zone("Asia/Yekaterinburg") == "Asia/Yekaterinburg"
    with pytest.raises(ValueError, match="use an IANA name like Europe/Moscow"):
        time_zone("MSK+3")


@pytest.mark.parametrize(("driver", "key"), [("onec", "timezone"), ("onec_pull", "timezone"),
                                             ("sbis", "doc_time_zone")])
def test_drivers_refuse_an_unknown_time_zone(driver: str, key: str) -> None:
    with pytest.raises(ValidationError, match="unknown time zone 'Mars/Olympus'"):
        driver_config_model(driver).model_validate({key: "Mars/Olympus"})
