"""schemathesis against the native OpenAPI document, served by the real gateway.

The real daemon (tests/drivers/compliance_harness.py: Daemon, Outbox on SQLite, Pipeline,
aiohttp server, a stub gRPC core) runs on its own event loop in a thread; schemathesis reads
``drivers/native/openapi.json`` and sends generated requests, valid (positive) and invalid
(negative), with the Bearer key, over a real socket. Checked for every answer:

- no 5xx (``not_a_server_error``; the stub core is up, so 503 never has a reason here);
- the status code, the Content-Type and the body are documented for the operation;
- what the schema allows is accepted (2xx), what it refuses is refused (4xx): the schema and
  the server agree on every field (``positive_data_acceptance``, ``negative_data_rejection``).

A short run (a few dozen examples per operation) stays in ``make test``; set
``POSGW_FUZZ_EXAMPLES`` for a long one.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")
jsonschema = pytest.importorskip("jsonschema")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from schemathesis.specs.openapi import checks as oa_checks  # noqa: E402

from drivers.native import wire  # noqa: E402
from drivers.native.driver import openapi_document  # noqa: E402
from gateway.errors import BadInput  # noqa: E402
from gateway.receipt import MAX_ID  # noqa: E402
from tests.drivers.compliance_harness import running  # noqa: E402

KEY = "till-key-1"
AUTH = {"Authorization": f"Bearer {KEY}"}
# one connection per request: a kept-alive connection the server closes while idle would make a
# reset of the next request, which is the transport's race, not an answer to judge
FRESH = {"Connection": "close"}
EXAMPLES = int(os.environ.get("POSGW_FUZZ_EXAMPLES", "25"))
RANDOM = bool(os.environ.get("POSGW_FUZZ_RANDOM"))  # a long run explores; make test repeats one sequence
CHECKS = [
    schemathesis.checks.not_a_server_error,
    oa_checks.status_code_conformance,
    oa_checks.content_type_conformance,
    oa_checks.response_headers_conformance,
    oa_checks.response_schema_conformance,
    oa_checks.negative_data_rejection,
    oa_checks.positive_data_acceptance,
]


class ServedGateway:
    """The compliance daemon with the native driver, on an event loop in a thread."""

    def __init__(self, tmp_path: Path) -> None:
        self._tmp = tmp_path
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._error: BaseException | None = None
        self.base = ""
        self._thread = threading.Thread(target=self._run, name="native-gateway", daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported to the test thread
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        options = {"api_keys": [KEY], "max_body_bytes": 256 * 1024}
        async with running("native", options, self._tmp) as gw:
            self.base = f"{gw.base}/v1/native"
            self._ready.set()
            await self._stop.wait()

    def __enter__(self) -> ServedGateway:
        self._thread.start()
        if not self._ready.wait(30) or self._error is not None:
            raise RuntimeError(f"the gateway did not start: {self._error!r}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedGateway]:
    with ServedGateway(tmp_path_factory.mktemp("native-openapi")) as gw:
        yield gw


# What JSON Schema cannot say, said once here (the document's descriptions say it in words):
# identifiers are printable characters (Python's str.isprintable; a QR payload may also hold tabs
# and line breaks), times lie between 2000-01-01 and two days after the gateway's clock. The
# formats the document names are generated as such.
NOT_PRINTABLE = ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Zs")
schemathesis.openapi.format("printable", st.text(st.characters(exclude_categories=NOT_PRINTABLE,
                                                               include_characters=" ")))
schemathesis.openapi.format("printable-qr", st.text(st.characters(exclude_categories=NOT_PRINTABLE,
                                                                  include_characters=" \t\r\n")))
schemathesis.openapi.format("date-time", st.datetimes(
    min_value=datetime(2000, 1, 2), max_value=datetime.now() - timedelta(days=1),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=3)), timezone(-timedelta(hours=5, minutes=30))]),
).map(datetime.isoformat))

SCHEMA = schemathesis.openapi.from_dict(openapi_document())
OPERATIONS = [(path, method) for path, item in openapi_document()["paths"].items() for method in item]
MODES = [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE]
NO_INPUT = {"/openapi.json"}  # nothing to negate
PARSERS = {"/calculate": lambda o: None, "/identify": lambda o: None,
           "/sales": lambda o: wire.parse_sale(o, NOW), "/refunds": lambda o: wire.parse_refund(o, NOW),
           "/cancels": lambda o: wire.parse_cancel(o, NOW)}
NOW = datetime.now(UTC)


INTEGERS = ("redeem_points", "redeemed_points", "lines[].price", "lines[].qty_milli", "lines[].amount",
            "lines[].min_unit_price", "payments[].amount")


def _floats(body: dict[str, Any]) -> Iterator[str]:
    """The integer fields (money, points, quantities) of a body written as floats."""
    for name in INTEGERS:
        outer, _, inner = name.partition("[].")
        if not inner:
            if isinstance(body.get(name), float):
                yield name
            continue
        items = body.get(outer)
        for i, item in enumerate(items if isinstance(items, list) else []):
            if isinstance(item, dict) and isinstance(item.get(inner), float):
                yield f"{outer}[{i}].{inner}"


def refused_beyond_schema(path: str, body: Any) -> set[str]:
    """The fields a schema-valid body may be refused for (400 naming one of them) by a rule JSON
    Schema cannot state; empty when there is none:

    - an integer written as a whole float (``201.0``): JSON Schema's "integer" admits it;
    - a line_id repeated within a receipt (the document says it in words);
    - a calc_token the gateway did not issue (a generated string is never a valid MAC);
    - an idempotency key (or the sale key it names) longer than 256 characters.
    """
    if not isinstance(body, dict):
        return set()
    fields = set(_floats(body))
    lines = body.get("lines")
    if path in ("/calculate", "/sales") and isinstance(lines, list):
        seen: set[object] = set()
        for i, line in enumerate(lines):
            if isinstance(line, dict) and line.get("line_id") in seen:
                fields.add(f"lines[{i}].line_id")
            seen.add(line.get("line_id") if isinstance(line, dict) else None)
    if body.get("calc_token"):
        fields.add("calc_token")
    if not fields:
        try:
            event = PARSERS[path](body)
        except BadInput:
            return fields
        if event is not None and len(event.key) > MAX_ID:
            fields.add("key")
        if event is not None and len(event.sale_key) > MAX_ID:
            fields.add("sale_key")
    return fields


def _printable(value: object, *, extra: str = "") -> bool:
    return not isinstance(value, str) or "".join(ch for ch in value if ch not in extra).isprintable()


def _window(value: object) -> bool:
    if not isinstance(value, str):
        return True
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return False
    return when.tzinfo is not None and datetime(2000, 1, 1, tzinfo=UTC) <= when <= NOW + timedelta(days=2)


FORMATS = jsonschema.FormatChecker(formats=())
FORMATS.checks("printable")(_printable)
FORMATS.checks("printable-qr")(lambda v: _printable(v, extra="\t\r\n"))
FORMATS.checks("date-time")(_window)


def body_is_valid(path: str, body: Any) -> bool:
    """Whether a body is valid by the document, with its formats checked as the server reads
    them (schemathesis cannot check custom formats, so it may call a valid body negative)."""
    ref = openapi_document()["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
    validator = jsonschema.Draft202012Validator(openapi_document() | ref, format_checker=FORMATS)
    return validator.is_valid(body)


def _keeps_key(case: Any) -> bool:
    """Whether the request made of ``case`` with this test's headers carries the API key."""
    headers = case.as_transport_kwargs(base_url="http://127.0.0.1/v1/native", headers=AUTH | FRESH)["headers"]
    return bool(headers.get("Authorization"))


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.value)
@pytest.mark.parametrize(("path", "method"), OPERATIONS, ids=[f"{m.upper()} {p}" for p, m in OPERATIONS])
def test_native_api_matches_its_document(served: ServedGateway, path: str, method: str, mode: Any) -> None:
    if path in NO_INPUT and mode is schemathesis.GenerationMode.NEGATIVE:
        pytest.skip("no parameters or body to make invalid")
    operation = SCHEMA[path][method.upper()]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=not RANDOM, database=None,
              suppress_health_check=list(HealthCheck))
    def run(case: Any) -> None:
        checks = CHECKS
        positive = mode is schemathesis.GenerationMode.POSITIVE
        if (not positive and method == "post" and case.media_type == "application/json"
                and body_is_valid(path, case.body) and _keeps_key(case)):
            # negated only in headers this test replaces (a wrong Authorization value, extra
            # headers) or in a custom format schemathesis cannot check: the body is valid, so it is
            # sent with this test's headers only and judged as valid. A case that drops the
            # Authorization header stays negative (401 is its refusal).
            positive, checks = True, [c for c in CHECKS if c is not oa_checks.negative_data_rejection]
            case.headers = {}
        fields = refused_beyond_schema(path, case.body) if positive else set()
        if positive and not fields and mode is schemathesis.GenerationMode.NEGATIVE:
            response = case.call(base_url=served.base, headers=AUTH | FRESH)
            assert 200 <= response.status_code < 300, response.text
            case.validate_response(response, checks=checks)
            return
        if not fields:
            response = case.call(base_url=served.base, headers=AUTH | FRESH)
            if not positive and response.status_code == 413:
                # a generated body past the edge's limit is refused unread: a documented rejection
                # that schemathesis's negative-data check does not list among its expected codes
                assert response.json()["error"]["code"] == "PAYLOAD_TOO_LARGE", response.text
                checks = [c for c in checks if c is not oa_checks.negative_data_rejection]
            case.validate_response(response, checks=checks)
            return
        response = case.call(base_url=served.base, headers=AUTH | FRESH)
        assert response.status_code == 400, response.text
        assert response.json()["error"]["field"] in fields, response.text
        case.validate_response(response, checks=CHECKS[:-2])  # documented, but not an acceptance

    run()


