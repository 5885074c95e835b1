"""``posgw sim scanner``: a customer's QR scanner on a pty pair: scans codes into a running gateway.

The ``scanner`` device of ``posgw sim devices`` (see simulators.devices.cli).
"""

from __future__ import annotations

import argparse

from simulators.devices import cli


def add_arguments(parser: argparse.ArgumentParser) -> None:
    cli.add_scanner_arguments(parser)


def run(args: argparse.Namespace) -> int:
    return cli.run_scanner(args)
