"""Typed options of the Modul Kassa driver (``[drivers.modulkassa]``); each documented once.

Validated by :func:`gateway.config.load_config` through the registry and again by
:func:`drivers.modulkassa.driver.create` (the same model, so the daemon cannot diverge).
"""

from __future__ import annotations

from pydantic import Field, SecretStr

from gateway.config import EdgeOptions, secret_field


class Config(EdgeOptions):
    pairing_tokens: list[SecretStr] = secret_field(
        "tokens our loyalty plugin may send in X-Gateway-Token (env POSGW_DRIVERS_MODULKASSA_PAIRING_TOKENS)",
        default=[],
    )
    store_id: str = Field(
        default="", max_length=64, description="store id sent to the core (default: the retail point id)",
    )
    print_balance: bool = Field(default=True, description="print the customer's balance in printable_data")
