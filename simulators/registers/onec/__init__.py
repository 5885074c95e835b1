"""A 1C till calling the gateway's Manzana-shaped SOAP service through zeep (never imports drivers)."""

from simulators.registers.onec.till import Misbehaviour, OneCConfig, run_tills

__all__ = ["Misbehaviour", "OneCConfig", "run_tills"]
