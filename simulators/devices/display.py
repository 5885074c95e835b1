"""A 2×20 customer display as a person sees it: bytes in (Epson ESC/POS-like, CD5220 or ANSI
commands), two lines of text out.

:class:`DisplayModel` keeps a framebuffer of ``ROWS`` × ``WIDTH`` bytes and a cursor; printable
bytes are written at the cursor in overwrite mode (past the last column the cursor goes to the
start of the next line, after the last line to the first); a command it does not know is kept in
:attr:`DisplayModel.unknown` (the test decides whether that is a failure) and skipped. A command
split across reads is completed by the next :meth:`DisplayModel.feed`. Text is decoded with the
display's character table (cp866 by default).
"""

from __future__ import annotations

from dataclasses import dataclass, field

WIDTH = 20
ROWS = 2
ESC, US, CLR, CAN, CR, LF, BS = 0x1B, 0x1F, 0x0C, 0x18, 0x0D, 0x0A, 0x08


class _Incomplete(Exception):
    """The buffer ends inside a command: wait for more bytes."""


@dataclass
class DisplayModel:
    command_set: str = "epson"  # epson | cd5220 | ansi
    encoding: str = "cp866"
    cells: list[bytearray] = field(default_factory=lambda: [bytearray(b" " * WIDTH) for _ in range(ROWS)])
    row: int = 0
    col: int = 0
    unknown: list[bytes] = field(default_factory=list)  # commands not understood (skipped)
    resets: int = 0  # ESC @ seen
    table: int | None = None  # the character table selected (ESC t n / ESC R n)
    _pending: bytearray = field(default_factory=bytearray)
    _line_write: int | None = None  # CD5220 ESC Q A/B: the row being written until CR

    def lines(self) -> tuple[str, str]:
        """The two lines as text (trailing spaces kept: a display shows exactly 20 cells)."""
        return (self.cells[0].decode(self.encoding, errors="replace"),
                self.cells[1].decode(self.encoding, errors="replace"))

    def text(self) -> tuple[str, str]:
        """The two lines without trailing spaces."""
        first, second = self.lines()
        return (first.rstrip(), second.rstrip())

    def feed(self, data: bytes) -> None:
        self._pending += data
        buf = self._pending
        i = 0
        while i < len(buf):
            try:
                i = self._one(buf, i)
            except _Incomplete:
                break
        del buf[:i]

    # ------------------------------------------------------------ one command or character

    def _one(self, buf: bytearray, i: int) -> int:
        b = buf[i]
        if self._line_write is not None and b != CR and b != ESC:
            self._put(b)
            return i + 1
        if b == ESC:
            return self._esc(buf, i)
        if b == US and self.command_set == "epson":
            return self._us(buf, i)
        if b == CLR:
            self._clear()
        elif b == CAN:
            self.cells[self.row][:] = b" " * WIDTH
            self.col = 0
        elif b == CR:
            if self._line_write is not None:
                self._line_write = None
            self.col = 0
        elif b == LF:
            self.row = (self.row + 1) % ROWS
        elif b == BS:
            self.col = max(0, self.col - 1)
        elif b >= 0x20:
            self._put(b)
        else:
            self.unknown.append(bytes([b]))
        return i + 1

    def _need(self, buf: bytearray, i: int, n: int) -> bytes:
        if len(buf) < i + n:
            raise _Incomplete
        return bytes(buf[i:i + n])

    def _esc(self, buf: bytearray, i: int) -> int:
        cmd = self._need(buf, i, 2)[1]
        if cmd == ord("@") and self.command_set != "ansi":
            self._clear()
            self.resets += 1
            self._line_write = None
            return i + 2
        if cmd == ord("t") and self.command_set != "ansi":
            self.table = self._need(buf, i, 3)[2]
            return i + 3
        if self.command_set == "cd5220":
            if cmd == ord("Q"):
                which = self._need(buf, i, 3)[2]
                if which in (ord("A"), ord("B")):
                    self._line_write = 0 if which == ord("A") else 1
                    self.row, self.col = self._line_write, 0
                    self.cells[self.row][:] = b" " * WIDTH
                    return i + 3
            if cmd == ord("l"):
                x, y = self._need(buf, i, 4)[2:4]
                self._move(x, y)
                return i + 4
            if cmd in (0x11, 0x12, 0x13):  # overwrite / vertical / horizontal scroll mode
                return i + 2
            if cmd in (ord("_"), ord("*")):  # cursor on/off, brightness
                self._need(buf, i, 3)
                return i + 3
        if self.command_set == "ansi":
            if cmd == ord("["):
                return self._csi(buf, i)
            if cmd == ord("R"):
                self.table = self._need(buf, i, 3)[2]
                return i + 3
        self.unknown.append(bytes(buf[i:i + 2]))
        return i + 2

    def _csi(self, buf: bytearray, i: int) -> int:
        j = i + 2
        while True:
            if j >= len(buf):
                raise _Incomplete
            if 0x40 <= buf[j] <= 0x7E:
                break
            if j - i > 16:
                self.unknown.append(bytes(buf[i:j]))
                return j
            j += 1
        params = bytes(buf[i + 2:j]).decode("ascii", errors="replace").split(";")
        final = chr(buf[j])
        nums = [int(p) if p.isdigit() else 0 for p in params]
        if final == "J" and nums[0] == 2:
            self._clear()
        elif final == "H":
            r = nums[0] if nums and nums[0] else 1
            c = nums[1] if len(nums) > 1 and nums[1] else 1
            self._move(c, r)
        elif final == "K" and nums[0] == 0:
            self.cells[self.row][self.col:] = b" " * (WIDTH - self.col)
        else:
            self.unknown.append(bytes(buf[i:j + 1]))
        return j + 1

    def _us(self, buf: bytearray, i: int) -> int:
        cmd = self._need(buf, i, 2)[1]
        if cmd == ord("$"):
            x, y = self._need(buf, i, 4)[2:4]
            self._move(x, y)
            return i + 4
        if cmd in (0x01, 0x02, 0x03):  # overwrite / vertical / horizontal scroll mode
            return i + 2
        if cmd in (ord("C"), ord("X")):  # cursor on/off, brightness
            self._need(buf, i, 3)
            return i + 3
        self.unknown.append(bytes(buf[i:i + 2]))
        return i + 2

    # ------------------------------------------------------------ the framebuffer

    def _clear(self) -> None:
        for row in self.cells:
            row[:] = b" " * WIDTH
        self.row = self.col = 0

    def _move(self, x: int, y: int) -> None:
        if not (1 <= x <= WIDTH and 1 <= y <= ROWS):
            self.unknown.append(f"cursor {x},{y} off screen".encode())
            return
        self.col, self.row = x - 1, y - 1

    def _put(self, b: int) -> None:
        if self._line_write is not None:
            if self.col < WIDTH:
                self.cells[self._line_write][self.col] = b
                self.col += 1
            return
        self.cells[self.row][self.col] = b
        self.col += 1
        if self.col >= WIDTH:
            self.col = 0
            self.row = (self.row + 1) % ROWS
