"""The gateway's configuration: one TOML file, typed and validated with pydantic v2.

Invariants:
- every model forbids unknown keys and is strict about types (TOML already carries types:
  ``"300"`` is not an integer); every field has a default and one line of documentation
  (``description``), and ``config/posgw.example.toml`` is checked to mention every field;
- :func:`load_config` never stops at the first problem: it raises :class:`ConfigErrors`
  listing every problem, each a :class:`gateway.errors.ConfigError` with file, dotted key,
  problem and a suggested fix;
- ``[drivers.<name>]`` sections are validated by the driver's own ``Config`` model, found
  through :data:`gateway.driver.REGISTRY` by name (``drivers.<name>.config:Config``) and
  imported lazily, so this module knows no driver;
- secrets (fields declared with :func:`secret_field`) may come from the TOML, from an
  environment variable ``POSGW_<SECTION>_<KEY>`` (``POSGW_DRIVERS_NATIVE_API_KEYS``), or from
  a file named by the sibling ``<key>_file`` (relative paths are looked up in
  ``$CREDENTIALS_DIRECTORY`` first, for systemd ``LoadCredential=``). Secret values are
  ``SecretStr`` and are listed by :meth:`GatewayConfig.secrets` for log redaction.
"""

from __future__ import annotations

import difflib
import importlib
import os
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import platformdirs
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr, ValidationError

from gateway.driver import REGISTRY
from gateway.errors import ConfigError, GatewayError

ENV_PREFIX = "POSGW_"


class ConfigErrors(GatewayError):
    """Every problem found in one config file (raised only with at least one)."""

    def __init__(self, errors: Sequence[ConfigError]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(str(e) for e in self.errors))


