"""gateway.calc_token: tokens round-trip, any altered byte is refused, the key file lives across restarts."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.calc_token import KEY_BYTES, CalcTokens, load_key
from gateway.driver import CalcClaims
from gateway.errors import BadInput, ConfigError
from gateway.receipt import CustomerId, IdKind

CLAIMS = CalcClaims(customer=CustomerId(IdKind.PHONE, "+79161234567"), redeemed=120, discount=9000,
                    hold_id="h-7", offline=True, program_version="v3", register_id="till-1")
TOKENS = CalcTokens(b"k" * 32)


def test_a_token_round_trips_every_claim() -> None:
    token = TOKENS.issue(CLAIMS)
    assert token.startswith("c1.") and token.count(".") == 2 and len(token) < 300
    assert TOKENS.read(token) == CLAIMS
    plain = CalcClaims(customer=None, redeemed=0, discount=0, hold_id="", offline=False,
                       program_version="", register_id="r")
    assert TOKENS.read(TOKENS.issue(plain)) == plain


def test_the_last_character_of_the_mac_counts_too() -> None:
    token = TOKENS.issue(CLAIMS)  # its last base64 character carries padding bits that decode away
    for other in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_":
        if other != token[-1]:
            with pytest.raises(BadInput):
                TOKENS.read(token[:-1] + other)


def test_another_key_refuses_the_token() -> None:
    with pytest.raises(BadInput, match="forged or altered") as info:
        CalcTokens(b"x" * 32).read(TOKENS.issue(CLAIMS))
    assert info.value.field == "calc_token"


@given(st.integers(min_value=0), st.sampled_from("ABCxyz019-_."))
def test_any_changed_character_is_refused(position: int, replacement: str) -> None:
    token = TOKENS.issue(CLAIMS)
    i = position % len(token)
    if token[i] == replacement:
        return
    altered = token[:i] + replacement + token[i + 1:]
    try:
        claims = TOKENS.read(altered)
    except BadInput as exc:
        assert exc.field == "calc_token"
    else:
        raise AssertionError(f"an altered token was accepted: {altered!r} -> {claims}")


@pytest.mark.parametrize("token", ["", "c1", "c1..", "a.b.c", "c1.e30." + "A" * 22, "x" * 5000, "c1.!!.??"])
def test_malformed_tokens_are_bad_input(token: str) -> None:
    with pytest.raises(BadInput):
        TOKENS.read(token)


def test_the_key_is_made_once_private_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "calc_token.key"
    key = load_key(path)
    assert len(key) == KEY_BYTES and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_key(path) == key  # a restart reads the same key: tokens stay valid
    assert not path.with_name("calc_token.key.new").exists()


def test_a_damaged_key_file_stops_the_start_and_is_not_replaced(tmp_path: Path) -> None:
    path = tmp_path / "calc_token.key"
    path.write_bytes(b"short")
    with pytest.raises(ConfigError, match="5 bytes") as info:
        load_key(path)
    assert str(path) in str(info.value)
    assert path.read_bytes() == b"short"


def test_an_unreadable_key_file_names_the_path_and_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "calc_token.key"
    path.mkdir()  # unreadable as a file, also for root (a mode of 0 is not)
    with pytest.raises(ConfigError, match="read access") as info:
        load_key(path)
    assert str(path) in str(info.value) and path.is_dir()
