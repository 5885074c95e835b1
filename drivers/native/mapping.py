"""Canonical results -> native JSON API answers (pure). Field names as in GATEWAY_API.md.

Invariant: every amount is an integer (kopecks / points); ``balance`` is ``null`` when it is
not known (offline), so a till prints "pending" rather than a stale figure.
"""

from __future__ import annotations

from typing import Any

from gateway.driver import CalcResult, CustomerInfo

Obj = dict[str, Any]


def calc_to_json(result: CalcResult) -> Obj:
    customer: Obj | None = None
    if result.customer_found:
        customer = {
            "customer_id": result.customer_id, "display_name": result.display_name,
            "tier": result.tier, "balance": result.balance,
        }
    return {
        "lines": [{"line_id": line.line_id, "discount": line.discount, "paid": line.paid}
                  for line in result.lines],
        "redeemed_points": result.redeemed_points,
        "points_to_accrue": result.points_to_accrue,
        "max_points": result.max_points,
        "payable": result.payable,
        "offline": result.offline,
        "customer": customer,
        "hold_id": result.hold_id,
        "message": result.message,
        "rejection": result.rejection,
        "calc_token": result.token,
    }


def identify_to_json(info: CustomerInfo | None) -> Obj:
    if info is None:
        return {"found": False, "customer_id": "", "display_name": "", "tier": "", "balance": None,
                "offline": False}
    return {"found": True, "customer_id": info.customer_id, "display_name": info.display_name,
            "tier": info.tier, "balance": info.balance, "offline": info.offline}


def ack_to_json(key: str, new: bool) -> Obj:
    return {"key": key, "duplicate": not new}


def error_to_json(code: str, message: str, field: str = "") -> Obj:
    error: Obj = {"code": code, "message": message}
    if field:
        error["field"] = field
    return {"error": error}
