"""What every operation of the reference core needs: the database, the program and a clock.

The clock is injected (``now: Callable[[], datetime]`` returning an aware datetime) so tests
never sleep; a request's own ``occurred_at`` / ``at`` wins over the clock when given.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from gateway.rules.program import Program, program_to_json, program_version
from simulators.core.db import Database
from simulators.core.sms import DebugSender, SmsSender

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(UTC)


@dataclass
class Core:
    db: Database
    program: Program
    clock: Clock = system_clock
    sender: SmsSender = field(default_factory=DebugSender)  # confirmation codes go out through it
    program_json: str = field(init=False)
    version: str = field(init=False)

    def __post_init__(self) -> None:
        self.program_json = program_to_json(self.program)
        self.version = program_version(self.program)

    def now(self) -> datetime:
        value = self.clock()
        if value.tzinfo is None:
            raise ValueError("the core's clock must return aware datetimes")
        return value
