"""``posgw sim devices``: a customer's QR scanner or a customer display on a pty pair, for a running gateway.

``scanner --link PATH --scan CODE ...``: opens a pty pair, points PATH (the ``port`` of a
``[[drivers.serial.devices]]`` scanner) at it, waits until the gateway opens it, sends each scan
(suffix CR, CRLF, LF or none) and exits 0; 1 when the gateway never opened the port (nothing
was scanned). ``display --link PATH``: the same for a display; prints both lines each time the
screen changes, until ``--seconds`` pass (or Ctrl-C); exits 1 when the gateway never opened it
or sent a command the display does not know.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from simulators.devices.display import DisplayModel
from simulators.devices.ptys import DevicePty
from simulators.devices.scanner import SUFFIXES, frame


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="device", required=True)
    add_scanner_arguments(sub.add_parser("scanner", help="scan codes into the gateway"))
    add_display_arguments(sub.add_parser("display", help="show what the gateway paints"))


def add_scanner_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--link", type=Path, default=Path("/tmp/posgw-scanner"),
                   help="symlink to create (the port in the gateway config); default /tmp/posgw-scanner")
    p.add_argument("--scan", action="append", default=[], metavar="CODE", help="a code to scan (repeatable)")
    p.add_argument("--suffix", choices=sorted(SUFFIXES), default="cr")
    p.add_argument("--aim", default="", help="an AIM prefix to send first, e.g. ]Q1")
    p.add_argument("--interval-ms", type=int, default=500, help="pause between scans")
    p.add_argument("--wait-s", type=float, default=30.0, help="how long to wait for the gateway to open it")


def add_display_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--link", type=Path, default=Path("/tmp/posgw-display"),
                   help="symlink to create (the port in the gateway config); default /tmp/posgw-display")
    p.add_argument("--command-set", choices=("epson", "cd5220", "ansi"), default="epson")
    p.add_argument("--encoding", choices=("cp866", "cp1251", "cp437"), default="cp866")
    p.add_argument("--seconds", type=float, default=0.0, help="stop after this long (0: until Ctrl-C)")
    p.add_argument("--wait-s", type=float, default=30.0, help="how long to wait for the gateway to open it")


def run(args: argparse.Namespace) -> int:
    return run_scanner(args) if args.device == "scanner" else run_display(args)


def run_scanner(args: argparse.Namespace) -> int:
    if not args.scan:
        print("posgw sim scanner: give at least one --scan CODE", file=sys.stderr)
        return 2
    pty = DevicePty(args.link)
    try:
        print(f"scanner on {args.link} -> {pty.path}; waiting for the gateway to open it")
        if not pty.wait_peer(args.wait_s):
            print(f"the gateway did not open {args.link} within {args.wait_s} s: nothing scanned",
                  file=sys.stderr)
            return 1
        time.sleep(0.2)  # pyserial flushes its input right after opening
        for i, code in enumerate(args.scan):
            if i:
                time.sleep(args.interval_ms / 1000)
            pty.send(frame(code, args.suffix, args.aim))
            print(f"scanned {code!r}")
        time.sleep(0.1)
        print(f"report: {len(args.scan)} scans sent, 0 to the operator queue (a scan binds, it is no event)")
        return 0
    finally:
        pty.close()


def run_display(args: argparse.Namespace) -> int:
    pty = DevicePty(args.link)
    model = DisplayModel(args.command_set, args.encoding)
    try:
        print(f"display on {args.link} -> {pty.path}; waiting for the gateway to open it")
        if not pty.wait_peer(args.wait_s):
            print(f"the gateway did not open {args.link} within {args.wait_s} s", file=sys.stderr)
            return 1
        end = time.monotonic() + args.seconds if args.seconds else float("inf")
        shown: tuple[str, str] | None = None
        try:
            while time.monotonic() < end:
                data = pty.read()
                if data:
                    model.feed(data)
                    if model.lines() != shown:
                        shown = model.lines()
                        print(f"+{'-' * 20}+\n|{shown[0]}|\n|{shown[1]}|\n+{'-' * 20}+", flush=True)
                else:
                    time.sleep(0.02)
        except KeyboardInterrupt:
            pass
        if model.unknown:
            print(f"unknown commands: {model.unknown[:5]}", file=sys.stderr)
            return 1
        return 0
    finally:
        pty.close()