def _request(url: str, method: str, body: bytes, headers: dict[str, str],
             ) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, data=body or None, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


ERROR = jsonschema.Draft202012Validator(openapi_document() | {"$ref": "#/components/schemas/Error"})
POSTS = [path for path, method in OPERATIONS if method == "post"]


@pytest.mark.parametrize("path", POSTS)
def test_edge_refusals_are_documented_on_every_operation(served: ServedGateway, path: str) -> None:
    """401 (with the Bearer challenge), 415, 413 and 405 (with Allow) on every operation, each
    in the documented error shape, and each status documented for the operation (405 is the
    server's answer to an undocumented method)."""
    url = served.base + path
    documented = openapi_document()["paths"][path]["post"]["responses"]
    json_type = {"Content-Type": "application/json"}
    cases = {
        "no key": ("POST", b"{}", json_type, 401),
        "wrong key": ("POST", b"{}", json_type | {"Authorization": "Bearer nope"}, 401),
        "text/plain": ("POST", b"{}", AUTH | {"Content-Type": "text/plain"}, 415),
        "too large": ("POST", b"[" * (300 * 1024), AUTH | json_type, 413),
        "not JSON": ("POST", b"\xff{", AUTH | json_type, 400),
        "10^5 brackets": ("POST", b"[" * 100_000 + b"]" * 100_000, AUTH | json_type, 400),
        "10^5 open brackets": ("POST", b'{"a":' * 50_000, AUTH | json_type, 400),
        "GET": ("GET", b"", AUTH, 405),
        "PUT": ("PUT", b"{}", AUTH | json_type, 405),
    }
    for what, (method, body, headers, status) in cases.items():
        got, hdrs, answer = _request(url, method, body, headers)
        assert got == status, (what, got, answer[:300])
        assert hdrs.get("Content-Type", "").startswith("application/json"), (what, hdrs)
        ERROR.validate(json.loads(answer))
        if status == 405:
            assert hdrs.get("Allow") == "POST", (what, hdrs)
        else:
            assert str(status) in documented, (what, status)
        if status == 401:
            assert hdrs.get("WWW-Authenticate", "").startswith("Bearer"), (what, hdrs)
