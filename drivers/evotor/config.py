"""Typed options of the Evotor driver (``[drivers.evotor]``); each documented once.

Validated by :func:`gateway.config.load_config` through the registry and again by
:func:`drivers.evotor.driver.create` (the same model, so the daemon cannot diverge).
"""

from __future__ import annotations

from pydantic import Field, SecretStr

from gateway.config import EdgeOptions, secret_field


class Config(EdgeOptions):
    pairing_tokens: list[SecretStr] = secret_field(
        "tokens our terminal plugin may send in X-Gateway-Token (env POSGW_DRIVERS_EVOTOR_PAIRING_TOKENS)",
        default=[],
    )
    cloud_user_token: SecretStr = secret_field(
        "user token returned to Evotor's user/verify; the cloud sends it back as Bearer on every webhook",
    )
    cloud_app_token: SecretStr = secret_field(
        "application token Evotor sends in Authorization on user/verify (empty: user/verify refused)",
    )
    store_id: str = Field(
        default="", max_length=64, description="store id sent to the core (default: Evotor's)",
    )
    print_balance: bool = Field(default=True, description="print the customer's balance in the slip text")
