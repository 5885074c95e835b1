"""The serial wire, pure: what a scanner's frame means, and the bytes a customer display takes.

Scanner (frames are already split on the terminators by :class:`gateway.device.FrameSplitter`,
before any decoding):

- a frame is ASCII text or it is not a loyalty code (a binary or UTF-8 payload is ``unknown``);
  an AIM symbology prefix (``]Q1``, ``]d2``, ``]E0``: ``]`` and two characters) is dropped when
  asked; surrounding spaces are dropped;
- the first pattern whose regex is found decides: ``ignore`` (product and marking codes: nothing
  happens), else a customer identifier of that kind (the group named ``id`` or the whole text;
  a phone is written ``+7`` and its ten digits); an ``ean13`` check that fails makes the scan
  ``malformed``; no pattern: ``unknown``.

Display (a 2×20 character display; every repaint writes both whole lines):

- text is encoded in the display's single-byte table; a character the table lacks is replaced
  by :data:`REPLACEMENTS` (₽ -> р., typographic quotes -> ", dashes -> -, ...), then by ``?``;
  each line is then padded with spaces or cut to exactly ``WIDTH`` bytes (never relying on wrap,
  so nothing of an earlier screen stays lit);
- :func:`opening` is sent once after each open (it resets the display: ``ESC @`` flickers);
  :func:`paint` moves the cursor explicitly before each line.

Command sets (1-based column x, row y):

==========  ========================  ==========================  ======================
function    epson (ESC/POS-like)      cd5220                      ansi (BA63-style)
==========  ========================  ==========================  ======================
reset       ``1B 40``                 ``1B 40``                   (none)
overwrite   ``1F 01``                 (line writes)               (none)
clear       ``0C``                    ``0C``                      ``1B 5B 32 4A``
table n     ``1B 74 n``               ``1B 74 n``                 ``1B 52 n``
line y      ``1F 24 01 y`` + text     ``1B 51 41|42`` text ``0D`` ``1B 5B y 3B 31 48`` + text
==========  ========================  ==========================  ======================
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from gateway.receipt import CustomerId, IdKind

WIDTH = 20
ROWS = 2
AIM = re.compile(r"^\][A-Za-z][0-9A-Za-z]")

# What a display's table lacks, written with what it has (tried in this order, then "?").
REPLACEMENTS: dict[str, str] = {
    "₽": "р.", "«": '"', "»": '"', "„": '"', "“": '"', "”": '"', "‟": '"', "‘": "'", "’": "'", "‚": "'",
    "—": "-", "–": "-", "‒": "-", "−": "-", "‑": "-", "…": "...", "\u00a0": " ", "\u202f": " ",
    "\u2009": " ", "№": "N", "Ё": "Е", "ё": "е", "×": "x",
}
# The last resort for a table without Cyrillic (cp437): Latin letters, as on a foreign passport.
TRANSLIT: dict[str, str] = dict(zip(
    "абвгдеёжзийклмнопрстуфхцчшщъыьэюя",
    ["a", "b", "v", "g", "d", "e", "e", "zh", "z", "i", "y", "k", "l", "m", "n", "o", "p", "r", "s", "t",
     "u", "f", "kh", "ts", "ch", "sh", "shch", "", "y", "", "e", "yu", "ya"], strict=True))


@dataclass(frozen=True, slots=True)
class PatternRule:
    """A compiled classification pattern (see :class:`drivers.serial.config.Pattern`)."""

    kind: str
    regex: re.Pattern[str]
    check: str = ""


@dataclass(frozen=True, slots=True)
class Scan:
    """What a frame means: ``customer`` (with ``customer`` set), ``ignored``, ``unknown`` or
    ``malformed`` (``reason`` says why, for the log)."""

    outcome: str
    text: str
    customer: CustomerId | None = None
    reason: str = ""


def compile_patterns(patterns: Sequence[tuple[str, str, str]]) -> tuple[PatternRule, ...]:
    """(kind, regex, check) triples -> rules (the config already checked that each compiles)."""
    return tuple(PatternRule(kind, re.compile(regex), check) for kind, regex, check in patterns)


def ean13_ok(digits: str) -> bool:
    """True when the 13 digits end with their EAN-13 check digit."""
    if len(digits) != 13 or not digits.isdigit():
        return False
    total = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(digits[:12]))
    return (10 - total % 10) % 10 == int(digits[12])


def classify(frame: bytes, rules: Sequence[PatternRule], *, strip_aim: bool = True) -> Scan:
    """What ``frame`` (one scan, terminator removed) means (see the module docstring)."""
    try:
        text = frame.decode("ascii")
    except UnicodeDecodeError:
        return Scan("unknown", frame.decode("latin-1"), reason="not ASCII text")
    if strip_aim:
        text = AIM.sub("", text, count=1)
    text = text.strip(" \t")
    if not text:
        return Scan("unknown", text, reason="empty")
    for rule in rules:
        found = rule.regex.search(text)
        if found is None:
            continue
        if rule.kind == "ignore":
            return Scan("ignored", text)
        value = found.groupdict().get("id") or found.group(0)
        if rule.check == "ean13" and not ean13_ok(value):
            return Scan("malformed", text, reason="wrong EAN-13 check digit")
        kind = IdKind(rule.kind)
        if kind == IdKind.PHONE:
            value = "+7" + re.sub(r"\D", "", value)[-10:]
        return Scan("customer", text, CustomerId(kind, value))
    return Scan("unknown", text, reason="matches no pattern")


# ------------------------------------------------------------------ the display


def encode(text: str, encoding: str) -> bytes:
    """``text`` in the display's table, missing characters replaced (see the module docstring)."""
    out = bytearray()
    for ch in text:
        out += _char(ch, encoding)
    return bytes(out)


