"""Offline policy: answer the till from local copies when the core is slow, down or fenced off.

:class:`OfflinePolicy` computes the offline answer with the same rule engine as the core
(:func:`gateway.rules.calc.calculate`), on an account built from the balance snapshot of
:class:`~gateway.offline_cache.OfflineCache`: one ordinary lot holding the snapshot's ordinary
points (certificate points are not redeemable offline), other tills' holds as
``held_by_others``. Points granted offline are counted in the
:class:`~gateway.offline_cache.OfflineLedger`.

Decisions (the slip and the cashier must never be misled):
- every offline answer has ``offline=True`` and ``balance=None`` ("balance pending"), and its
  message, in Russian, says the calculation is provisional; accrual is computed but provisional
  (the core always recomputes it at commit);
- redemption offline is refused (``redeem_limit_points = 0``, the default) or capped by the
  per-customer, per-shift limit, counted across the whole gateway (every register) for the
  gateway's shift day (:func:`shift_day`: the program's local date of the receipt's
  ``occurred_at``; registers' own shift numbers differ between tills and cannot be joined, so
  they do not enter the key). A request above what the offline limit
  allows is answered without redemption, ``rejection`` set (REDEMPTION_NOT_PERMITTED when
  nothing may be redeemed, else REDEMPTION_CAP_EXCEEDED with ``max_points`` = what may be), as
  the online path answers a refused redemption; a request the rules themselves refuse gets the
  rules' code; ``redeem_max`` takes what is allowed;
- an SMS code cannot be checked offline: a phone with a code counts as a plain phone (weak);
- an app code or QR cannot be resolved offline (the code lives only in the core): the sale goes
  on without loyalty (``customer_found=False``), the message asks for a phone or card; the sale
  event still carries the code, so the core may credit the purchase when it is delivered;
- unknown customers, blocked customers and a missing program -> no discount, no accrual.

The evaluation is pure CPU; the only I/O is the ledger write when points are granted offline
(a small file, only with a non-zero limit).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from gateway.driver import CalcLine, CalcResult, CustomerInfo
from gateway.errors import BadInput
from gateway.offline_cache import OfflineCache, OfflineLedger, SnapshotEntry
from gateway.receipt import CustomerId, IdKind, Receipt
from gateway.rules.calc import calculate
from gateway.rules.dates import local_date
from gateway.rules.program import Program
from gateway.rules.types import AccountState, Calculation, LineIn, Lot, RuleViolation

__all__ = ["OfflineCache", "OfflineLedger", "OfflinePolicy", "SnapshotEntry", "plain_result", "shift_day"]

_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)  # the snapshot lot is available "since forever"

MSG_PROVISIONAL = "Нет связи с сервером лояльности: расчёт предварительный, баланс уточняется"
MSG_NO_REDEEM = "списание баллов без связи с сервером недоступно"
MSG_CAPPED = "без связи с сервером можно списать не более {n} баллов за день"
MSG_UNKNOWN = "Нет связи с сервером лояльности: покупатель не найден в локальной копии, продажа без бонусов"
MSG_APP_CODE = (
    "Нет связи с сервером лояльности: код из приложения нельзя проверить, продажа без бонусов; "
    "назовите телефон или номер карты"
)
MSG_NO_PROGRAM = "Нет связи с сервером лояльности и нет сохранённых правил программы: продажа без бонусов"
MSG_BLOCKED = "Карта покупателя заблокирована: продажа без бонусов"


def shift_day(program: Program, receipt: Receipt) -> str:
    """The offline limit's period: the gateway's shift day, i.e. the local date (program time
    zone) of the receipt's ``occurred_at``, ISO format. The same for every register."""
    return local_date(program, receipt.occurred_at).isoformat()


def plain_result(
    receipt: Receipt, *, offline: bool, message: str = "", rejection: str = "", customer_found: bool = False
) -> CalcResult:
    """No loyalty: every line paid in full, nothing redeemed, nothing accrued."""
    return CalcResult(
        lines=tuple(CalcLine(x.line_id, 0, x.amount, False) for x in receipt.lines),
        redeemed_points=0,
        points_to_accrue=0,
        max_points=0,
        payable=receipt.total,
        offline=offline,
        customer_found=customer_found,
        message=message,
        rejection=rejection,
    )


def lines_in(receipt: Receipt) -> list[LineIn]:
    return [
        LineIn(
            x.line_id, x.amount, x.qty_milli, x.sku, x.category, x.min_unit_price, x.discountable, x.accruable
        )
        for x in receipt.lines
    ]


