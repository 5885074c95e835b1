"""What the customer display says, pure: gateway values -> two lines of text (at most 20 each
after :func:`drivers.serial.wire.fit`; longer text is cut there, so the wording keeps the number
that matters at the start of a line).

- after a scan: the customer's name and balance when the core answered; ``Карта принята`` /
  ``Баланс недоступен`` when the gateway answered offline (the scan is bound all the same);
  ``Карта не найдена`` when the core does not know the identifier (nothing is bound);
- after a calculate for a customer: the discount in roubles and the points to earn, then the
  balance, or ``Баланс недоступен`` when the answer was given offline;
- a scan not recognised, malformed or not stored: what to do, in a few words;
- between customers: the configured idle text; after a sale: the configured thank-you.
"""

from __future__ import annotations

from gateway.driver import CalcResult, CustomerInfo

Screen = tuple[str, str]

UNAVAILABLE = "Баланс недоступен"
NOT_RECOGNISED: Screen = ("Код не распознан", "Покажите QR-код")
MALFORMED: Screen = ("Карта не читается", "Покажите еще раз")
NOT_STORED: Screen = ("Ошибка, повторите", "сканирование")
NOT_FOUND: Screen = ("Карта не найдена", "Обратитесь к кассиру")


def points(n: int) -> str:
    """Points with a space between thousands: 1340 -> "1 340"."""
    return f"{n:,}".replace(",", " ")


def money(kopecks: int) -> str:
    """Kopecks as roubles with two decimals: 6250 -> "62.50", 134000 -> "1 340.00"."""
    sign = "-" if kopecks < 0 else ""
    rub, kop = divmod(abs(kopecks), 100)
    return f"{sign}{points(rub)}.{kop:02d}"


def balance_line(balance: int | None) -> str:
    return UNAVAILABLE if balance is None else f"Баланс: {points(balance)} б."


def scanned(info: CustomerInfo | None, *, offline: bool) -> Screen:
    """After a scan was bound: who and what balance (``info`` from the identify that followed;
    None with ``offline``: the core could not be asked)."""
    if info is None or (info.offline and offline):
        return ("Карта принята", UNAVAILABLE)
    name = info.display_name.split(" ")[0] if info.display_name else ""
    greeting = f"Здравствуйте, {name}!" if name else "Здравствуйте!"
    return (greeting, balance_line(None if info.offline else info.balance))


def calculated(result: CalcResult) -> Screen | None:
    """After a calculate for this register: discount and points, balance; None when the receipt
    had no customer (the display keeps what it shows)."""
    if not result.customer_found:
        return None if not result.customer_id and not result.message else NOT_FOUND
    discount = result.total_discount
    earn = f" +{points(result.points_to_accrue)} б." if result.points_to_accrue else ""
    first = f"Скидка {money(discount)} ₽" if discount else f"Начислим{earn or ' 0 б.'}"
    if discount and earn:
        first = f"Скидка {money(discount)}{earn}"
    balance = None if result.offline else result.balance
    return (first, balance_line(balance))


def texts(lines: list[str]) -> Screen:
    return (lines[0], lines[1])
