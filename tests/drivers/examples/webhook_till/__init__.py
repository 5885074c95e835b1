"""A minimal JSON webhook till, written from drivers/README.md alone (plain metadata).

Test-only: it lives under tests/, so the registry does not discover it; the compliance test
registers it under :data:`NAME` (tests/drivers/examples/test_webhook_till_compliance.py).
"""

NAME = "webhook_till"
TITLE = "Example JSON webhook till"
SHAPE = "push"  # routes under /v1/webhook_till/; no run loop
DELIVERY = "at-least-once from the till; applied once by till + receipt number"
