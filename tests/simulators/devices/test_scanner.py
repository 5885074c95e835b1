"""simulators.devices.scanner: frames as a scanner sends them."""

from __future__ import annotations

from simulators.devices.scanner import chunks, frame, garbage


def test_frame_suffixes_and_aim() -> None:
    assert frame("LQ1:K7M2P9XQ4T") == b"LQ1:K7M2P9XQ4T\r"
    assert frame("2770012345601", "crlf") == b"2770012345601\r\n"
    assert frame("x", "none", aim="]Q1") == b"]Q1x"
    assert frame(b"01\x1d93\xff", "lf") == b"01\x1d93\xff\n"


def test_chunks_and_garbage() -> None:
    assert chunks(b"abcdefg", 3) == [b"abc", b"def", b"g"]
    noise = garbage(5000, seed=1)
    assert len(noise) == 5000 and noise == garbage(5000, seed=1)
    assert b"LQ1:" not in noise and not any(c.isdigit() for c in noise.decode("latin-1"))
