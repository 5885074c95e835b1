"""What the MoySklad driver needs from the core beyond calculate / identify / submit.

MoySklad's cloud creates customers at the till and asks the loyalty system to send confirmation
codes, whose value it must be given (the till compares the cashier's input itself). Both are core
operations (RegisterCustomer, SendOtp) that :class:`gateway.driver.DriverContext` does not offer
yet: the driver reads them from an optional ``ctx.desk`` satisfying :class:`Desk`, which
:class:`gateway.core_client.CoreClient` does (``register_customer``, ``send_code``). Without a
desk, creating customers and sending codes are refused with a clear error (nothing stored) and
everything else works.

Invariants: every call is bounded by the ``timeout`` given (the driver's budget); a desk raises
only gateway errors (:class:`gateway.errors.CoreUnavailable` when the core is away or slow,
:class:`gateway.errors.BusinessRejection` for a refusal).
"""

# ruff: noqa: ASYNC109

from __future__ import annotations

from typing import Protocol, runtime_checkable


class CodeSent(Protocol):
    """The core's answer to a code request."""

    @property
    def code(self) -> str: ...  # the code issued ("" when none was issued)

    @property
    def status(self) -> str: ...  # sent | not_sent (provider slow or down) | rate_limited | locked

    @property
    def retry_after_s(self) -> int: ...  # seconds before another code may be asked for this phone


@runtime_checkable
class Desk(Protocol):
    async def register_customer(
        self,
        *,
        phone: str,
        card: str,
        name: str,
        email: str,
        birth_date: str,
        gender: str,
        store_id: str,
        timeout: float,
    ) -> str:
        """The core's customer id of a new (or already registered) customer."""
        ...

    async def send_code(self, phone: str, *, purpose: str, wait_ms: int, timeout: float) -> CodeSent:
        """Issue a code for ``phone`` and hand it to the SMS provider, waiting at most ``wait_ms``."""
        ...


def desk_of(ctx: object) -> Desk | None:
    """The core desk the gateway gives this driver's context, if any."""
    desk = getattr(ctx, "desk", None)
    return desk if isinstance(desk, Desk) else None
