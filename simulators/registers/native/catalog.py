"""A small shop's catalogue and the receipts a cashier rings up from it (pure, seeded).

Owns the products (prices in integer kopecks per unit or per kg), and :func:`ring_up`, which
turns a ``random.Random`` into realistic lines: piece goods in whole units (qty_milli multiples
of 1000), weight goods with fractional quantities, some lines under the till's own promo, and
lines the loyalty program must not discount (tobacco, lottery, gift cards, bags) or must keep
above a minimum unit price (alcohol).

Invariants of every line: ``amount`` = round-half-up(price × qty_milli / 1000) less any till
promo, ``amount`` ≥ 0, and a line with ``min_unit_price`` is never promoted below it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Product:
    sku: str
    name: str
    category: str
    price: int  # kopecks per unit, or per kg when weighted
    weighted: bool = False
    discountable: bool = True
    accruable: bool = True
    min_unit_price: int | None = None


CATALOG: tuple[Product, ...] = (
    Product("4600001", "Молоко 3,2% 1 л", "dairy", 8990),
    Product("4600002", "Кефир 1% 900 г", "dairy", 7450),
    Product("4600003", "Масло сливочное 82,5% 180 г", "dairy", 18990),
    Product("2000101", "Сыр Российский (вес)", "dairy", 89900, weighted=True),
    Product("4600010", "Хлеб Бородинский", "bakery", 5490),
    Product("4600011", "Батон нарезной", "bakery", 4290),
    Product("2000201", "Бананы (вес)", "fruit", 13990, weighted=True),
    Product("2000202", "Яблоки Гала (вес)", "fruit", 18990, weighted=True),
    Product("2000203", "Картофель (вес)", "vegetables", 4990, weighted=True),
    Product("2000301", "Курица охлаждённая (вес)", "meat", 32990, weighted=True),
    Product("2000302", "Колбаса докторская (вес)", "meat", 64990, weighted=True),
    Product("4600020", "Яйцо куриное С1, 10 шт", "eggs", 11990),
    Product("4600030", "Кофе зерновой 1 кг", "grocery", 149900),
    Product("4600031", "Шоколад горький 100 г", "grocery", 12990),
    Product("4600032", "Вода питьевая 1,5 л", "drinks", 4590),
    Product("4600040", "Вино красное сухое 0,75 л", "alcohol", 79900, min_unit_price=34900),
    Product("4600041", "Водка 0,5 л", "alcohol", 49900, min_unit_price=34900),
    Product("4600050", "Сигареты, пачка", "tobacco", 21500, discountable=False, accruable=False),
    Product("4600051", "Смесь детская молочная 350 г", "baby", 89900, discountable=False),
    Product("4600060", "Лотерейный билет", "lottery", 10000, discountable=False, accruable=False),
    Product("4600061", "Подарочная карта 1000 ₽", "gift_card", 100000, discountable=False,
            accruable=False),
    Product("4600062", "Пакет-майка", "bags", 900, discountable=False, accruable=False),
)


@dataclass(frozen=True, slots=True)
class SimLine:
    """One receipt line as the till holds it (integer kopecks and thousandths)."""

    line_id: str
    product: Product
    qty_milli: int
    amount: int  # after the till's own promo

    @property
    def gross(self) -> int:
        return line_gross(self.product.price, self.qty_milli)

    def to_json(self) -> dict[str, Any]:
        p = self.product
        data: dict[str, Any] = {
            "line_id": self.line_id, "sku": p.sku, "name": p.name, "category": p.category,
            "price": p.price, "qty_milli": self.qty_milli, "amount": self.amount,
            "discountable": p.discountable, "accruable": p.accruable,
        }
        if p.min_unit_price is not None:
            data["min_unit_price"] = p.min_unit_price
        return data


def line_gross(price: int, qty_milli: int) -> int:
    """price × qty, rounded half up to the kopeck, in integers."""
    return (price * qty_milli + 500) // 1000


def ring_up(rng: random.Random, *, max_lines: int = 8, promo_share: float = 0.1) -> tuple[SimLine, ...]:
    """A receipt's lines: 1..max_lines products, mostly few, line ids "1", "2", ..."""
    count = min(max_lines, max(1, int(rng.expovariate(1 / 3)) + 1))
    lines: list[SimLine] = []
    for i in range(count):
        product = rng.choice(CATALOG)
        if product.weighted:
            qty = rng.randint(150, 2500)
        else:
            qty = 1000 * rng.choice((1, 1, 1, 2, 3))
        gross = line_gross(product.price, qty)
        amount = gross
        if product.discountable and product.min_unit_price is None and rng.random() < promo_share:
            amount = gross - gross // 10  # the till's own 10 % promo
        lines.append(SimLine(str(i + 1), product, qty, amount))
    return tuple(lines)
