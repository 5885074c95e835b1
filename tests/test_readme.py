"""README.md stays true: every ``.venv/bin/posgw ...`` command it shows (code blocks and inline
code, the newcomer's path included) parses with today's CLI, down to a simulator's own options."""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

from gateway.cli import build_parser
from gateway.commands.sim import load

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def commands() -> list[list[str]]:
    """The argument lists after ``.venv/bin/posgw``: placeholders filled, optional parts dropped,
    commands with elided arguments (``...``) or alternatives (``a|b``) left out."""
    found = re.findall(r"`\.venv/bin/posgw ([^`]+)`", README)  # inline code, may wrap lines
    for block in re.findall(r"```sh\n(.*?)```", README, flags=re.S):
        found += re.findall(r"^\.venv/bin/posgw (.+?)(?:\s+#.*)?$", block, flags=re.M)
    out = []
    for text in found:
        text = re.sub(r"\[[^\]]*\]", "", " ".join(text.split()))  # [--optional parts]
        text = re.sub(r"<[^>]*>", "KEY", text)  # <your key>
        if "..." in text or "…" in text or re.search(r"\w\|\w", text):
            continue
        out.append(shlex.split(text))
    return out


def test_every_readme_command_parses() -> None:
    cmds = commands()
    names = {args[0] for args in cmds}
    assert {"core", "run", "check-config", "queue", "sim", "report"} <= names, names
    assert any(args[:3] == ["core", "customer", "add"] for args in cmds)
    for args in cmds:
        parsed = build_parser(args).parse_args(args)  # SystemExit (the test fails) on a bad option
        assert parsed.command == args[0]
        if args[0] == "sim":
            sim = argparse.ArgumentParser(prog=f"posgw sim {parsed.simulator}")
            load(parsed.simulator).add_arguments(sim)
            sim.parse_args(parsed.sim_args)
