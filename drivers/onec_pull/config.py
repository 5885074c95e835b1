"""Typed options of the 1C pull driver (``[drivers.onec_pull]``); each documented once."""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator

from gateway.config import Model, secret_field, time_zone


class Config(Model):
    wsdl_url: str = Field(
        default="http://127.0.0.1/retail/ws/loyalty.1cws?wsdl",
        min_length=8,
        max_length=512,
        description="the WSDL of the infobase's LoyaltyFeed publication (http(s)://host/<publication>/ws/<file>.1cws?wsdl)",
    )
    endpoint: str = Field(
        default="",
        max_length=512,
        description="the URL calls go to (empty: wsdl_url without ?wsdl); never the WSDL's soap:address",
    )
    user: str = Field(default="", max_length=128, description="the infobase user (HTTP Basic)")
    password: SecretStr = secret_field("the infobase user's password (env POSGW_DRIVERS_ONEC_PULL_PASSWORD)")
    node: str = Field(
        default="posgw",
        min_length=1,
        max_length=64,
        description="the exchange-plan node code the extension registers receipts on",
    )
    max_count: int = Field(default=100, ge=1, le=1000, description="receipts asked per call (MaxCount)")
    interval_s: float = Field(default=30.0, ge=0.01, le=3600, description="idle wait when nothing is new")
    operation_timeout_s: float = Field(
        default=30.0, ge=0.1, le=600, description="deadline of one GetReceipts call (zeep operation_timeout)"
    )
    wsdl_timeout_s: float = Field(default=10.0, ge=0.1, le=600, description="deadline of loading the WSDL")
    backoff_max_s: float = Field(
        default=300.0,
        ge=0.01,
        le=3600,
        description="longest wait between failed calls (401/403 too, with an alarm)",
    )
    timezone: str = Field(
        default="Europe/Moscow",
        max_length=64,
        description="the store's time zone (a DateTime without an offset is read in it)",
    )
    store_id: str = Field(
        default="", max_length=64, description="store id sent to the core (empty: the receipt's Store)"
    )
    point_value_kopecks: int = Field(
        default=100,
        ge=1,
        le=1_000_000,
        description="what one loyalty point is worth in kopecks (PaidByBonus is roubles)",
    )

    @field_validator("wsdl_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(
                "must be an http:// or https:// URL like https://1c.shop/retail/ws/loyalty.1cws?wsdl"
            )
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return time_zone(value)

    @property
    def call_url(self) -> str:
        return self.endpoint or self.wsdl_url.split("?", 1)[0]
