"""Typed options of the Poster driver (``[drivers.poster]``); each documented once.

Validated by :func:`gateway.config.load_config` through the registry and again by
:func:`drivers.poster.driver.create` (the same model, so the daemon cannot diverge).
"""

from __future__ import annotations

from pydantic import Field, SecretStr

from gateway.config import EdgeOptions, secret_field


class Config(EdgeOptions):
    pairing_tokens: list[SecretStr] = secret_field(
        "tokens the platform app sends in X-Gateway-Token on local requests"
        " (env POSGW_DRIVERS_POSTER_PAIRING_TOKENS)",
        default=[],
    )
    application_secret: SecretStr = secret_field(
        "the Poster application secret: checks webhook `verify` and X-Poster-Signature (empty: both refused)",
    )
    public_url: str = Field(
        default="", max_length=512,
        description="URL of /v1/poster/pos-event as Poster's proxy calls it (empty: the request's own URL)",
    )
    max_clock_skew_s: int = Field(
        default=259_200, ge=0, le=30 * 86_400,
        description="refuse webhooks / proxied requests whose time is further off than this (0 = no check)",
    )
    store_id: str = Field(
        default="", max_length=64, description="store id sent to the core (default: the Poster account)",
    )
    print_balance: bool = Field(default=True, description="print the customer's balance in printText")
    link_keep_days: int = Field(
        default=180, ge=1, le=3650,
        description="days a sale's transaction id is remembered, so that removing the transaction in the"
        " back office refunds that sale (a removal after this goes to the operator queue)",
    )
