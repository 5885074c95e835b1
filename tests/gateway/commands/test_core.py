"""posgw core: --check-program prints every problem (exit 1) or a one-line summary (exit 0); serving
needs --program (exit 2), refuses a bad program (exit 1), hands listen / program / database to the
reference core's serve(), with the default SQLite file in the user data directory."""

from __future__ import annotations

import argparse
import json
import logging
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import simulators.core.server as core_server
from gateway.cli import main
from gateway.commands import core as core_cmd
from gateway.rules.program import Program

ROOT = Path(__file__).resolve().parents[3]
SEED002 = ROOT / "config" / "programs" / "seed002.toml"
MINIMAL = 'id = "mini"\ntiers = [{ name = "base", rate_pct = 5, cap_pct = 50, min_spent = 0 }]\n'


@pytest.fixture(autouse=True)
def keep_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(h)
    root.setLevel(level)


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any, str]]:
    """The reference core's serve(), replaced by a recorder (it would serve until SIGTERM)."""
    calls: list[tuple[str, Any, str]] = []

    async def fake_serve(listen: str, program: Any, db_url: str, now: Any = None) -> None:
        calls.append((listen, program, db_url))

    monkeypatch.setattr(core_server, "serve", fake_serve)
    return calls


def test_check_program_ok_prints_a_summary(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["core", "--check-program", str(SEED002)]) == 0
    out, err = capsys.readouterr()
    assert out == f"{SEED002}: ok: program 'seed002', 5 tier(s), policy cashback, currency RUB\n"
    assert err == ""


