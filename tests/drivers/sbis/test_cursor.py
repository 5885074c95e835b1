"""drivers.sbis.cursor: FD gaps, windows and aging as tables."""

from __future__ import annotations

import pytest

from drivers.sbis.cursor import Cursor, Drive, Gap, advance, age, windows

NOW = 1_000_000.0


def test_a_new_drive_starts_at_its_first_number_and_passes_what_it_took() -> None:
    d = advance(Drive("R", 0.0), [(10, 500.0), (11, 560.0)], NOW)
    assert (d.top, d.gaps, d.start) == (11, (), 560.0)
    assert d.passed(10) and d.passed(11) and not d.passed(12)
    assert d.passed(9)  # before the first number seen: history, not expected


def test_a_fresh_drive_expects_every_number_from_one() -> None:
    d = advance(Drive("R", 0.0, fresh=True), [(3, 500.0)], NOW)
    assert d.gaps == (Gap(1, 2, 0.0, 500.0, NOW),) and not d.passed(1)


def test_skipped_numbers_open_gaps_with_their_neighbours_times_and_close_when_filled() -> None:
    d = advance(Drive("R", 100.0, top=3), [(4, 200.0), (7, 500.0), (9, 700.0)], NOW)
    assert d.gaps == (Gap(5, 6, 200.0, 500.0, NOW), Gap(8, 8, 500.0, 700.0, NOW))
    assert not d.passed(5) and not d.passed(8) and d.passed(7)
    d2 = advance(d, [(5, 300.0)], NOW + 10)
    assert d2.gaps == (Gap(6, 6, 300.0, 500.0, NOW), Gap(8, 8, 500.0, 700.0, NOW))
    d3 = advance(d2, [(6, 350.0), (8, 600.0)], NOW + 20)
    assert d3.gaps == () and d3.top == 9 and d3.start == 700.0


def test_an_unseen_number_above_top_opens_a_gap_from_start() -> None:
    d = advance(Drive("R", 100.0, top=3), [(6, 400.0)], NOW)
    assert d.gaps == (Gap(4, 5, 100.0, 400.0, NOW),)


def test_no_documents_change_nothing_and_missing_times_keep_the_start() -> None:
    d = Drive("R", 100.0, top=3)
    assert advance(d, [], NOW) is d
    assert advance(d, [(4, None)], NOW).start == 100.0


def test_an_absurd_jump_is_one_gap() -> None:
    d = advance(Drive("R", 100.0, top=3), [(10_000_000, 400.0)], NOW)
    assert d.gaps == (Gap(4, 9_999_999, 100.0, 400.0, NOW),)


def test_windows_main_and_gap_windows_on_their_schedule() -> None:
    d = Drive("R", 10_000.0, top=9, gaps=(Gap(5, 6, 2_000.0, 3_000.0, NOW),), checked=NOW - 10)
    spans, recheck = windows(
        d, now_raw=20_000.0, now=NOW, overlap_s=1_000.0, ahead_s=500.0, gap_recheck_s=5.0
    )
    assert recheck and spans == [(9_000.0, 20_500.0), (1_000.0, 4_000.0)]
    spans, recheck = windows(
        d, now_raw=20_000.0, now=NOW, overlap_s=1_000.0, ahead_s=500.0, gap_recheck_s=60.0
    )
    assert not recheck and spans == [(9_000.0, 20_500.0)]


def test_gap_windows_inside_the_main_window_are_not_read_twice() -> None:
    d = Drive("R", 10_000.0, top=9, gaps=(Gap(8, 8, 9_500.0, 9_800.0, NOW),))
    spans, recheck = windows(d, now_raw=20_000.0, now=NOW, overlap_s=1_000.0, ahead_s=0.0, gap_recheck_s=1.0)
    assert recheck and spans == [(9_000.0, 20_000.0), (8_500.0, 9_000.0)]


def test_old_gaps_are_given_up() -> None:
    d = Drive("R", 0.0, top=9, gaps=(Gap(2, 2, 0, 0, NOW - 100), Gap(5, 6, 0, 0, NOW - 1)))
    after, gone = age(d, NOW, 50.0)
    assert gone == [Gap(2, 2, 0, 0, NOW - 100)] and after.gaps == (Gap(5, 6, 0, 0, NOW - 1),)
    assert age(after, NOW, 50.0) == (after, [])


def test_the_cursor_round_trips_canonically_and_refuses_other_text() -> None:
    c = Cursor(5.0, {"F1": Drive("R", 10.0, 7, (Gap(3, 4, 1.0, 2.0, 3.0),), 9.0, True)}).with_drive(
        "F2", Drive("R", 1.0)
    )
    assert Cursor.decode(c.encode()) == c and Cursor.decode(c.encode()).encode() == c.encode()
    for bad in ("", "[]", '{"since": 1}', "12", '{"since":1,"drives":{"F":{"reg":"R"}}}'):
        with pytest.raises(ValueError):
            Cursor.decode(bad)
