"""A customer's 2D scanner in virtual-COM mode: decoded bytes, then a suffix; it never answers.

:func:`frame` is one scan as it goes on the wire; :func:`chunks` splits a scan as a slow USB
link delivers it; :func:`garbage` is a flood of noise (short frames and unterminated bytes) for
the event-loop test.
"""

from __future__ import annotations

import random

SUFFIXES = {"cr": b"\r", "crlf": b"\r\n", "lf": b"\n", "none": b""}


def frame(code: str | bytes, suffix: str = "cr", aim: str = "") -> bytes:
    """One scan: optional AIM prefix (``]Q1``), the payload (text as ASCII/UTF-8, or raw bytes)."""
    payload = code if isinstance(code, bytes) else code.encode("utf-8")
    return aim.encode("ascii") + payload + SUFFIXES[suffix]


def chunks(data: bytes, parts: int) -> list[bytes]:
    """``data`` in ``parts`` nearly equal pieces (a scan split over several reads)."""
    size = max(1, -(-len(data) // parts))
    return [data[i:i + size] for i in range(0, len(data), size)]


def garbage(n_bytes: int, seed: int = 0) -> bytes:
    """``n_bytes`` of noise: printable junk, control bytes and terminators, never a valid code."""
    rnd = random.Random(seed)
    out = bytearray()
    while len(out) < n_bytes:
        out += bytes(rnd.choice(b"#$%&*!?~^") for _ in range(rnd.randint(1, 12)))
        out += rnd.choice([b"\r", b"\n", b"\x00\xff", b""])
    return bytes(out[:n_bytes])
