"""``posgw sim display``: a customer display on a pty pair: prints the screen as the gateway paints it.

The ``display`` device of ``posgw sim devices`` (see simulators.devices.cli).
"""

from __future__ import annotations

import argparse

from simulators.devices import cli


def add_arguments(parser: argparse.ArgumentParser) -> None:
    cli.add_display_arguments(parser)


def run(args: argparse.Namespace) -> int:
    return cli.run_display(args)
