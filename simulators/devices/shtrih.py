"""A Shtrih-M fiscal register's link (protocol v1) for the read-only commands: ENQ/ACK/NAK, LRC
checks, answers to ``FC`` (device type), ``10`` (short status) and ``11`` (full status, short
here), in a chosen mode (shift closed / open / over 24 h, document open, printing). Written from
the protocol notes, not from drivers.serial.shtrih.

Faults to inject: ``silent`` (no link), ``filler`` (FF bytes before each reply), ``nak_frames``
(refuse the next N command frames), ``bad_lrc_answers`` (the next N answers carry a wrong LRC;
each NAK from the host gets it again, correct), ``stale`` (an unread answer waits: ENQ gets ACK
and that answer), ``error`` (answer every command with this error code, e.g. 0x4F, 0x50).
:meth:`ShtrihSim.receive` takes what the host wrote and returns what the register sends back.
"""

from __future__ import annotations

from dataclasses import dataclass, field

STX, ENQ, ACK, NAK, FILL = 0x02, 0x05, 0x06, 0x15, 0xFF
PASSWORDS = (30, 1)  # administrator, cashier (factory defaults)


def xor(data: bytes) -> int:
    out = 0
    for b in data:
        out ^= b
    return out


def answer_frame(body: bytes, *, corrupt: bool = False) -> bytes:
    raw = bytes([len(body)]) + body
    return bytes([STX]) + raw + bytes([xor(raw) ^ (0x5A if corrupt else 0)])


@dataclass
class ShtrihSim:
    mode: int = 4  # shift closed
    submode: int = 0
    operator: int = 30
    silent: bool = False
    filler: bool = False
    nak_frames: int = 0
    bad_lrc_answers: int = 0
    stale: bytes = b""  # an answer body nobody read
    error: int = 0
    commands: list[int] = field(default_factory=list)  # every command answered
    naks_sent: int = 0
    _buf: bytearray = field(default_factory=bytearray)
    _last: bytes = b""  # the last answer body (sent again on NAK)

    def receive(self, data: bytes) -> bytes:
        out = bytearray()
        self._buf += data
        while self._buf:
            b = self._buf[0]
            if self.silent:
                self._buf.clear()
                break
            if b == ENQ:
                del self._buf[0]
                out += self._fill()
                if self.stale:
                    self._last, self.stale = self.stale, b""
                    out += bytes([ACK]) + answer_frame(self._last)
                else:
                    out += bytes([NAK])
            elif b == ACK:
                del self._buf[0]
            elif b == NAK:
                del self._buf[0]
                if self._last:
                    out += answer_frame(self._last)
            elif b == STX:
                if len(self._buf) < 2 or len(self._buf) < int(self._buf[1]) + 3:
                    break  # wait for the rest of the frame
                n = self._buf[1]
                raw = bytes(self._buf[1:n + 2])
                got_lrc = self._buf[n + 2]
                del self._buf[:n + 3]
                if xor(raw) != got_lrc or self.nak_frames > 0:
                    self.nak_frames = max(0, self.nak_frames - 1)
                    self.naks_sent += 1
                    out += bytes([NAK])
                    continue
                self._last = self._answer(raw[1:])
                corrupt = self.bad_lrc_answers > 0
                self.bad_lrc_answers = max(0, self.bad_lrc_answers - 1)
                out += bytes([ACK]) + self._fill() + answer_frame(self._last, corrupt=corrupt)
            else:
                del self._buf[0]  # noise
        return bytes(out)

    def _fill(self) -> bytes:
        return b"\xff\xff" if self.filler else b""

    def _answer(self, body: bytes) -> bytes:
        cmd = body[0]
        if cmd == 0xFF and len(body) > 1:
            cmd = 0xFF00 | body[1]
        self.commands.append(cmd)
        head = body[:2] if cmd > 0xFF else body[:1]
        if self.error:
            return head + bytes([self.error])
        if cmd == 0xFC:
            return head + bytes([0, 0, 0, 1, 0, 0, 0]) + "ШТРИХ-М-ФР-К".encode("cp1251")
        if cmd in (0x10, 0x11):
            password = int.from_bytes(body[1:5], "little")
            if password not in PASSWORDS:
                return head + bytes([0x4F])
            return head + bytes([0, self.operator, 0, 0, self.mode, self.submode]) + bytes(9)
        return head + bytes([0x37])  # command not supported by this simulator
