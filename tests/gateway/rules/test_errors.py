"""gateway.rules.errors: the rule engine's own error, independent of the daemon's."""

from __future__ import annotations

from gateway.errors import GatewayError
from gateway.rules.errors import ProgramError


def test_program_error_names_file_key_problem_and_fix() -> None:
    err = ProgramError("seed.toml", "tiers[1].cap_pct", "above 100", "use 0..100")
    assert (err.file, err.key, err.problem, err.fix) == (
        "seed.toml", "tiers[1].cap_pct", "above 100", "use 0..100")
    assert str(err) == "seed.toml: tiers[1].cap_pct: above 100 (fix: use 0..100)"
    assert not isinstance(err, GatewayError)  # translated at the gateway's boundary, not inherited