class OfflinePolicy:
    def __init__(
        self,
        cache: OfflineCache,
        *,
        redeem_limit_points: int = 0,
        ledger_path: Path | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.cache = cache
        self.redeem_limit_points = max(0, redeem_limit_points)
        self.ledger = OfflineLedger(ledger_path or cache.data_dir / "offline_grants.json", wall=wall)
        self._anonymous = itertools.count()

    @property
    def program_version(self) -> str:
        """The version of the program the gateway holds ("" before the first fetch)."""
        return self.cache.program_version

    def identify(self, customer: CustomerId) -> CustomerInfo | None:
        entry = self.cache.find(customer)
        if entry is None:
            return None
        return CustomerInfo(entry.customer_id, entry.display_name, entry.tier, balance=None, offline=True)

    def account(
        self, entry: SnapshotEntry, customer: CustomerId, program: Program | None = None,
    ) -> AccountState:
        """The rule engine's view of a snapshot entry, as the core builds it from its own account
        (simulators/core/fastpath.py ``Account.state``): under ``allow_negative_balance`` a debt is a
        negative balance, which blocks redemption (it used to be passed as ``debt`` only, and the
        offline answer let a customer in debt redeem what the core refused)."""
        negative = program is not None and program.allow_negative_balance
        lots: tuple[Lot, ...] = ()
        if entry.ordinary_points > 0:
            lots = (Lot("offline-snapshot", "snapshot", entry.ordinary_points, _EPOCH, _EPOCH, None),)
        # the identification method as the core names it (simulators/core/identify.py): a customer
        # id comes from an earlier strong identification, "app_code" (it was "customer_id", which no
        # program's redeem_with names, so offline refused what the core allowed); a phone is a
        # plain phone, an SMS code cannot be checked offline
        kind = IdKind(customer.kind)
        method = {IdKind.PHONE: "phone", IdKind.CUSTOMER_ID: "app_code"}.get(kind, kind.value)
        return AccountState(
            customer_id=entry.customer_id,
            tier=entry.tier,
            lots=lots,
            debt=0 if negative else entry.debt,
            held_by_others=entry.held_points,
            method=method,
            blocked=entry.blocked,
            negative_balance=-entry.debt if negative else 0,
        )

    def calculate(self, receipt: Receipt) -> CalcResult:
        """The offline answer (``offline=True``, ``balance=None``). Raises BadInput only for a
        receipt the rules refuse (INVALID_RECEIPT), as the core would. Points redeemed are
        counted against the customer's limit for :func:`shift_day` of the receipt, whichever
        register it comes from."""
        program = self.cache.program
        if program is None:
            return plain_result(receipt, offline=True, message=MSG_NO_PROGRAM)
        if receipt.customer is None:
            return plain_result(receipt, offline=True)
        if IdKind(receipt.customer.kind) in (IdKind.APP_CODE, IdKind.QR):
            return plain_result(receipt, offline=True, message=MSG_APP_CODE)
        entry = self.cache.find(receipt.customer)
        if entry is None:
            return plain_result(receipt, offline=True, message=MSG_UNKNOWN)
        if entry.blocked:
            return plain_result(receipt, offline=True, message=MSG_BLOCKED, rejection="CUSTOMER_BLOCKED")
        account = self.account(entry, receipt.customer, program)
        lines = lines_in(receipt)
        at = receipt.occurred_at
        try:
            base = calculate(program, account, lines, at=at)
        except RuleViolation as exc:
            raise BadInput(exc.message, exc.metadata.get("field", "")) from exc

        day = shift_day(program, receipt)
        # receipt keys carry the register: two tills' receipt numbers may coincide within a day
        if receipt.receipt_number:
            receipt_key = f"{receipt.register_id}:{receipt.shift}:{receipt.receipt_number}"
        else:  # cannot tell recalculations apart: count each one (the safe direction)
            receipt_key = f"{receipt.register_id}:{receipt.shift}:?{next(self._anonymous)}"
        m = base.max_points
        left = max(
            0,
            self.redeem_limit_points
            - self.ledger.granted(day, entry.customer_id, except_receipt=receipt_key),
        )
        allowed = min(m, left)
        limited_by = "offline_limit" if left < m else base.limited_by
        calc, rejection, notes = base, "", [MSG_PROVISIONAL]
        by_limit = MSG_NO_REDEEM if left == 0 else MSG_CAPPED.format(n=left)
        if receipt.redeem_max:
            if allowed > 0:
                calc = calculate(program, account, lines, redeem_points=allowed, at=at)
            if left < m:
                notes.append(by_limit)
                rejection = "REDEMPTION_NOT_PERMITTED" if allowed == 0 else ""
        elif receipt.redeem_points > 0:
            want = receipt.redeem_points
            try:
                if want > m:  # the rules refuse it as the core would: let them name the reason
                    calculate(program, account, lines, redeem_points=want, at=at)
                if want > allowed:
                    notes.append(by_limit)
                    rejection = "REDEMPTION_NOT_PERMITTED" if left == 0 else "REDEMPTION_CAP_EXCEEDED"
                else:
                    calc = calculate(program, account, lines, redeem_points=want, at=at)
            except RuleViolation as exc:
                rejection = exc.code
        if calc.redeemed > 0 or receipt.receipt_number:
            self.ledger.record(day, entry.customer_id, receipt_key, calc.redeemed)
        return self._result(calc, entry, allowed, limited_by, rejection, notes)

    @staticmethod
    def _result(
        calc: Calculation,
        entry: SnapshotEntry,
        max_points: int,
        limited_by: str,
        rejection: str,
        notes: list[str],
    ) -> CalcResult:
        reasons = [r.reason for r in calc.applied_rules if r.reason]
        return CalcResult(
            lines=tuple(CalcLine(x.line_id, x.discount, x.paid, x.accrues) for x in calc.lines),
            redeemed_points=calc.redeemed,
            points_to_accrue=calc.points_to_accrue,
            max_points=max_points,
            payable=calc.payable,
            offline=True,
            customer_found=True,
            customer_id=entry.customer_id,
            display_name=entry.display_name,
            tier=calc.tier,
            balance=None,
            limited_by=limited_by,
            message="; ".join(n for n in [*notes, *reasons] if n),
            rejection=rejection,
        )
