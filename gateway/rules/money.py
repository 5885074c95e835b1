"""Integer money arithmetic and Russian display formatting (loyalty-rules.md §2.4).

Percentages are floored in minor units (⌊x·bp/10 000⌋), then points are floored
(⌊minor/pv⌋); nothing is rounded up. Display: thousands separated by a space, comma decimals
(«1 234,56»), percentages without trailing zeros («4 %», «2,5 %»), Russian plural of «балл».
"""

from __future__ import annotations


def pct_of(amount: int, bp: int) -> int:
    """⌊amount·bp/10 000⌋ in minor units."""
    return amount * bp // 10_000


def points_of_pct(amount: int, bp: int, pv: int) -> int:
    """⌊⌊amount·bp/10 000⌋/pv⌋ points."""
    return pct_of(amount, bp) // pv


def fmt_int(n: int) -> str:
    """12345678 -> «12 345 678»."""
    sign = "-" if n < 0 else ""
    return sign + f"{abs(n):,}".replace(",", " ")


def fmt_money(minor: int) -> str:
    """123456 kopecks -> «1 234,56»."""
    sign = "-" if minor < 0 else ""
    major, cents = divmod(abs(minor), 100)
    return f"{sign}{fmt_int(major)},{cents:02d}"


def fmt_pct(bp: int) -> str:
    """400 -> «4 %», 250 -> «2,5 %», 1234 -> «12,34 %»."""
    whole, frac = divmod(bp, 100)
    text = str(whole) if frac == 0 else f"{whole},{frac:02d}".rstrip("0")
    return f"{text} %"


def points_word(n: int) -> str:
    """Russian plural: 1 балл, 2 балла, 5 баллов, 11 баллов, 21 балл."""
    n = abs(n)
    if n % 10 == 1 and n % 100 != 11:
        return "балл"
    if 2 <= n % 10 <= 4 and not 12 <= n % 100 <= 14:
        return "балла"
    return "баллов"


def fmt_points(n: int) -> str:
    """49 -> «49 баллов», 1001 -> «1 001 балл»."""
    return f"{fmt_int(n)} {points_word(n)}"
