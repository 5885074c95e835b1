"""A fake 1C publication of the LoyaltyFeed web service (exchange-plan receipts) for the onec_pull
driver, and the CLI that runs one (never imports drivers)."""

from simulators.registers.onec_pull.publication import FakePublication

__all__ = ["FakePublication"]
