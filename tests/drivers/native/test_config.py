"""drivers.native.config: the [drivers.native] options: defaults, bounds, strict types, unknown
keys refused, API keys as secrets from the TOML, the environment or api_keys_file (one per line,
relative to the config's folder or $CREDENTIALS_DIRECTORY)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from drivers.native.config import Config
from gateway.config import EdgeOptions, load_config
from tests.drivers.config_helpers import load_section, section_problems, write_section


def load(tmp_path: Path, options: str = "", environ: dict[str, str] | None = None) -> Config:
    model = load_section(tmp_path, "native", options, environ)
    assert isinstance(model, Config)
    return model


def problems(tmp_path: Path, options: str) -> list[tuple[str, str, str]]:
    return section_problems(tmp_path, "native", options)


def keys(c: Config) -> list[str]:
    return [k.get_secret_value() for k in c.api_keys]


def test_defaults(tmp_path: Path) -> None:
    c = load(tmp_path)
    assert c == Config() and isinstance(c, EdgeOptions)
    assert (c.api_keys, c.api_keys_file, c.store_id) == ([], None, "")
    assert (c.max_body_bytes, c.read_timeout_ms) == (1 << 20, 5000)


@pytest.mark.parametrize(("options", "key", "problem", "fix"), [
    ("api_keys = 'abc'\n", "api_keys", "expected a list, got 'abc'", 'write a list like ["..."]'),
    ("api_keys = ['a', 3]\n", "api_keys[1]", "expected a quoted string, got 3", "write a quoted string"),
    (f'store_id = "{"s" * 65}"\n', "store_id", f"'{'s' * 65}': string should have at most 64 characters",
     "string should have at most 64 characters"),
    ("max_body_bytes = 1000\n", "max_body_bytes", "1000: input should be greater than or equal to 1024",
     "use a value that fits, e.g. 1048576"),
    ("api_key = ['a']\n", "api_key", "unknown key", "did you mean 'api_keys'?"),
    ("api_keys_file = 'absent.keys'\n", "api_keys_file", "cannot read", "LoadCredential"),
])
def test_problems(tmp_path: Path, options: str, key: str, problem: str, fix: str) -> None:
    [(found_key, found_problem, found_fix)] = problems(tmp_path, options)
    assert found_key == f"drivers.native.{key}"
    assert found_problem.startswith(problem) and fix in found_fix


def test_unreadable_keys_file_names_the_path(tmp_path: Path) -> None:
    [(_, problem, fix)] = problems(tmp_path, "api_keys_file = 'absent.keys'\n")
    assert problem == f"cannot read {tmp_path / 'absent.keys'}: No such file or directory"
    assert fix == "point it at a readable file (systemd: LoadCredential=)"


def test_keys_from_the_toml(tmp_path: Path) -> None:
    assert keys(load(tmp_path, 'api_keys = ["k1", "k2"]\n')) == ["k1", "k2"]


def test_keys_file_relative_to_the_config_one_per_line(tmp_path: Path) -> None:
    (tmp_path / "till.keys").write_text("  k1\n\nk2 , k3\n", encoding="utf-8")
    c = load(tmp_path, 'api_keys = ["toml"]\napi_keys_file = "till.keys"\n')
    assert keys(c) == ["k1", "k2", "k3"]  # the file wins over the TOML list
    assert c.api_keys_file == Path("till.keys")


def test_keys_file_absolute(tmp_path: Path) -> None:
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / "k").write_text("abs-key\n", encoding="utf-8")
    assert keys(load(tmp_path, f'api_keys_file = "{other / "k"}"\n')) == ["abs-key"]


def test_keys_file_from_the_credentials_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "native_keys").write_text("cred-key\n", encoding="utf-8")
    (tmp_path / "native_keys").write_text("beside-config\n", encoding="utf-8")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    assert keys(load(tmp_path, 'api_keys_file = "native_keys"\n')) == ["cred-key"]
    monkeypatch.delenv("CREDENTIALS_DIRECTORY")
    assert keys(load(tmp_path, 'api_keys_file = "native_keys"\n')) == ["beside-config"]


def test_environment_wins_over_file_and_toml(tmp_path: Path) -> None:
    (tmp_path / "till.keys").write_text("file-key\n", encoding="utf-8")
    toml = 'api_keys = ["toml"]\napi_keys_file = "till.keys"\n'
    config = load_config(write_section(tmp_path, "native", toml),
                         environ={"POSGW_DRIVERS_NATIVE_API_KEYS": "e1, e2"})
    c = config.driver_config("native")
    assert isinstance(c, Config)
    assert keys(c) == ["e1", "e2"]
    assert config.secrets() == ["e1", "e2"]
    assert "e1" not in repr(c)


def test_model_is_strict_frozen_and_closed() -> None:
    with pytest.raises(ValidationError):
        Config(api_keys="k")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        Config(keys=["k"])  # type: ignore[call-arg]
    assert Config(api_keys_file="k.txt").api_keys_file == Path("k.txt")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        Config().store_id = "x"  # type: ignore[misc]
    assert all(f.description for f in Config.model_fields.values())
