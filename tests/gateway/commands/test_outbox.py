"""``posgw outbox salvage`` / ``ack-salvage`` and ``posgw queue`` on a damaged file, via the CLI."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.outbox import Outbox
from tests.gateway.test_salvage import make_damaged


def test_salvage_by_hand_exit_1_when_rows_were_lost(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    damaged = tmp_path / "o.db"
    make_damaged(damaged)
    before = damaged.read_bytes()
    assert main(["outbox", "salvage", str(damaged), "--into", str(tmp_path / "new.db")]) == 1
    out = capsys.readouterr().out
    assert "salvaged (" in out and "lost" in out and "rows were lost" in out
    assert damaged.read_bytes() == before and (tmp_path / "new.db").is_file()


def test_salvage_by_hand_exit_0_when_everything_was_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    sound = tmp_path / "o.db"
    make_damaged(sound, n=5, smash=())
    assert main(["outbox", "salvage", str(sound)]) == 0  # default: FILE.salvaged
    assert "5 salvaged (5 pending" in capsys.readouterr().out
    assert (tmp_path / "o.db.salvaged").is_file()


def test_salvage_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["outbox", "salvage", str(tmp_path / "missing.db")]) == 2
    make_damaged(tmp_path / "o.db", n=1, smash=())
    (tmp_path / "taken.db").write_text("x")
    assert main(["outbox", "salvage", str(tmp_path / "o.db"), "--into", str(tmp_path / "taken.db")]) == 2
    assert "exists" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["outbox", "salvage"])
    assert info.value.code == 2


def test_ack_salvage_by_hand(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "o.db"
    make_damaged(path)

    async def open_close() -> None:  # the daemon's open: salvages, moves aside, records the report
        await (await Outbox.open(path)).close()

    asyncio.run(open_close())
    assert main(["outbox", "ack-salvage", "--outbox", str(path)]) == 0
    assert "1 salvage report(s) acknowledged" in capsys.readouterr().out
    assert main(["outbox", "ack-salvage", "--outbox", str(path)]) == 1
    assert "nothing to acknowledge" in capsys.readouterr().out
    assert main(["outbox", "ack-salvage"]) == 2


def test_queue_on_a_damaged_file_suggests_the_salvage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "o.db"
    make_damaged(path)
    before = path.read_bytes()
    assert main(["queue", "--outbox", str(path), "list"]) == 1
    err = capsys.readouterr().err
    assert "is damaged" in err and f"posgw outbox salvage {path} --into NEW" in err
    assert "Traceback" not in err and path.read_bytes() == before


def test_queue_on_a_directory_names_the_fix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "o.db").mkdir()
    assert main(["queue", "--outbox", str(tmp_path / "o.db"), "list"]) == 1
    assert "is a directory" in capsys.readouterr().err and (tmp_path / "o.db").is_dir()
