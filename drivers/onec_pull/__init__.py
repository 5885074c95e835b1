"""1C configurations that publish their own web service: the gateway pulls closed receipts (plain
metadata; see README.md)."""

NAME = "onec_pull"
TITLE = "1C pull (GetReceipts over the infobase's own SOAP publication, exchange-plan cursor)"
SHAPE = "poll"  # run() polls the 1C publication; no routes
DELIVERY = (
    "at-least-once from the exchange plan (acknowledged with the next call); applied once by document id"
)
