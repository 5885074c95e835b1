"""gateway.outbox_db: the row states and their one transition table, applied in SQL."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from sqlalchemy import Connection, Engine

from gateway import outbox_db as db
from gateway.outbox_db import TRANSITIONS, Action, RowState, TransitionRefused, next_state

ALLOWED = {
    (RowState.PENDING, Action.DELIVER): RowState.DELIVERED,
    (RowState.PENDING, Action.REJECT): RowState.REJECTED,
    (RowState.REJECTED, Action.RETRY): RowState.PENDING,
    (RowState.REJECTED, Action.RESOLVE): RowState.RESOLVED,
}
EVERY = list(itertools.product(RowState, Action))


def test_stored_strings_are_unchanged() -> None:
    """Existing outbox files hold these strings; they must still read."""
    assert [s.value for s in RowState] == ["pending", "delivered", "rejected", "resolved"]
    assert RowState("rejected") is RowState.REJECTED and RowState.PENDING == "pending"


def test_the_table_is_exactly_the_allowed_moves() -> None:
    table = {(src, action): dst for action, moves in TRANSITIONS.items() for src, dst in moves.items()}
    assert table == ALLOWED
    assert set(TRANSITIONS) == set(Action)  # every action moves something


@pytest.mark.parametrize(("state", "action"), [p for p in EVERY if p in ALLOWED])
def test_allowed_transitions(state: RowState, action: Action) -> None:
    assert next_state(state, action) == ALLOWED[state, action]


@pytest.mark.parametrize(("state", "action"), [p for p in EVERY if p not in ALLOWED])
def test_refused_transitions(state: RowState, action: Action) -> None:
    with pytest.raises(TransitionRefused) as info:
        next_state(state, action)
    assert (info.value.action, info.value.state) == (action, state)


def test_delivered_and_resolved_are_final() -> None:
    for state in (RowState.DELIVERED, RowState.RESOLVED):
        assert all(state not in moves for moves in TRANSITIONS.values())


# ---------------------------------------------------------------- in SQL


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    eng, moved = db.open_store(
        tmp_path / "outbox.db", busy_timeout_ms=1000, create=True, recover=False, now=0.0
    )
    assert moved == ""
    return eng


def _insert(conn: Connection, state: RowState) -> int:
    with conn.begin():
        (outcome,), _ = db.insert_events(conn, [db.NewEvent(f"k-{state}", "R1", "sale", b"{}")], 1.0)
        row_id = int(conn.exec_driver_sql("SELECT max(id) FROM events").scalar_one())
        conn.exec_driver_sql(f"UPDATE events SET state = '{state}' WHERE id = {row_id}")  # set up only
    assert outcome.register_seq > 0
    return row_id


def _state(conn: Connection, row_id: int) -> tuple[str, float]:
    row = db.fetch_row(conn, row_id)
    conn.rollback()
    assert row is not None
    return str(row.state), float(row.updated_at)


@pytest.mark.parametrize(("state", "action"), EVERY)
def test_transition_in_sql_follows_the_table(engine: Engine, state: RowState, action: Action) -> None:
    with db.connect(engine, writer=True) as conn:
        row_id = _insert(conn, state)
        values = {"reason": "", "last_error": "x"} if action == Action.REJECT else {"note": "n"}
        with conn.begin():
            changed = db.transition(conn, action, [(row_id, values)], 5.0)
        stored, updated = _state(conn, row_id)
        if (state, action) in ALLOWED:
            assert changed == 1 and (stored, updated) == (ALLOWED[state, action].value, 5.0)
        else:  # the WHERE clause names the from-state: nothing is overwritten
            assert changed == 0 and (stored, updated) == (state.value, 1.0)
    engine.dispose()


def test_a_concurrent_change_is_not_overwritten(engine: Engine) -> None:
    """An operator resolves a rejected row; a retry decided on the old state changes nothing."""
    with db.connect(engine, writer=True) as conn:
        row_id = _insert(conn, RowState.REJECTED)
        with conn.begin():
            assert db.transition(conn, Action.RESOLVE, [(row_id, {"note": "paid cash"})], 2.0) == 1
        with conn.begin():
            assert db.transition(conn, Action.RETRY, [(row_id, {"reason": ""})], 3.0) == 0
        assert _state(conn, row_id) == ("resolved", 2.0)
    engine.dispose()


def test_transition_sets_only_the_columns_an_action_may(engine: Engine) -> None:
    with db.connect(engine, writer=True) as conn:
        row_id = _insert(conn, RowState.PENDING)
        with pytest.raises(ValueError, match="cannot set"), conn.begin():
            db.transition(conn, Action.DELIVER, [(row_id, {"state": "resolved"})], 2.0)
        with pytest.raises(ValueError, match="same columns"), conn.begin():
            db.transition(conn, Action.DELIVER, [(row_id, {"note": "a"}), (row_id, {"reason": "b"})], 2.0)
        assert db.transition(conn, Action.DELIVER, [], 2.0) == 0
        assert _state(conn, row_id) == ("pending", 1.0)
    engine.dispose()