def time_zone(value: str) -> str:
    """``value`` when it names an IANA time zone (a driver option's validator); ValueError with the
    fix otherwise."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r}: use an IANA name like Europe/Moscow") from None
    return value


def secret_field(description: str, *, default: Any = "", env_only: bool = False) -> Any:
    """A field whose value may come from the environment or a ``<key>_file``.

    ``env_only`` marks values that are not secret themselves (a TLS key *path*) but may be
    set from the environment; they are not redacted.
    """
    extra: dict[str, Any] = {"secret": not env_only, "env": True}
    if isinstance(default, list):
        return Field(default_factory=list, description=description, json_schema_extra=extra)
    if isinstance(default, str) and not env_only:
        default = SecretStr(default)
    return Field(default=default, description=description, json_schema_extra=extra)


class Model(BaseModel):
    """Base of every config model (drivers' too): strict types, unknown keys refused."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class EdgeOptions(Model):
    """The options of an HTTP driver's edge: every HTTP driver's ``Config`` derives from it, and
    its :class:`gateway.driver.Edge` takes its limits from here (one decision per driver)."""

    max_body_bytes: int = Field(
        default=1 << 20, ge=1024, le=64 << 20, description="largest request body accepted (413 above)",
    )
    read_timeout_ms: int = Field(
        default=5000, ge=100, le=60_000, description="a body not fully read in this time gets 408",
    )


def _default_data_dir() -> Path:
    # systemd StateDirectory= sets STATE_DIRECTORY; elsewhere the platform's user data dir.
    state = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    return Path(state) if state else Path(platformdirs.user_data_dir("posgw", appauthor=False))


class GatewaySection(Model):
    listen_host: str = Field(default="127.0.0.1", description="address the HTTP server listens on")
    listen_port: int = Field(
        default=8080, ge=0, le=65535, description="TCP port of the HTTP server (0 = any)",
    )
    data_dir: Path = Field(
        default_factory=_default_data_dir, strict=False,
        description="directory for the outbox, offline snapshots and driver state",
    )
    calc_budget_ms: int = Field(
        default=300, ge=20, le=10_000, description="overall time budget of one calculate",
    )
    hold_ttl_s: int = Field(
        default=0, ge=0, le=3600, description="reserve redeemed points at calculate (0 = off)",
    )
    shutdown_timeout_s: float = Field(
        default=10.0, gt=0, le=300, description="time allowed for a clean shutdown",
    )
    log_format: Literal["text", "json"] = Field(
        default="text", description="log lines as key=value text or JSON",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="lowest level logged",
    )
    max_body_bytes: int = Field(
        default=1 << 20, ge=1024, le=64 << 20,
        description="largest body of the operator endpoints (drivers set their own max_body_bytes)",
    )
    max_connections: int = Field(
        default=512, ge=8, le=65_536,
        description="open HTTP connections at most; one more is answered 503 and closed",
    )
    max_requests_in_flight: int = Field(
        default=256, ge=1, le=65_536,
        description="driver requests handled at once; past it a till gets its vendor's 503 'retry' at once",
    )
    keepalive_timeout_s: float = Field(
        default=75.0, ge=1.0, le=600.0,
        description="an idle keep-alive connection is closed after this (tills reuse their pools)",
    )
    admin_api_key: SecretStr = secret_field(
        "key of the admin endpoints /v1/queue and /v1/outbox (empty = they answer 403)",
    )
    admin_api_key_file: Path | None = Field(
        default=None, strict=False, description="file holding admin_api_key (systemd credential)",
    )
    metrics_need_admin_key: bool = Field(
        default=False, description="/metrics answers only with the admin key (Bearer)",
    )
    status_needs_admin_key: bool = Field(
        default=False, description="the status page (/ and /status) answers only with the admin key",
    )
    tls: bool = Field(
        default=False, description="serve HTTPS with tls_cert_file and tls_key_file (reloaded on SIGHUP)",
    )
    tls_cert_file: str = secret_field("server certificate chain (PEM) for HTTPS", env_only=True)
    tls_key_file: str = secret_field("server private key (PEM) for HTTPS", env_only=True)


class CoreSection(Model):
    address: str = Field(
        default="127.0.0.1:50051", min_length=3,
        description="host:port of the loyalty core; several replicas: host:port,host:port (or one DNS name "
        "with several records), spread round_robin",
    )
    tls: bool = Field(default=False, description="use TLS to the core (mTLS when cert_file/key_file are set)")
    ca_file: str = secret_field("CA bundle to verify the core (empty = system roots)", env_only=True)
    cert_file: str = secret_field("client certificate for mTLS", env_only=True)
    key_file: str = secret_field("client private key for mTLS", env_only=True)
    server_name: str = Field(default="", description="TLS server name override (empty = host of address)")
    breaker_failures: int = Field(
        default=5, ge=1, le=1000, description="consecutive failures that open the breaker",
    )
    breaker_reset_s: float = Field(default=5.0, gt=0, le=3600, description="seconds before a half-open probe")
    refresh_interval_s: float = Field(
        default=60.0, gt=0, le=86_400,
        description="how often the program rules are fetched for offline use, in seconds",
    )


class OfflineSection(Model):
    redeem_limit_points: int = Field(
        default=0, ge=0, le=10**9, description="points a customer may redeem offline per shift (0 = none)",
    )
    snapshot_refresh_s: float = Field(
        default=300.0, gt=0, le=86_400,
        description="how often the balance snapshot used offline is refreshed, in seconds",
    )


class OutboxSection(Model):
    path: Path | None = Field(
        default=None, strict=False, description="outbox SQLite file (default <data_dir>/outbox.db)",
    )
    stuck_after_s: float = Field(
        default=900.0, gt=0, description="pending this long means stuck: /healthz answers 503",
    )
    wait_for_sale_s: float = Field(
        default=86_400.0, gt=0, le=30 * 86_400,
        description="how long a refund or cancel whose sale the core does not know yet waits for it "
                    "(from its creation) before it goes to the operator queue, in seconds",
    )


class DriverSection(Model):
    """``[drivers.<name>]``: ``enabled``; the driver's own options are validated by its ``Config``."""

    enabled: bool = Field(default=False, description="run this driver")


class GatewayConfig(Model):
    gateway: GatewaySection = GatewaySection()
    core: CoreSection = CoreSection()
    offline: OfflineSection = OfflineSection()
    outbox: OutboxSection = OutboxSection()
    drivers: dict[str, DriverSection] = Field(default_factory=dict)
    _driver_configs: dict[str, BaseModel] = PrivateAttr(default_factory=dict)
    _source: str = PrivateAttr(default="")

    @property
    def source(self) -> str:
        return self._source

    @property
    def outbox_path(self) -> Path:
        return self.outbox.path or self.gateway.data_dir / "outbox.db"

    def enabled_drivers(self) -> list[str]:
        return [name for name, section in self.drivers.items() if section.enabled]

    def driver_config(self, name: str) -> BaseModel:
        """The driver's validated ``Config`` instance."""
        return self._driver_configs[name]

    def driver_options(self, name: str) -> dict[str, Any]:
        """The driver's options as a mapping for :func:`gateway.driver.load_driver`."""
        return dict(self._driver_configs[name])

    def secrets(self) -> list[str]:
        """Every configured secret value (for the log redaction filter)."""
        found: list[str] = []
        models: list[BaseModel] = [self.gateway, self.core, self.offline, self.outbox]
        models += list(self._driver_configs.values())
        for model in models:
            for value in dict(model).values():
                for item in value if isinstance(value, list) else [value]:
                    if isinstance(item, SecretStr) and item.get_secret_value():
                        found.append(item.get_secret_value())
        return found


SECTIONS: dict[str, type[Model]] = {
    "gateway": GatewaySection, "core": CoreSection, "offline": OfflineSection, "outbox": OutboxSection,
}


def driver_config_model(name: str) -> type[BaseModel]:
    """The ``Config`` model of a registered driver (``<package>.config:Config``)."""
    module_name = REGISTRY[name].partition(":")[0].rpartition(".")[0] + ".config"
    model: type[BaseModel] = importlib.import_module(module_name).Config
    return model


def load_config(path: str | Path, *, environ: Mapping[str, str] | None = None) -> GatewayConfig:
    """Read, validate and return the config; raise :class:`ConfigErrors` listing every problem."""
    file = str(path)
    env = os.environ if environ is None else environ
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigErrors([ConfigError(file, "-", "file not found", "check the path")]) from None
    except OSError as exc:
        problem = ConfigError(file, "-", f"cannot read: {exc.strerror}", "check permissions")
        raise ConfigErrors([problem]) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        problem = ConfigError(file, "-", f"not valid TOML: {exc}", "fix the TOML syntax")
        raise ConfigErrors([problem]) from None
    return parse_config(raw, file=file, environ=env, base_dir=Path(path).resolve().parent)


def parse_config(
    raw: Mapping[str, Any], *, file: str = "<config>", environ: Mapping[str, str] | None = None,
    base_dir: Path | None = None,
) -> GatewayConfig:
    env = os.environ if environ is None else environ
    base = base_dir or Path.cwd()
    errors: list[ConfigError] = []
    data: dict[str, Any] = {}
    data.update(raw)
    for key, model in SECTIONS.items():
        section = data.get(key, {})
        if isinstance(section, dict):
            data[key] = _apply_secrets(section, model, key, env, base, file, errors)
    driver_raw = data.get("drivers", {})
    driver_models: dict[str, BaseModel] = {}
    if isinstance(driver_raw, dict):
        for name, section in list(driver_raw.items()):
            if name not in REGISTRY or not isinstance(section, dict):
                _driver_model(name, section, file, errors, env, base)  # reports the problem
                driver_raw.pop(name)
                continue
            validated = _driver_model(name, section, file, errors, env, base)
            if validated is not None:
                driver_models[name] = validated
            # options live in the driver's own model (secrets as SecretStr), not in the section
            driver_raw[name] = {k: v for k, v in section.items() if k == "enabled"}
    try:
        config = GatewayConfig.model_validate(data)
    except ValidationError as exc:
        errors.extend(_translate(exc, file, GatewayConfig, ()))
        config = None
    if errors:
        raise ConfigErrors(errors)
    assert config is not None
    config._driver_configs = driver_models
    config._source = file
    return config


def _driver_model(
    name: str, section: Any, file: str, errors: list[ConfigError], env: Mapping[str, str], base: Path,
) -> BaseModel | None:
    where = f"drivers.{name}"
    if name not in REGISTRY:
        errors.append(ConfigError(file, where, "unknown driver", _suggest(name, REGISTRY, "drivers")))
        return None
    if not isinstance(section, dict):
        errors.append(ConfigError(file, where, "must be a table", f"write it as [{where}]"))
        return None
    model_cls = driver_config_model(name)
    options = {k: v for k, v in section.items() if k != "enabled"}
    options = _apply_secrets(options, model_cls, where, env, base, file, errors)
    try:
        return model_cls.model_validate(options)
    except ValidationError as exc:
        errors.extend(_translate(exc, file, model_cls, ("drivers", name), extra_known=("enabled",)))
        return None


def _apply_secrets(
    section: dict[str, Any], model: type[BaseModel], where: str, env: Mapping[str, str], base: Path,
    file: str, errors: list[ConfigError],
) -> dict[str, Any]:
    """Fill env-capable fields from ``POSGW_<WHERE>_<KEY>`` or the ``<key>_file`` file."""
    out = dict(section)
    for name, info in model.model_fields.items():
        extra = info.json_schema_extra
        if not isinstance(extra, dict) or not extra.get("env"):
            continue
        is_list = isinstance(out.get(name, info.get_default(call_default_factory=True)), list)
        var = ENV_PREFIX + f"{where}.{name}".replace(".", "_").upper()
        if var in env:
            out[name] = _split(env[var]) if is_list else env[var]
            continue
        file_key = f"{name}_file"
        ref = out.get(file_key)
        if file_key in model.model_fields and isinstance(ref, str) and ref:
            target = _credential_path(ref, base)
            try:
                text = target.read_text(encoding="utf-8")
            except OSError as exc:
                errors.append(ConfigError(
                    file, f"{where}.{file_key}", f"cannot read {target}: {exc.strerror}",
                    "point it at a readable file (systemd: LoadCredential=)",
                ))
                continue
            out[name] = _split(text) if is_list else text.strip()
    return out


def _credential_path(ref: str, base: Path) -> Path:
    """``ref`` in ``$CREDENTIALS_DIRECTORY`` (systemd), else beside the config, else in the
    config's ``credentials/`` directory (where the installer keeps them: a hand-run check finds them)."""
    path = Path(os.path.expandvars(ref))
    if path.is_absolute():
        return path
    creds = os.environ.get("CREDENTIALS_DIRECTORY")
    if creds and (Path(creds) / path).exists():
        return Path(creds) / path
    kept = base / "credentials" / path
    if not (base / path).exists() and kept.exists():
        return kept
    return base / path


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.replace(",", "\n").splitlines() if part.strip()]


