"""MoySklad Loyalty API 1.0: MoySklad's cloud prices the till's receipts through us (see README.md)."""

NAME = "moysklad"
TITLE = "MoySklad (Loyalty API 1.0: customers, recalc, spending codes, sales, returns, gift cards)"
SHAPE = "push"  # routes under /v1/moysklad/; no poll loop
CALLED_BY = "cloud"  # MoySklad's servers call the registered base URL, never the till on the LAN
DELIVERY = "at-least-once from MoySklad's cloud (resent sales); applied once by the document id"
