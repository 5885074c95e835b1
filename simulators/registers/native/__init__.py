"""Till simulator for the gateway's native JSON API (``/v1/native/...``) and its load generator.

Python API: :func:`run_tills` → :class:`SimReport`; CLI: ``posgw sim native``. Builds its
requests from GATEWAY_API.md's description of the wire, never from ``drivers/native``.
"""

from __future__ import annotations

from simulators.registers.native.load import RateLimiter, run_tills
from simulators.registers.native.receipts import AnswerError, Applied, TillReceipt, apply_answer
from simulators.registers.native.report import Ack, SimReport
from simulators.registers.native.till import Misbehaviour, Till, TillConfig

__all__ = [
    "Ack",
    "AnswerError",
    "Applied",
    "Misbehaviour",
    "RateLimiter",
    "SimReport",
    "Till",
    "TillConfig",
    "TillReceipt",
    "apply_answer",
    "run_tills",
]
