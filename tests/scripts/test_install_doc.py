"""docs/INSTALL.md stays true: every posgw command in its shell blocks parses with today's CLI,
the scripts it runs exist, and every test it names exists (down to the test function)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from gateway.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "INSTALL.md").read_text(encoding="utf-8")


def commands() -> list[list[str]]:
    out: list[list[str]] = []
    for block in re.findall(r"```sh\n(.*?)```", DOC, flags=re.S):
        for line in block.splitlines():
            for part in line.split("&&"):
                words = shlex.split(part.strip())
                if words:
                    out.append(words)
    return out


def test_every_posgw_command_parses() -> None:
    posgw = [words[1:] for words in commands() if words[0] == "posgw"]
    assert len(posgw) >= 3  # cert, check-config, doctor
    for args in posgw:
        parsed = build_parser(args).parse_args(args)  # exits (fails the test) on an unknown option
        assert parsed.command == args[0]


def test_scripts_exist() -> None:
    scripts = [words[0] for words in commands() if words[0].startswith("scripts/")]
    assert scripts == ["scripts/install.sh"]
    for script in scripts:
        assert (ROOT / script).is_file()


def test_named_tests_exist() -> None:
    named = set(re.findall(r"`(tests/[\w/]+\.py)(?:::(\w+))?`", DOC))
    assert len(named) >= 6
    for path, function in named:
        text = (ROOT / path).read_text(encoding="utf-8")
        if function:
            assert f"def {function}(" in text, f"{path}::{function}"