def test_check_program_minimal_defaults(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "mini.toml"
    path.write_text(MINIMAL + 'policy = "discount"\ncurrency = "KZT"\n', encoding="utf-8")
    assert core_cmd.check(str(path)) == 0
    assert capsys.readouterr().out == (
        f"{path}: ok: program 'mini', 1 tier(s), policy discount, currency KZT\n")


def test_check_program_lists_every_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(MINIMAL.replace("min_spent = 0 }", 'min_spent = 0, colour = "red" }') + "bogus_key = 1\n",
                   encoding="utf-8")
    assert main(["core", "--check-program", str(bad)]) == 1
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    assert len(lines) == 2, out
    assert all(line.startswith(f"{bad}: ") and "(fix: " in line for line in lines)
    assert {line.split(": ")[1] for line in lines} == {"bogus_key", "tiers[0].colour"}
    assert err == f"2 problem(s) in {bad}\n"


def test_check_program_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "none.toml"
    assert core_cmd.check(str(missing)) == 1
    out, err = capsys.readouterr()
    assert out.startswith(f"{missing}: ") and err == f"1 problem(s) in {missing}\n"


def test_serving_needs_a_program(served: list[Any], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["core"]) == 2
    assert capsys.readouterr().err == "posgw core: --program FILE is required (or --check-program FILE)\n"
    assert served == []


def test_a_bad_program_is_refused_before_serving(
    tmp_path: Path, served: list[Any], capsys: pytest.CaptureFixture[str],
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('id = "x"\n', encoding="utf-8")  # no tiers
    assert main(["core", "--program", str(bad)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"posgw core: {bad}: tiers: ") and "(fix: " in err
    assert served == []


def test_serve_gets_listen_program_and_db(tmp_path: Path, served: list[Any]) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    assert main(["core", "--listen", "127.0.0.1:6001", "--program", str(SEED002), "--db", url,
                 "--log-level", "warning"]) == 0
    [(listen, program, db_url)] = served
    assert (listen, db_url) == ("127.0.0.1:6001", url)
    assert isinstance(program, Program) and program.id == "seed002"


def test_default_database_is_created_in_the_user_data_dir(
    tmp_path: Path, served: list[Any], monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = tmp_path / "data" / "posgw"
    monkeypatch.setattr(core_cmd.platformdirs, "user_data_dir", lambda *a, **k: str(data))
    assert core_cmd.default_db_url() == f"sqlite:///{data / 'core.db'}"
    assert main(["core", "--program", str(SEED002)]) == 0
    assert served[0][0] == core_cmd.DEFAULT_LISTEN == "127.0.0.1:50051"
    assert served[0][2] == f"sqlite:///{data / 'core.db'}"
    assert data.is_dir()  # made for the default file, not for an explicit --db


def test_an_address_it_cannot_serve_on_exits_1(
    served: list[Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path,
) -> None:
    async def refusing_serve(listen: str, program: Any, db_url: str, now: Any = None) -> None:
        raise OSError(f"cannot listen on {listen}")

    monkeypatch.setattr(core_server, "serve", refusing_serve)
    assert main(["core", "--listen", "10.255.255.1:1", "--program", str(SEED002),
                 "--db", f"sqlite:///{tmp_path / 'c.db'}"]) == 1
    assert capsys.readouterr().err == (
        "posgw core: cannot serve on 10.255.255.1:1: cannot listen on 10.255.255.1:1\n")


def test_a_busy_port_exits_1_with_the_reason(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        listen = f"127.0.0.1:{busy.getsockname()[1]}"
        code = main(["core", "--listen", listen, "--program", str(SEED002),
                     "--db", f"sqlite:///{tmp_path / 'c.db'}"])
    assert code == 1
    assert capsys.readouterr().err.startswith(f"posgw core: cannot serve on {listen}: ")


def test_add_arguments_defaults() -> None:
    parser = argparse.ArgumentParser()
    core_cmd.add_arguments(parser)
    args = parser.parse_args([])
    assert (args.listen, args.program, args.db, args.check_program, args.log_level) == (
        "127.0.0.1:50051", None, None, None, "INFO")


def test_program_error_becomes_a_config_error_at_the_boundary() -> None:
    from gateway.errors import ConfigError
    from gateway.rules.errors import ProgramError

    err = ProgramError("p.toml", "tiers[0].rate_pct", "must be >= 0", "write a positive number")
    translated = core_cmd.config_error(err)
    assert isinstance(translated, ConfigError)
    assert (translated.file, translated.key, translated.problem, translated.fix) == (
        "p.toml", "tiers[0].rate_pct", "must be >= 0", "write a positive number")
    assert str(translated) == str(err)
    assert str(err) == "p.toml: tiers[0].rate_pct: must be >= 0 (fix: write a positive number)"


# ------------------------------------------------------------------ posgw core customer


def test_customer_add_grant_and_list_against_a_real_core(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    from simulators.core.server import serve_in_thread

    db = f"sqlite:///{tmp_path / 'core.db'}"
    with serve_in_thread(SEED002, db) as address:
        add = ["core", "customer", "add", "--core", address]
        assert main([*add, "--phone", "8 (916) 100-00-01", "--name", "Анна Ковалёва"]) == 0
        out = capsys.readouterr().out
        assert out.startswith("registered: customer 1 +79161000001 «") and "welcome bonus" in out
        assert main([*add, "--phone", "+79161000001", "--json"]) == 0
        again = json.loads(capsys.readouterr().out)
        # a known phone: the same customer, not created again (proto3 JSON leaves out false)
        assert again["customer"]["customer_id"] == "1" and "created" not in again
        assert main([*add, "--card", "7700123", "--name", "Борис", "--referrer", "+79161000001"]) == 0
        assert "customer 2 7700123" in capsys.readouterr().out

        grant = ["core", "customer", "grant", "--core", address, "--phone", "+79161000001"]
        assert main([*grant, "--points", "250", "--key", "gift-1"]) == 0
        assert capsys.readouterr().out.startswith("granted: 250 points (manual) to +79161000001")
        assert main([*grant, "--points", "250", "--key", "gift-1"]) == 0  # the same key: nothing more
        assert capsys.readouterr().out.startswith("already granted: 250 points")
        assert main(["core", "customer", "grant", "--core", address, "--phone", "+79160000000",
                     "--points", "5"]) == 1
        assert "refused or did not answer: NOT_FOUND" in capsys.readouterr().err

        assert main(["core", "customer", "list", "--db", db, "--json"]) == 0
        people = {p["phone"] or p["cards"][0]: p for p in json.loads(capsys.readouterr().out)}
        anna = people["+79161000001"]
        assert anna["name"] == "Анна Ковалёва" and anna["cards"] == []
        assert people["7700123"]["name"] == "Борис"
        assert main(["core", "customer", "list", "--db", db, "--search", "7700"]) == 0
        table = capsys.readouterr().out.splitlines()
        assert table[0].split()[:4] == ["ID", "PHONE", "NAME", "CARDS"] and len(table) == 2
        assert table[1].split()[:4] == ["2", "-", "Борис", "7700123"]
        assert anna["balance"] == int(again["customer"]["balance"]) + 250  # the welcome bonus and the grant


def test_customer_commands_say_what_is_wrong(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["core", "customer", "add", "--core", "127.0.0.1:1"]) == 2
    assert "give --phone or --card" in capsys.readouterr().err
    assert main(["core", "customer", "add", "--core", "127.0.0.1:1", "--phone", "+79161000001",
                 "--timeout", "1"]) == 1
    assert "did not answer: UNAVAILABLE" in capsys.readouterr().err
    missing = tmp_path / "none.db"
    assert main(["core", "customer", "list", "--db", f"sqlite:///{missing}"]) == 1
    assert f"no core database at {missing}" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["core", "customer", "grant", "--phone", "+7", "--card", "1"])  # one of them, not both
