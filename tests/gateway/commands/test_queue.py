"""``posgw queue``: list / show / retry / resolve over a real outbox file, via the CLI entry point."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.opqueue import format_age, format_table, queue_json
from gateway.outbox import Outbox
from tests.gateway.outbox_fixtures import refund, sale


async def _seed(path: Path) -> None:
    ob = await Outbox.open(path)
    try:
        s1, s2 = sale("R1", 1), sale("R2", 2)
        for e in (s1, s2, refund("R1", 1, s1.key)):
            await ob.append(e)
        r1, r2, r3 = await ob.next_batch(10)
        await ob.mark_rejected(r1.id, "INSUFFICIENT_POINTS", "points already spent on another till")
        await ob.mark_delivered(r2.id, '{"commit":{"operation_id":"op-1"}}')
        await ob.mark_rejected(r3.id, "UNKNOWN_SALE", "no such sale")
    finally:
        await ob.close()


@pytest.fixture
def outbox_file(tmp_path: Path) -> Path:
    path = tmp_path / "outbox.db"
    asyncio.run(_seed(path))
    return path


def _rows(path: Path) -> dict[int, tuple[str, str]]:
    async def go() -> dict[int, tuple[str, str]]:
        ob = await Outbox.open(path, create=False)
        try:
            out = {}
            for i in range(1, 4):
                row = await ob.get(i)
                assert row is not None
                out[i] = (row.state, row.note)
            return out
        finally:
            await ob.close()

    return asyncio.run(go())


def test_list_table(outbox_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["queue", "--outbox", str(outbox_file), "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["ID", "REGISTER", "KIND", "KEY", "REASON", "AGE"]
    assert [ln.split()[:3] for ln in lines[1:]] == [["1", "R1", "sale"], ["3", "R1", "refund"]]
    assert "INSUFFICIENT_POINTS" in lines[1] and "UNKNOWN_SALE" in lines[2]


def test_list_json_and_option_after_action(outbox_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["queue", "list", "--json", "--outbox", str(outbox_file)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["count"] == 2
    assert [(r["id"], r["reason"], r["last_error"]) for r in data["rejected"]] == [
        (1, "INSUFFICIENT_POINTS", "points already spent on another till"),
        (3, "UNKNOWN_SALE", "no such sale"),
    ]


def test_show(outbox_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["queue", "--outbox", str(outbox_file), "show", "2", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["state"] == "delivered" and data["result"] == {"commit": {"operation_id": "op-1"}}
    assert data["event"]["key"] == sale("R2", 2).key
    assert data["event"]["receipt"]["lines"][0]["amount"] == 10000
    assert main(["queue", "--outbox", str(outbox_file), "show", "1"]) == 0
    out = capsys.readouterr().out
    assert "INSUFFICIENT_POINTS" in out and '"register_id": "R1"' in out


def test_retry_and_resolve(outbox_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["queue", "--outbox", str(outbox_file), "retry", "1"]) == 0
    assert "pending again" in capsys.readouterr().out
    assert main(["queue", "--outbox", str(outbox_file), "resolve", "3", "--note", "refunded in cash"]) == 0
    assert _rows(outbox_file) == {
        1: ("pending", ""), 2: ("delivered", ""), 3: ("resolved", "refunded in cash"),
    }
    # only rejected rows can be changed; unknown ids are reported
    assert main(["queue", "--outbox", str(outbox_file), "retry", "2"]) == 1
    assert "delivered, not rejected" in capsys.readouterr().err
    assert main(["queue", "--outbox", str(outbox_file), "resolve", "99", "--note", "x"]) == 1
    assert "no event with id 99" in capsys.readouterr().err
    assert main(["queue", "--outbox", str(outbox_file), "list"]) == 0
    assert "empty" in capsys.readouterr().out


def test_list_pending_oldest_first_with_totals(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "outbox.db"

    async def seed() -> None:
        ob = await Outbox.open(path)
        try:
            for n in range(1, 5):
                await ob.append(sale("R1", n))
            first, second, *_ = await ob.next_batch(10)
            await ob.mark_delivered(first.id, '{"commit":{}}')
            await ob.append(refund("R9", 1, "native:R9:1:unknown:"))
            (waiting,) = [r for r in await ob.next_batch(10) if r.kind == "refund"]
            assert await ob.mark_waiting(waiting.id, 1, "SALE_NOT_YET_KNOWN",
                                         "the core does not know the sale")
            await ob.note_retry(second.id, "core unavailable")
        finally:
            await ob.close()

    asyncio.run(seed())
    assert main(["queue", "--outbox", str(path), "list", "--pending", "--limit", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("3 pending (oldest ")
    assert "1 waiting for their sale; the oldest 3 shown" in lines[0]
    assert lines[1].split()[:4] == ["ID", "REGISTER", "KIND", "KEY"]
    assert [ln.split()[0] for ln in lines[2:]] == ["2", "3", "5"]  # pending oldest first (limit 2), waiting
    assert "pending: core unavailable" in lines[2] and "waiting: the core does not know the sale" in lines[4]
    assert main(["queue", "--outbox", str(path), "list", "--pending", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["pending"], data["waiting"]) == (3, 1)
    assert [(r["id"], r["state"]) for r in data["shown"]] == [(2, "pending"), (3, "pending"), (4, "pending"),
                                                              (5, "waiting")]
    assert main(["queue", "--outbox", str(path), "list"]) == 0  # the rejected list is unchanged by it
    assert "empty" in capsys.readouterr().out


def test_list_pending_when_everything_was_delivered(
    outbox_file: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["queue", "--outbox", str(outbox_file), "list", "--pending"]) == 0
    assert "nothing waits for delivery" in capsys.readouterr().out


def test_resolve_needs_a_note(outbox_file: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["queue", "--outbox", str(outbox_file), "resolve", "1"])
    assert exc.value.code == 2


def test_config_gives_the_outbox_path(
    outbox_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "posgw.toml"
    cfg.write_text(f'[gateway]\ndata_dir = "{tmp_path / "data"}"\n\n[outbox]\npath = "{outbox_file}"\n')
    assert main(["queue", "--config", str(cfg), "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["count"] == 2
    bad = tmp_path / "bad.toml"
    bad.write_text("[outbox]\nnope = 1\n")
    assert main(["queue", "--config", str(bad), "list"]) == 2
    assert "nope" in capsys.readouterr().err


def test_missing_or_corrupt_outbox_is_not_touched(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "missing.db"
    assert main(["queue", "--outbox", str(missing), "list"]) == 1
    assert "no outbox" in capsys.readouterr().err and not missing.exists()
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"garbage" * 1000)
    assert main(["queue", "--outbox", str(junk), "list"]) == 1
    assert junk.read_bytes() == b"garbage" * 1000
    assert list(tmp_path.glob("junk.db.corrupt-*")) == []


def test_needs_a_source(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["queue", "list"]) == 2
    assert "--config" in capsys.readouterr().err


async def test_queue_json_and_table(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    ob = await Outbox.open(path)
    try:
        await ob.append(sale("R1", 1))
        (row,) = await ob.next_batch(1)
        await ob.mark_rejected(row.id, "INSUFFICIENT_POINTS", "spent")
        data = await queue_json(ob, now=row.created_at + 7200)
        assert data["count"] == 1
        item = data["rejected"][0]
        got = (item["id"], item["age_s"], item["reason"], item["state"])
        assert got == (row.id, 7200, "INSUFFICIENT_POINTS", "rejected")
        table = format_table(data["rejected"], max_key=10)
        want = ["1", "R1", "sale", row.key[:9] + "…", "INSUFFICIENT_POINTS", "2h"]
        assert table.splitlines()[1].split() == want
    finally:
        await ob.close()


@pytest.mark.parametrize(("secs", "text"), [(0, "0s"), (59.9, "59s"), (60, "1m"), (3599, "59m"), (3600, "1h"),
                                            (86400 * 3 + 5, "3d"), (-5, "0s")])
def test_format_age(secs: float, text: str) -> None:
    assert format_age(secs) == text
