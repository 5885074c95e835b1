"""Typed options of the 1C driver (``[drivers.onec]``); each documented once.

Validated by :func:`gateway.config.load_config` through the registry and again by
:func:`drivers.onec.driver.create` (the same model, so the daemon cannot diverge).
"""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator

from gateway.config import EdgeOptions, secret_field, time_zone

PATH = "/POSProcessing.asmx"  # the service's path under /v1/onec/ (WSDL: the same with ?wsdl)


class Config(EdgeOptions):
    user: str = Field(
        default="1c",
        min_length=1,
        max_length=64,
        description="the HTTP Basic user name the 1C module sends (WSПрокси.Пользователь)",
    )
    password: SecretStr = secret_field(
        "the HTTP Basic password the 1C module sends (WSПрокси.Пароль; empty: every call refused; "
        "env POSGW_DRIVERS_ONEC_PASSWORD)"
    )
    public_url: str = Field(
        default="http://127.0.0.1:8080/v1/onec" + PATH,
        min_length=8,
        max_length=512,
        description="the service URL as the 1C server reaches it: written into the WSDL's soap:address "
        "(never taken from the request's Host)",
    )
    timezone: str = Field(
        default="Europe/Moscow",
        max_length=64,
        description="the store's time zone: a DateTime without an offset is read in it, "
        "and the receipt date of the idempotency key is taken in it",
    )
    store_id: str = Field(
        default="", max_length=64, description="store id sent to the core (empty: the cheque's BusinessUnit)"
    )
    point_value_kopecks: int = Field(
        default=100,
        ge=1,
        le=1_000_000,
        description="what one loyalty point is worth in kopecks (the program's pv): "
        "Manzana bonuses travel in roubles",
    )
    remember_days: int = Field(
        default=30,
        ge=1,
        le=400,
        description="how long a Fiscal answer is remembered for resends and Rollback "
        "(a Rollback of an older cheque gets 81380)",
    )

    @field_validator("public_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")) or any(c in value for c in "\"'<> \t\r\n"):
            raise ValueError(
                "must be an http:// or https:// URL without quotes, spaces, < or > "
                "(e.g. https://gw.shop.example/v1/onec/POSProcessing.asmx)"
            )
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return time_zone(value)
