"""SBIS (Saby) Retail: fiscal documents pulled from the SBIS OFD cloud (plain metadata; see README.md)."""

NAME = "sbis"
TITLE = "SBIS / Saby (fiscal documents polled from the OFD cloud)"
SHAPE = "poll"  # no routes: run() polls the cloud with a per-drive cursor
DELIVERY = "polled after the fact; the cursor advances only after the durable write; applied once by FN + FD"
