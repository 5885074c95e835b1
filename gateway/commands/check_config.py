"""``posgw check-config FILE``: print every problem as ``FILE: KEY: problem (fix: ...)``.

Exit status 1 when there is any problem, 0 (and ``OK``) otherwise. Imports no gRPC code.
"""

from __future__ import annotations

import argparse
import sys

from gateway.config import ConfigErrors, load_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE", help="gateway config file (TOML)")


def run(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.file)
    except ConfigErrors as exc:
        for error in exc.errors:
            print(error, file=sys.stdout)
        return 1
    enabled = ", ".join(config.enabled_drivers()) or "none"
    print(f"OK: {args.file} (drivers enabled: {enabled})")
    return 0
