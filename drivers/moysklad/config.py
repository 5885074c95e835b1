"""Typed options of the MoySklad driver (``[drivers.moysklad]``); each documented once.

Validated by :func:`gateway.config.load_config` through the registry and again by
:func:`drivers.moysklad.driver.create` (the same model, so the daemon cannot diverge).
"""

from __future__ import annotations

from pydantic import Field, SecretStr

from gateway.config import EdgeOptions, Model, secret_field


class GiftCard(Model):
    """A money certificate the shop sold (MoySklad's gift card): money, not points, so it is the
    driver's, not the loyalty core's. Its balance is this initial value less what sales paid with it."""

    name: str = Field(min_length=1, max_length=64, description="the number the cashier types")
    id: str = Field(min_length=1, max_length=64, description="its GUID as MoySklad stores it")
    initial_kopecks: int = Field(ge=1, le=10**11, description="face value in kopecks")
    expires: str = Field(
        default="",
        pattern=r"^(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2})?$",
        description="UTC expiry 'YYYY-MM-DD HH:MM:SS' (empty: never)",
    )


class Config(EdgeOptions):
    tokens: list[SecretStr] = secret_field(
        "tokens MoySklad sends in Lognex-Discount-API-Auth-Token (the one `posgw moysklad register` "
        "stored; env POSGW_DRIVERS_MOYSKLAD_TOKENS)",
        default=[],
    )
    tokens_file: str = Field(
        default="",
        max_length=4096,
        description="file with the tokens, one a line (what `posgw moysklad register --token-file` writes); "
        "relative to the config or $CREDENTIALS_DIRECTORY",
    )
    store_id: str = Field(
        default="",
        max_length=64,
        description="store id sent to the core (default: MoySklad's retail store id)",
    )
    codes_for_new_customers: bool = Field(
        default=True,
        description="a customer created UNCHECKED gets 412/28001: confirm the phone by code first",
    )
    codes_for_spending: bool = Field(
        default=True,
        description="spending points needs a code (needVerification; a sale spending without one is refused)",
    )
    code_budget_ms: int = Field(
        default=2000,
        ge=100,
        le=10_000,
        description="longest wait for the core to hand a code to the SMS provider; then a cashier message",
    )
    recalc_budget_ms: int = Field(
        default=1000,
        ge=50,
        le=10_000,
        description="a recalc is answered within this: keeping its calc token for the sale is waited for "
        "until then (the answer leaves without it, WARNING); keep it above the gateway's calc_budget_ms",
    )
    time_for_repeat_s: int = Field(
        default=60,
        ge=10,
        le=3600,
        description="seconds before the till may ask for another code",
    )
    keep_days: int = Field(
        default=180, ge=1, le=3650,
        description="days a sale's goods and a document's content are remembered (returns capped at the "
        "sale, resends told apart from conflicts); a return after this is capped by the core alone",
    )
    gift_cards: list[GiftCard] = Field(default_factory=list, description="money certificates the shop sold")
