"""Evotor terminal simulator: the terminal, our plugin on it, and the Evotor cloud's webhooks.

Python API: :func:`run_tills` → :class:`~simulators.registers.native.report.SimReport`; CLI:
``posgw sim evotor``. Messages follow ``shared/protocols/evotor.md``; never imports ``drivers``.
"""

from __future__ import annotations

from simulators.registers.evotor.messages import AnswerError, Applied, EvReceipt, apply_answer
from simulators.registers.evotor.till import EvotorConfig, EvotorTill, Misbehaviour, run_tills
from simulators.registers.native.report import Ack, SimReport

__all__ = [
    "Ack",
    "AnswerError",
    "Applied",
    "EvReceipt",
    "EvotorConfig",
    "EvotorTill",
    "Misbehaviour",
    "SimReport",
    "apply_answer",
    "run_tills",
]
