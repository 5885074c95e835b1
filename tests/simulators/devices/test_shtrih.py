"""simulators.devices.shtrih: the register's side of the link, byte for byte."""

from __future__ import annotations

from simulators.devices.shtrih import ShtrihSim, answer_frame, xor

STATUS_30 = bytes.fromhex("02 05 10 1E 00 00 00 0B")


def test_idle_enq_then_status() -> None:
    sim = ShtrihSim(mode=8)
    assert sim.receive(b"\x05") == b"\x15"
    reply = sim.receive(STATUS_30)
    assert reply == b"\x06" + bytes.fromhex("02 10 10 00 1E 00 00 08 00 00 00 00 00 00 00 00 00 00 16")
    assert sim.receive(b"\x06") == b""


def test_a_frame_in_pieces_bad_lrc_and_nak() -> None:
    sim = ShtrihSim()
    assert sim.receive(STATUS_30[:3]) == b""
    assert sim.receive(STATUS_30[3:]).startswith(b"\x06\x02")
    assert sim.receive(STATUS_30[:-1] + b"\x00") == b"\x15"  # bad LRC
    sim.bad_lrc_answers = 1
    corrupt = sim.receive(STATUS_30)
    assert xor(corrupt[2:-1]) != corrupt[-1]
    again = sim.receive(b"\x15")  # the host NAKs: the same answer, correct
    assert again == answer_frame(sim._last) and xor(again[1:-1]) == again[-1]


def test_faults_and_errors() -> None:
    assert ShtrihSim(silent=True).receive(b"\x05" + STATUS_30) == b""
    assert ShtrihSim(filler=True).receive(b"\x05") == b"\xff\xff\x15"
    assert ShtrihSim(stale=b"\x10\x00").receive(b"\x05") == b"\x06" + answer_frame(b"\x10\x00")
    assert ShtrihSim(error=0x50).receive(STATUS_30) == b"\x06" + answer_frame(b"\x10\x50")
    wrong = bytes.fromhex("02 05 10 63 00 00 00") + bytes([0x05 ^ 0x10 ^ 0x63])
    assert ShtrihSim().receive(wrong) == b"\x06" + answer_frame(b"\x10\x4f")
    assert ShtrihSim().receive(bytes.fromhex("02 01 FC FD"))[2:5] == bytes([0x14, 0xFC, 0])
