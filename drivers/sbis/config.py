"""Typed options of the SBIS (Saby) poll driver (``[drivers.sbis]``); each documented once.

Validated by :func:`gateway.config.load_config` through the registry and again by
:func:`drivers.sbis.driver.create` (the same model). Times are seconds; every default is the
production one (tests shorten them).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, model_validator

from gateway.config import Model, secret_field, time_zone

DAY = 86_400.0


class Config(Model):
    auth: Literal["token", "login"] = Field(
        default="token",
        description="token: the service app's keys (POST oauth/service/, X-SBISAccessToken); "
        "login: JSON-RPC login and password (СБИС.Аутентифицировать, X-SBISSessionID)",
    )
    app_client_id: str = Field(
        default="", max_length=128, description="the service app's client id (auth = token)"
    )
    app_secret: SecretStr = secret_field("the service app's secret (auth = token)")
    secret_key: SecretStr = secret_field("the service app's secret key (auth = token)")
    login: str = Field(default="", max_length=128, description="the SBIS user's login (auth = login)")
    password: SecretStr = secret_field("the SBIS user's password (auth = login)")
    auth_url: str = Field(
        default="https://online.sbis.ru",
        pattern=r"^https?://[^\s/]+(/[^\s]*)?$",
        description="where oauth/service/ and auth/service/ live (https://online.saby.ru also works)",
    )
    api_url: str = Field(
        default="https://api.sbis.ru",
        pattern=r"^https?://[^\s/]+(/[^\s]*)?$",
        description="base of the OFD REST API /ofd/v1/... (https://api.saby.ru also works)",
    )
    inn: str = Field(
        default="",
        pattern=r"^(\d{10}|\d{12})?$",
        description="the organisation's INN (10 or 12 digits) whose registers are polled",
    )
    registers: dict[str, str] = Field(
        default_factory=dict,
        description="SBIS register (kktRegId) -> posgw register id; unlisted registers keep their kktRegId",
    )
    only_mapped: bool = Field(default=False, description="poll only the registers listed in `registers`")
    store_id: str = Field(default="", max_length=64, description="store id sent to the core")
    doc_time_zone: str = Field(
        default="Europe/Moscow",
        max_length=64,
        description="zone whose wall-clock time the documents' dateTime and the dateFrom/dateTo filters carry"
        ' ("" or "UTC": dateTime is true Unix time)',
    )
    interval_s: float = Field(
        default=60.0, gt=0, le=3600, description="wait between polls when nothing is new"
    )
    drives_refresh_s: float = Field(
        default=900.0,
        gt=0,
        le=DAY,
        description="how often registers and their fiscal drives are listed again",
    )
    overlap_s: float = Field(
        default=14_400.0,
        ge=0,
        le=2 * DAY,
        description="a window starts this long before the newest document read (late uploads, zone skew)",
    )
    ahead_s: float = Field(
        default=50_400.0,
        ge=0,
        le=2 * DAY,
        description="dateTo is the gateway's clock plus this (a till's clock or zone ahead of ours)",
    )
    page_limit: int = Field(
        default=500, ge=2, le=1000, description="`limit` of a docs request; a full answer is split"
    )
    backfill_s: float = Field(
        default=DAY,
        ge=0,
        le=366 * DAY,
        description="on the very first run, read documents this far back (older sales are not accrued)",
    )
    gap_recheck_s: float = Field(
        default=300.0,
        gt=0,
        le=DAY,
        description="how often the time around a missing document number is read again",
    )
    gap_max_age_s: float = Field(
        default=30 * DAY,
        gt=0,
        le=366 * DAY,
        description="a missing document number older than this is given up with an alarm",
    )
    closed_drive_s: float = Field(
        default=3 * DAY,
        ge=0,
        le=366 * DAY,
        description="a replaced fiscal drive is still read this long after its effectiveTo",
    )
    return_keep_s: float = Field(
        default=30 * DAY,
        gt=0,
        le=366 * DAY,
        description="how long a sale is remembered to match its return",
    )
    sign_keep_s: float = Field(
        default=40 * DAY,
        gt=0,
        le=366 * DAY,
        description="how long a document's fiscal sign is remembered to check re-reads (above gap_max_age_s)",
    )
    connect_timeout_s: float = Field(
        default=5.0, gt=0, le=60, description="connect deadline of every request"
    )
    request_timeout_s: float = Field(
        default=30.0, gt=0, le=300, description="total deadline of every request"
    )
    max_rps: float = Field(default=2.0, gt=0, le=1000, description="at most this many requests per second")
    token_renew_s: float = Field(
        default=1200.0,
        gt=0,
        le=DAY,
        description="renew the token or session this often (and once on a 401)",
    )
    backoff_initial_s: float = Field(default=5.0, gt=0, le=600, description="first wait after a failed poll")
    backoff_max_s: float = Field(default=300.0, gt=0, le=3600, description="longest wait after failed polls")
    retry_after_max_s: float = Field(
        default=600.0,
        gt=0,
        le=DAY,
        description="the longest Retry-After honoured (longer ones are capped)",
    )
    fetch_timeout_s: float = Field(
        default=600.0,
        gt=0,
        le=3600,
        description="deadline of one whole poll round (every drive, every window)",
    )

    @model_validator(mode="after")
    def _credentials(self) -> Config:
        if self.doc_time_zone not in ("", "UTC"):
            try:
                time_zone(self.doc_time_zone)
            except ValueError as exc:
                raise ValueError(f'doc_time_zone: {exc}, or "" for UTC') from None
        if self.gap_max_age_s >= self.sign_keep_s:
            raise ValueError(
                "sign_keep_s must be longer than gap_max_age_s (a late document is checked "
                "against the signs of its neighbours)"
            )
        return self
