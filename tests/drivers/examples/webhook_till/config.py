"""Typed options of the example webhook till (``[drivers.webhook_till]``)."""

from __future__ import annotations

from pydantic import Field, SecretStr

from gateway.config import EdgeOptions, secret_field


class Config(EdgeOptions):
    tokens: list[SecretStr] = secret_field("tokens the till sends in X-Till-Token", default=[])
    store_id: str = Field(default="", max_length=64, description="store id sent to the core")