def _suggest(wrong: str, known: Iterable[str], what: str) -> str:
    names = sorted(known)
    close = difflib.get_close_matches(wrong, names, n=1, cutoff=0.6)
    if close:
        return f"did you mean '{close[0]}'?"
    return f"remove it; known {what}: {', '.join(names) or '(none)'}"


_TYPE_HINTS = {
    "int_type": "an integer", "int_parsing": "an integer", "int_from_float": "an integer",
    "float_type": "a number", "float_parsing": "a number", "bool_type": "true or false",
    "bool_parsing": "true or false", "string_type": "a quoted string", "path_type": "a quoted path",
    "list_type": "a list", "dict_type": "a table", "model_type": "a table",
    "model_attributes_type": "a table",
}


def _translate(
    exc: ValidationError, file: str, root: type[BaseModel], prefix: tuple[str | int, ...],
    extra_known: tuple[str, ...] = (),
) -> list[ConfigError]:
    out: list[ConfigError] = []
    for err in exc.errors():
        loc = prefix + tuple(err["loc"])
        key = _dotted(loc)
        kind = err["type"]
        field, parent_fields = _field_at(root, tuple(err["loc"]))
        if kind == "extra_forbidden":
            wrong = str(err["loc"][-1])
            known = list(parent_fields) + list(extra_known if len(err["loc"]) == 1 else ())
            what = "unknown section" if len(loc) == 1 else "unknown key"
            out.append(ConfigError(file, key, what, _suggest(wrong, known, "keys")))
        elif kind in _TYPE_HINTS:
            example = "" if kind.startswith("bool") else _example(field)
            if kind == "list_type":
                example = '["..."]'
            like = f" like {example}" if example else ""
            out.append(ConfigError(
                file, key, f"expected {_TYPE_HINTS[kind]}, got {err['input']!r}",
                f"write {_TYPE_HINTS[kind]}{like}",
            ))
        elif kind == "literal_error":
            out.append(ConfigError(file, key, f"{err['input']!r} is not allowed", err["msg"].lower()))
        elif kind == "missing":
            out.append(ConfigError(file, key, "required key missing", f"add {loc[-1]} = ..."))
        elif kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal",
                      "too_short", "too_long", "string_too_short", "string_too_long"):
            example = _example(field)
            out.append(ConfigError(
                file, key, f"{err['input']!r}: {err['msg'].lower()}",
                f"use a value that fits, e.g. {example}" if example else err["msg"].lower(),
            ))
        else:
            out.append(ConfigError(file, key, err["msg"], "see config/posgw.example.toml"))
    return out


def _dotted(loc: tuple[str | int, ...]) -> str:
    key = ""
    for part in loc:
        key += f"[{part}]" if isinstance(part, int) else (f".{part}" if key else str(part))
    return key or "-"


def _field_at(root: type[BaseModel], loc: tuple[str | int, ...]) -> tuple[Any, Iterable[str]]:
    """The pydantic FieldInfo at ``loc`` (or None) and the field names of its parent model."""
    model: Any = root
    field: Any = None
    parent: Iterable[str] = root.model_fields
    for part in loc:
        if isinstance(part, int):
            continue
        if model is GatewayConfig and part in ("drivers",):
            return None, DriverSection.model_fields
        if isinstance(model, type) and issubclass(model, BaseModel):
            parent = model.model_fields
            field = model.model_fields.get(part)
            annotation = getattr(field, "annotation", None)
            model = annotation if isinstance(annotation, type) else None
        else:
            return field, parent
    return field, parent


def _example(field: Any) -> str:
    if field is None:
        return ""
    default = field.get_default(call_default_factory=False)
    if isinstance(default, bool):
        return "true" if default else "false"
    if isinstance(default, int | float):
        return str(default)
    if isinstance(default, str) and default:
        return f'"{default}"'
    return ""
