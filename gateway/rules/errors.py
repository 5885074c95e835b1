"""The rule engine's own error: a problem in a program file.

The rules are pure and shared with the simulators, so they import nothing from the daemon;
where the gateway loads a program (``posgw core``), a :class:`ProgramError` is translated
into :class:`gateway.errors.ConfigError` at that boundary
(:func:`gateway.commands.core.config_error`).
"""

from __future__ import annotations


class ProgramError(Exception):
    """A problem in a program file: ``file``, ``key`` (path such as ``tiers[2].cap_pct``),
    ``problem`` and ``fix``; ``str()`` is ``"file: key: problem (fix: fix)"``."""

    def __init__(self, file: str, key: str, problem: str, fix: str) -> None:
        self.file, self.key, self.problem, self.fix = file, key, problem, fix
        super().__init__(f"{file}: {key}: {problem} (fix: {fix})")
