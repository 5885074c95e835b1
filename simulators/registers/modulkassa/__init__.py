"""Modul Kassa register simulator: the register and our loyalty plugin on it.

Python API: :func:`run_tills` → :class:`~simulators.registers.native.report.SimReport`; CLI:
``posgw sim modulkassa``. Messages follow ``shared/protocols/modulkassa.md``; never imports
``drivers``.
"""

from __future__ import annotations

from simulators.registers.modulkassa.messages import AnswerError, apply_impacts
from simulators.registers.modulkassa.till import Misbehaviour, ModulKassaConfig, ModulKassaTill, run_tills
from simulators.registers.native.report import Ack, SimReport

__all__ = [
    "Ack",
    "AnswerError",
    "Misbehaviour",
    "ModulKassaConfig",
    "ModulKassaTill",
    "SimReport",
    "apply_impacts",
    "run_tills",
]
