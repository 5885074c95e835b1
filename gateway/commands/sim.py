"""``posgw sim NAME ...``: run one simulator; NAME picks a module from :data:`SIMULATORS`.

Each simulator module exposes ``add_arguments(parser)`` and ``run(args) -> int``, like a
``gateway.commands`` module. Only the chosen simulator is imported (so ``posgw sim faults``
does not pay for, or break on, another simulator's imports). To add one, add a line to
:data:`SIMULATORS`.
"""

from __future__ import annotations

import argparse
import importlib
from typing import Any

# name -> (module exposing add_arguments/run, one-line help)
SIMULATORS: dict[str, tuple[str, str]] = {
    "native": ("simulators.registers.native.cli", "tills speaking the gateway's native JSON API (load)"),
    "evotor": ("simulators.registers.evotor.cli", "Evotor terminals: plugin events and cloud webhooks"),
    "modulkassa": ("simulators.registers.modulkassa.cli", "Modul Kassa: loyalty plugin and broadcasts"),
    "faults": ("simulators.faults.cli", "TCP fault-injecting proxy with an HTTP control endpoint"),
    "poster": ("simulators.registers.poster.cli", "Poster: platform-app orders and signed webhooks"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    names = "\n".join(f"  {name:<12} {help_text}" for name, (_, help_text) in SIMULATORS.items())
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = f"simulators:\n{names}\n\n`posgw sim NAME --help` for a simulator's options"
    parser.add_argument("simulator", choices=sorted(SIMULATORS), metavar="NAME",
                        help="which simulator: " + ", ".join(SIMULATORS))
    parser.add_argument("sim_args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)


def load(name: str) -> Any:
    """The simulator module called ``name``."""
    return importlib.import_module(SIMULATORS[name][0])


def run(args: argparse.Namespace) -> int:
    name: str = args.simulator
    module = load(name)
    parser = argparse.ArgumentParser(prog=f"posgw sim {name}", description=SIMULATORS[name][1])
    module.add_arguments(parser)
    code: int = module.run(parser.parse_args(args.sim_args))
    return code
