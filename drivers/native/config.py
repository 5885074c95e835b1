"""Typed options of the native driver (``[drivers.native]``); each documented once.

Validated by :func:`gateway.config.load_config` through the registry, and again by
:func:`drivers.native.driver.create` (the same model, so the daemon cannot diverge).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr

from gateway.config import EdgeOptions, secret_field


class Config(EdgeOptions):
    api_keys: list[SecretStr] = secret_field(
        "Bearer keys a till may present (env POSGW_DRIVERS_NATIVE_API_KEYS, comma-separated)", default=[],
    )
    api_keys_file: Path | None = Field(
        default=None, strict=False, description="file with one API key per line (systemd credential)",
    )
    store_id: str = Field(
        default="", max_length=64, description="store id sent to the core with every receipt",
    )
