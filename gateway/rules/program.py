"""Program configuration: the typed, validated form of ``config/programs/*.toml``.

Owns loading and validation of a program file (the schema, every key with its type, default
and meaning, is documented in ``_parse``; every problem is a :class:`ProgramError` naming file,
key path, problem and fix), and the canonical JSON form used to ship a program to the
gateway's offline policy and to version it (``program_version`` = sha256 of ``program_to_json``).

Invariants: percentages are stored as integer basis points (``rate_pct = 2.5`` -> 250),
money as integer minor units; tiers are sorted by their thresholds; a Program is immutable.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gateway.rules._model import GrantRule, Program, Referral, Tier
from gateway.rules._parse import freeze_extra, parse
from gateway.rules._schema import Collector
from gateway.rules.errors import ProgramError

__all__ = [
    "GrantRule",
    "Program",
    "ProgramError",
    "Referral",
    "Tier",
    "check_program",
    "load_program",
    "program_from_json",
    "program_from_mapping",
    "program_to_json",
    "program_version",
]


def _check(data: Mapping[str, Any], source: str) -> tuple[Program, list[ProgramError]]:
    c = Collector()
    program = parse(data, c)
    return program, [ProgramError(source, key, problem, fix) for key, problem, fix in c.problems]


def program_from_mapping(data: Mapping[str, Any], source: str) -> Program:
    """Validate a parsed program file; the first problem is raised as :class:`ProgramError`."""
    program, errors = _check(data, source)
    if errors:
        raise errors[0]
    return program


def _read(path: str | Path) -> tuple[dict[str, Any] | None, list[ProgramError]]:
    name = str(path)
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh), []
    except FileNotFoundError:
        return None, [ProgramError(name, "(file)", "file not found", "check the path in the gateway config")]
    except OSError as exc:
        return None, [ProgramError(name, "(file)", f"cannot read: {exc.strerror}", "check file permissions")]
    except UnicodeDecodeError:
        return None, [ProgramError(name, "(file)", "not UTF-8 text", "save the file as UTF-8")]
    except tomllib.TOMLDecodeError as exc:
        fix = "correct the syntax at that line"
        return None, [ProgramError(name, "(syntax)", f"invalid TOML: {exc}", fix)]


def load_program(path: str | Path) -> Program:
    """Read and validate a program TOML file; any problem raises :class:`ProgramError`."""
    data, errors = _read(path)
    if data is None:
        raise errors[0]
    return program_from_mapping(data, str(path))


def check_program(path: str | Path) -> list[ProgramError]:
    """Every problem of a program file (empty list: the file is valid)."""
    data, errors = _read(path)
    if data is None:
        return errors
    return _check(data, str(path))[1]


# ----- canonical JSON ------------------------------------------------------------------------


def _tier_json(t: Tier) -> dict[str, Any]:
    return {
        "name": t.name,
        "rate_bp": t.rate_bp,
        "cap_bp": t.cap_bp,
        "min_spent": t.min_spent,
        "min_purchases": t.min_purchases,
        "min_invited": t.min_invited,
    }


def _grant_json(g: GrantRule) -> dict[str, Any]:
    return {
        "kind": g.kind,
        "points": g.points,
        "valid_days": g.valid_days,
        "cap_bp": g.cap_bp,
        "after_days": g.after_days,
        "days_before": g.days_before,
        "platform": g.platform,
        "mode": g.mode,
    }


_SETS = ("no_redeem_skus", "no_redeem_categories", "no_accrue_skus", "no_accrue_categories")
_TUPLES = ("identify", "redeem_with")
_PLAIN = (
    "id",
    "currency",
    "pv",
    "timezone",
    "policy",
    "expiry_days",
    "defer_days",
    "allow_negative_balance",
    "tier_demotion",
    "welcome_points",
    "goods_for_points",
    "reference_discount_bp",
    "included_receipts_per_month",
    "extra_receipt_price",
    "sms_price",
    "line_floor_bp",
    "hold_ttl_s",
    "cashier_award_points",
)


def program_to_json(p: Program) -> str:
    """Canonical JSON (sorted keys, no spaces, UTF-8 text): equal programs give equal text."""
    doc: dict[str, Any] = {k: getattr(p, k) for k in _PLAIN}
    doc.update({k: list(getattr(p, k)) for k in _TUPLES})
    doc.update({k: sorted(getattr(p, k)) for k in _SETS})
    doc["tiers"] = [_tier_json(t) for t in p.tiers]
    doc["grants"] = [_grant_json(g) for g in p.grants]
    doc["referral"] = (
        None
        if p.referral is None
        else {"levels_bp": list(p.referral.levels_bp), "invite_bonus_points": p.referral.invite_bonus_points}
    )
    doc["extra"] = {k: list(v) if isinstance(v, tuple) else v for k, v in p.extra.items()}
    return json.dumps(doc, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def program_from_json(text: str) -> Program:
    """Inverse of :func:`program_to_json` (the JSON is trusted: it was made by that function)."""
    doc = json.loads(text)
    ref = doc["referral"]
    kw: dict[str, Any] = {k: doc[k] for k in _PLAIN}
    kw.update({k: tuple(doc[k]) for k in _TUPLES})
    kw.update({k: frozenset(doc[k]) for k in _SETS})
    return Program(
        **kw,
        tiers=tuple(Tier(**t) for t in doc["tiers"]),
        grants=tuple(GrantRule(**g) for g in doc["grants"]),
        referral=None if ref is None else Referral(tuple(ref["levels_bp"]), ref["invite_bonus_points"]),
        extra=freeze_extra(doc["extra"]),
    )


def program_version(p: Program) -> str:
    """sha256 hex of the canonical JSON: changes whenever any rule changes."""
    return hashlib.sha256(program_to_json(p).encode()).hexdigest()
