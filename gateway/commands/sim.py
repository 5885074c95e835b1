"""``posgw sim NAME ...``: run one simulator; the list is derived from the simulator packages.

A simulator is a package with a ``cli`` module exposing ``add_arguments(parser)`` and
``run(args) -> int``, like a ``gateway.commands`` module: every
``simulators/registers/<name>/cli.py`` (one per driver, named as the driver) and every
``simulators/<name>/cli.py`` (tools such as ``faults``). Its one-line help is the first sentence
of that ``cli`` module's docstring, without the leading ``posgw sim <name>:`` and Sphinx roles.
Nothing is imported to list them (docstrings are read with :mod:`ast`), and only the chosen
simulator is imported (so ``posgw sim faults`` does not pay for, or break on, another
simulator's imports). To add one, add the package: nothing here changes.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import importlib.util
import re
from pathlib import Path
from typing import Any

PACKAGES = ("simulators.registers", "simulators")  # where simulator packages live, in listing order


def _package_dirs(package: str) -> list[Path]:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return []
    return [Path(location) for location in spec.submodule_search_locations]


def summary(cli_file: Path, name: str) -> str:
    """The first sentence of ``cli_file``'s docstring as one line of help (no ``posgw sim name:``
    prefix, ``:class:`X``` written as ``X``, no trailing period); "" without a docstring."""
    doc = ast.get_docstring(ast.parse(cli_file.read_text(encoding="utf-8"))) or ""
    first = doc.split("\n\n")[0].replace("\n", " ").strip()
    first = re.sub(rf"^``posgw sim {re.escape(name)}``:\s*", "", first)
    first = re.sub(r":[a-z]+:`~?([^`]+)`", r"\1", first).replace("``", "")
    sentence = re.split(r"(?<=\.)\s", first, maxsplit=1)[0]
    return sentence.removesuffix(".").strip()


def discover(packages: tuple[str, ...] = PACKAGES) -> dict[str, tuple[str, str]]:
    """name -> (``<package>.<name>.cli``, one-line help) for every simulator package found."""
    found: dict[str, tuple[str, str]] = {}
    for package in packages:
        for location in _package_dirs(package):
            for folder in sorted(location.iterdir()):
                cli = folder / "cli.py"
                if folder.name in found or not (folder / "__init__.py").is_file() or not cli.is_file():
                    continue
                found[folder.name] = (f"{package}.{folder.name}.cli", summary(cli, folder.name))
    return found


# name -> (module exposing add_arguments/run, one-line help), derived from the packages.
SIMULATORS: dict[str, tuple[str, str]] = discover()


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
