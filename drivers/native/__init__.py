"""The gateway's own JSON API for custom tills (plain metadata; see README.md)."""

NAME = "native"
TITLE = "posgw native JSON API"
SHAPE = "push"  # routes under /v1/native/; no poll loop
DELIVERY = "at-least-once from the till; applied once by idempotency key"
