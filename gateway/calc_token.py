"""The calc token: what a calculate decided, signed by this gateway, carried by the till to commit.

At calculate the pipeline issues a token naming the customer, the points redeemed, our discount,
the core's hold, whether the offline policy answered, the program version and the register. A
driver hands it to its till wherever the till carries data from calc to commit (Evotor's receipt
extra, Modul Kassa's loyalty data, Poster's order extras, the native API's ``calc_token``), and
the sale brings it back; :meth:`CalcTokens.read` verifies it before anything is stored.

Format: ``c1.<payload>.<mac>``: the payload is compact JSON in URL-safe base64 (no padding), the
MAC the first 16 bytes of HMAC-SHA256 over ``c1.<payload>`` with this gateway's key.

Invariants:
- a token that was not issued with this key, or was altered in any byte, is refused with
  :class:`gateway.errors.BadInput` (field ``calc_token``): a till cannot forge a redemption,
  a hold or the offline flag;
- the key is 32 random bytes in ``<data_dir>/calc_token.key`` (mode 0600), made at first start
  and never rewritten, so tokens stay valid across restarts (a calc answered before a SIGKILL
  is committed after it with what it decided); an unreadable or malformed key file stops the
  start with the path and the fix instead of being replaced;
- pure apart from :func:`load_key`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path

from gateway.driver import CalcClaims
from gateway.errors import BadInput, ConfigError
from gateway.receipt import CustomerId, IdKind

PREFIX = "c1"
MAC_BYTES = 16
KEY_BYTES = 32
MAX_TOKEN = 2048
FIELD = "calc_token"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class CalcTokens:
    """Issues and verifies calc tokens with one key."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("a calc token key needs at least 16 bytes")
        self._key = key

    def _mac(self, signed: str) -> bytes:
        return hmac.new(self._key, signed.encode(), hashlib.sha256).digest()[:MAC_BYTES]

    def issue(self, claims: CalcClaims) -> str:
        doc: dict[str, object] = {"r": claims.register_id, "p": claims.redeemed, "d": claims.discount}
        if claims.customer is not None:
            doc["ck"], doc["cv"] = str(claims.customer.kind), claims.customer.value
        if claims.hold_id:
            doc["h"] = claims.hold_id
        if claims.offline:
            doc["o"] = 1
        if claims.program_version:
            doc["v"] = claims.program_version
        signed = f"{PREFIX}.{_b64(json.dumps(doc, separators=(',', ':'), ensure_ascii=False).encode())}"
        return f"{signed}.{_b64(self._mac(signed))}"

    def read(self, token: str) -> CalcClaims:
        """The claims of a token this gateway issued; BadInput otherwise."""
        if not isinstance(token, str) or len(token) > MAX_TOKEN or token.count(".") != 2:
            raise BadInput("not a calc token issued by this gateway", FIELD)
        signed, _, mac = token.rpartition(".")
        # the MAC is compared as text: decoding would forgive padding bits and stray characters
        if not signed.startswith(PREFIX + ".") or not hmac.compare_digest(
                mac.encode(), _b64(self._mac(signed)).encode()):
            raise BadInput("calc token forged or altered: the gateway did not issue it", FIELD)
        try:
            doc = json.loads(_unb64(signed.partition(".")[2]))
            customer = None
            if "ck" in doc:
                customer = CustomerId(IdKind(doc["ck"]), str(doc["cv"]))
            return CalcClaims(customer=customer, redeemed=int(doc["p"]), discount=int(doc["d"]),
                              hold_id=str(doc.get("h", "")), offline=bool(doc.get("o", 0)),
                              program_version=str(doc.get("v", "")), register_id=str(doc["r"]))
        except (ValueError, KeyError, TypeError) as exc:  # signed by us but unreadable: a bug, not input
            raise BadInput(f"calc token unreadable: {exc}", FIELD) from exc


def load_key(path: Path) -> bytes:
    """The gateway's token key, made (0600, fsynced) when the file does not exist yet."""
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        key = secrets.token_bytes(KEY_BYTES)
        tmp = path.with_name(path.name + ".new")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, key)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        return key
    except OSError as exc:
        raise ConfigError(str(path), "calc_token.key", f"cannot read the calc token key: {exc.strerror}",
                          "give the gateway's user read access to the file (never delete it while "
                          "tills hold unfinished receipts)") from exc
    if len(key) != KEY_BYTES:
        raise ConfigError(str(path), "calc_token.key", f"the key has {len(key)} bytes, not {KEY_BYTES}",
                          "restore the file from a backup, or delete it to make a new key (tokens "
                          "issued with the old key are then refused)")
    return key