def _char(ch: str, encoding: str) -> bytes:
    try:
        return ch.encode(encoding)
    except UnicodeEncodeError:
        pass
    if ch in "\r\n\t":
        return b" "
    alternative = REPLACEMENTS.get(ch) or _translit(ch)
    if not alternative:
        return b"?"
    out = bytearray()
    for alt in alternative:
        try:
            out += alt.encode(encoding)
        except UnicodeEncodeError:
            out += _translit(alt).encode(encoding, errors="replace") or b"?"
    return bytes(out)


def _translit(ch: str) -> str:
    """A Cyrillic letter in Latin letters (for a display whose table has no Cyrillic); "" else."""
    low = ch.lower()
    latin = TRANSLIT.get(low, "")
    return latin.capitalize() if latin and ch != low else latin


def fit(text: str, encoding: str, width: int = WIDTH) -> bytes:
    """One display line: encoded, control characters shown as spaces, padded or cut to ``width``."""
    data = bytes(b if b >= 0x20 and b != 0x7F else 0x20 for b in encode(text, encoding))
    return data[:width].ljust(width, b" ")


def opening(command_set: str, code_table: int | None = None) -> bytes:
    """The bytes sent once after the port opens: reset, character table, overwrite mode, clear."""
    if command_set == "ansi":
        table = b"" if code_table is None else b"\x1bR" + bytes([code_table])
        return table + b"\x1b[2J"
    table = b"" if code_table is None else b"\x1bt" + bytes([code_table])
    if command_set == "epson":
        return b"\x1b@" + table + b"\x1f\x01\x0c"
    if command_set == "cd5220":
        return b"\x1b@" + table + b"\x0c"
    raise ValueError(f"unknown command set {command_set!r}")


def paint(command_set: str, line1: bytes, line2: bytes) -> bytes:
    """Both lines (each exactly ``WIDTH`` bytes, see :func:`fit`) with explicit cursor moves."""
    if len(line1) != WIDTH or len(line2) != WIDTH:
        raise ValueError(f"each line must be {WIDTH} bytes")
    if command_set == "epson":
        return b"\x1f$\x01\x01" + line1 + b"\x1f$\x01\x02" + line2
    if command_set == "cd5220":
        return b"\x1bQA" + line1 + b"\r" + b"\x1bQB" + line2 + b"\r"
    if command_set == "ansi":
        return b"\x1b[1;1H" + line1 + b"\x1b[2;1H" + line2
    raise ValueError(f"unknown command set {command_set!r}")


def screen_bytes(command_set: str, encoding: str, lines: tuple[str, str]) -> bytes:
    """A repaint of ``lines`` (see :func:`paint`)."""
    return paint(command_set, fit(lines[0], encoding), fit(lines[1], encoding))
