"""``posgw sim faults``: run a :class:`FaultProxy` with its HTTP control endpoint until stopped.

On start it prints one JSON line, ``{"listen": "127.0.0.1:PORT", "upstream": ..., "control":
"http://127.0.0.1:PORT"}``, so a script that asked for port 0 can read the real ports. It stops
cleanly on SIGINT / SIGTERM (Ctrl+C on Windows).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys

from simulators.faults.modes import FaultSettings, Mode


def parse_hostport(text: str) -> tuple[str, int]:
    """``"127.0.0.1:8080"`` / ``"[::1]:80"`` / ``"localhost:0"`` -> (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    host = host.strip("[]") or "127.0.0.1"
    return host, int(port)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--listen", type=parse_hostport, default=("127.0.0.1", 0),
                        help="address clients connect to (default 127.0.0.1:0, any free port)")
    parser.add_argument("--upstream", type=parse_hostport, required=True,
                        help="address the proxy forwards to, HOST:PORT")
    parser.add_argument("--control", type=parse_hostport, default=("127.0.0.1", 0),
                        help="HTTP control endpoint (GET/POST /mode, POST /cut), default 127.0.0.1:0")
    parser.add_argument("--mode", choices=[m.value for m in Mode], default=Mode.PASS.value,
                        help="initial mode (default pass)")
    parser.add_argument("--latency-ms", type=int, default=0, help="latency mode: delay per chunk")
    parser.add_argument("--jitter-ms", type=int, default=0, help="latency mode: extra random 0..N ms")
    parser.add_argument("--flap-ms", type=int, default=500, help="flap mode: length of the up phase")
    parser.add_argument("--flap-down-ms", type=int, default=0,
                        help="flap mode: length of the outage (default: same as --flap-ms)")


async def serve(args: argparse.Namespace, stopping: asyncio.Event) -> None:
    """Run proxy + control until ``stopping`` is set."""
    from simulators.faults.control import ControlServer
    from simulators.faults.proxy import FaultProxy

    settings = FaultSettings(mode=Mode(args.mode), latency_ms=args.latency_ms, jitter_ms=args.jitter_ms,
                             flap_ms=args.flap_ms, flap_down_ms=args.flap_down_ms)
    proxy = FaultProxy(*args.listen, *args.upstream, settings=settings)
    await proxy.start()
    control = ControlServer(proxy, *args.control)
    try:
        await control.start()
        print(json.dumps({"listen": proxy.address, "upstream": "{}:{}".format(*args.upstream),
                          "control": control.url}), flush=True)
        await stopping.wait()
    finally:
        await control.stop()
        await proxy.stop()


def run(args: argparse.Namespace) -> int:
    async def main() -> None:
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, AttributeError):  # Windows
                loop.add_signal_handler(sig, stopping.set)
        await serve(args, stopping)

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
    except (OSError, ValueError) as exc:
        print(f"posgw sim faults: {exc}", file=sys.stderr)
        return 1
    return 0
