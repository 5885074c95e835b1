"""Shtrih-M fiscal register, protocol v1, read-only: frames, the link dialogue, the short status.

Frames (pure): ``STX LEN CMD DATA LRC``; LEN counts CMD and DATA (at most 255); LRC is the XOR of
LEN, CMD and DATA; integers little-endian; two-byte commands start with ``FF``. Only read-only
commands are built here (``FC`` device type, ``10`` short status): nothing that sells, closes,
cancels or prints.

Link (:func:`request`, synchronous, run in the port's worker thread): send ENQ; ``NAK`` means
idle (send the frame), ``ACK`` means an unread answer waits (read it, ACK it, start again), no
answer means no link. After the frame: ``ACK`` (a ``NAK`` resends, at most :data:`RETRIES`
times), then ``STX`` within the command's answer deadline, the rest within
:data:`BYTE_TIMEOUT_S` a byte; a good LRC is ACKed, a bad one NAKed (the register resends).
``FF`` filler before STX is skipped. :class:`LinkError` says which step failed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

STX, ENQ, ACK, NAK, FILL = 0x02, 0x05, 0x06, 0x15, 0xFF
RETRIES = 3
BYTE_TIMEOUT_S = 0.05
ENQ_TIMEOUT_S = 0.3
ANSWER_TIMEOUT_S = 5.0  # a short status can wait for the printer
MODES = {  # the low nibble of the mode byte
    0: "ready", 1: "data output", 2: "shift open", 3: "shift open over 24 h", 4: "shift closed",
    5: "blocked (wrong tax inspector password)", 6: "waiting for the date", 7: "decimal point change",
    8: "document open", 9: "technological reset allowed", 10: "test run", 11: "full fiscal report",
    12: "long electronic journal report", 13: "non-fiscal document", 14: "printing a slip",
    15: "slip ready",
}
ERRORS = {0x00: "", 0x4F: "wrong password", 0x50: "still printing the previous command",
          0x58: "waiting for the continue-print command"}


class LinkError(Exception):
    """The register did not answer as the protocol says (nothing was changed on it)."""


def lrc(data: bytes) -> int:
    out = 0
    for b in data:
        out ^= b
    return out


def frame(cmd: int, data: bytes = b"") -> bytes:
    """One frame; ``cmd`` above 0xFF is a two-byte command (``0xFFxx``), sent big-endian."""
    body = (cmd.to_bytes(2, "big") if cmd > 0xFF else bytes([cmd])) + data
    if len(body) > 255:
        raise ValueError("a frame carries at most 255 bytes of command and data")
    return bytes([STX, len(body)]) + body + bytes([lrc(bytes([len(body)]) + body)])


def short_status_request(password: int) -> bytes:
    return frame(0x10, password.to_bytes(4, "little"))


def device_type_request() -> bytes:
    return frame(0xFC)


@dataclass(frozen=True, slots=True)
class ShortStatus:
    error: int
    operator: int
    mode: int  # the whole mode byte; mode & 0x0F is the state (MODES)
    submode: int

    @property
    def state(self) -> str:
        return MODES.get(self.mode & 0x0F, f"mode {self.mode & 0x0F}")

    @property
    def problem(self) -> str:
        """What an operator must act on; "" when the register is fine."""
        if self.error:
            return f"error {self.error:#04x}: {ERRORS.get(self.error, 'see the register manual')}"
        if self.mode & 0x0F == 3:
            return "the shift is open over 24 hours: close it (Z report) before the next sale"
        if self.mode & 0x0F == 5:
            return "the register is blocked (wrong tax inspector password)"
        return ""


def parse_short_status(body: bytes) -> ShortStatus:
    """``body`` = CMD + DATA of the answer to ``10``; ValueError when it is not one."""
    if len(body) < 2 or body[0] != 0x10:
        raise ValueError("not an answer to the short status command")
    data = body[1:]
    if data[0] != 0:
        return ShortStatus(data[0], 0, 0, 0)
    if len(data) < 6:
        raise ValueError("short status answer too short")
    return ShortStatus(0, data[1], data[4], data[5])


# ------------------------------------------------------------------ the link, in the port's thread


def _read(port: Any, n: int, timeout_s: float) -> bytes:
    port.timeout = timeout_s
    return bytes(port.read(n))


def _answer(port: Any, deadline_s: float) -> bytes:
    """CMD + DATA of one answer frame (after STX has been read); ACKed when its LRC is good."""
    for _ in range(RETRIES):
        length = _read(port, 1, BYTE_TIMEOUT_S)
        if not length:
            raise LinkError("answer cut after STX")
        rest = _read(port, length[0] + 1, max(BYTE_TIMEOUT_S, BYTE_TIMEOUT_S * (length[0] + 1)))
        if len(rest) != length[0] + 1:
            raise LinkError("answer cut short")
        if lrc(length + rest[:-1]) == rest[-1]:
            port.write(bytes([ACK]))
            return rest[:-1]
        port.write(bytes([NAK]))  # bad LRC: the register sends it again
        if not _wait_stx(port, deadline_s):
            break
    raise LinkError("answer with a bad checksum")


def _wait_stx(port: Any, timeout_s: float) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        b = _read(port, 1, min(0.1, max(0.001, end - time.monotonic())))
        if b and b[0] == STX:
            return True  # anything else (FF filler, noise) is skipped
    return False


def request(port: Any, request_frame: bytes, *, answer_timeout_s: float = ANSWER_TIMEOUT_S) -> bytes:
    """Send ``request_frame`` by the link rules; CMD + DATA of its answer. LinkError otherwise."""
    for _ in range(RETRIES + 1):
        port.reset_input_buffer()
        port.write(bytes([ENQ]))
        got = _read(port, 1, ENQ_TIMEOUT_S)
        while got and got[0] == FILL:
            got = _read(port, 1, ENQ_TIMEOUT_S)
        if not got:
            raise LinkError("no answer to ENQ: no link with the register")
        if got[0] == ACK:  # an earlier answer nobody read: take it and start again
            if _wait_stx(port, ANSWER_TIMEOUT_S):
                _answer(port, ANSWER_TIMEOUT_S)
            continue
        if got[0] != NAK:
            raise LinkError(f"unexpected {got.hex()} after ENQ")
        for _ in range(RETRIES):
            port.write(request_frame)
            ack = _read(port, 1, ENQ_TIMEOUT_S)
            if ack and ack[0] == ACK:
                break
            if not ack:
                raise LinkError("the register did not acknowledge the command")
        else:
            raise LinkError("the register refused the command frame (NAK) three times")
        if not _wait_stx(port, answer_timeout_s):
            raise LinkError("no answer within the command's deadline")
        return _answer(port, answer_timeout_s)
    raise LinkError("the register kept offering old answers")


def short_status(port: Any, password: int) -> ShortStatus:
    """The register's short status (read-only), in the port's thread."""
    return parse_short_status(request(port, short_status_request(password)))
