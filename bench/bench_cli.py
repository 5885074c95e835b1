"""The command line every gateway benchmark shares: ``--quick``, and one JSON line per figure.

A benchmark is a coroutine factory ``bench(quick, emit)``; :func:`main` parses ``--quick``
(a few requests per figure: the smoke tests' mode), runs it, and :func:`emit` prints each
figure as one JSON object on its own line, flushed at once so a reader sees it as it comes.
Imported as a sibling (the benchmarks run as scripts, so ``bench/`` is on ``sys.path``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

Emit = Callable[[dict[str, Any]], None]


def emit(fig: dict[str, Any]) -> None:
    print(json.dumps(fig, ensure_ascii=False), flush=True)


def main(description: str, quick_help: str, bench: Callable[[bool, Emit], Awaitable[None]],
         argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help=quick_help)
    args = parser.parse_args(argv)
    asyncio.run(bench(args.quick, emit))
    return 0
