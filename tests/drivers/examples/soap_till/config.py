"""Typed options of the example SOAP till (``[drivers.soap_till]``)."""

from __future__ import annotations

from pydantic import Field, SecretStr

from gateway.config import EdgeOptions, secret_field


class Config(EdgeOptions):
    user: str = Field(default="till", min_length=1, max_length=64,
                      description="the HTTP Basic user name the till sends")
    password: SecretStr = secret_field("the HTTP Basic password the till sends (empty: every call refused)")
    store_id: str = Field(default="", max_length=64, description="store id sent to the core")
