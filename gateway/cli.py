"""The ``posgw`` command line: one subcommand per module in :mod:`gateway.commands`.

Subcommand modules are imported lazily so ``posgw check-config`` does not pay for gRPC,
and the CLI is the only place in ``gateway`` that reaches ``drivers`` and ``simulators``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# name -> (module under gateway.commands, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("run", "run the gateway daemon"),
    "check-config": ("check_config", "validate a gateway config file and report every problem"),
    "queue": ("queue", "list / show / retry / resolve events in the operator queue"),
    "outbox": ("outbox", "salvage a damaged outbox file; acknowledge a salvage (ack-salvage)"),
    "core": ("core", "run the reference loyalty core (or --check-program FILE)"),
    "sim": ("sim", "run a till / device simulator against a running gateway"),
    "demo": ("demo", "run the whole system on embedded defaults and print what happened"),
    "report": ("report", "print the core's analytics report for a period"),
    "devices": ("devices", "list serial ports with USB ids and a likely role (scanner, display)"),
    "cert": ("cert", "make the shop's local CA and the gateway's HTTPS certificate"),
    "install": ("install", "put the user, directories, keys, config and unit in place (scripts/install.sh)"),
    "doctor": ("doctor", "check config, listener, devices, core, TLS, clock, disk, outbox and permissions"),
    "moysklad": ("moysklad", "register the gateway's base URL and a new token with MoySklad (Vendor API)"),
}


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="posgw", description="POS loyalty gateway")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    wanted = next((a for a in argv if not a.startswith("-")), None)
    for name, (module_name, help_text) in COMMANDS.items():
        sp = sub.add_parser(name, help=help_text)
        if name == wanted:
            module = importlib.import_module(f"gateway.commands.{module_name}")
            module.add_arguments(sp)
            sp.set_defaults(_module=module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(args_list).parse_args(args_list)
    code: int = args._module.run(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
