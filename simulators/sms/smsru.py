"""SMS.ru's HTTP API as the reference core's SMS adapter meets it, with the faults that matter.

A real aiohttp server on 127.0.0.1 answering ``POST``/``GET /sms/send`` (``api_id``, ``to``,
``msg``, ``json=1``) the way SMS.ru documents it: ``{"status":"OK","status_code":100,"sms":
{"<to>":{"status":"OK","status_code":100,"sms_id":"…"}},"balance":…}``; a wrong ``api_id`` is
``{"status":"ERROR","status_code":200,…}``; a ``to`` that is not 11 digits gets the number's
``status_code`` 202. Faults, settable while it runs (:class:`Faults`): ``delay_s`` (a slow
provider: the answer comes that late), ``down`` (HTTP 503), ``refuse`` (status ERROR 500),
``duplicate`` (each accepted message lands twice in the phone's inbox, as a carrier resending).
:attr:`SmsRuSimulator.inbox` is what each phone received; :meth:`SmsRuSimulator.last_code` reads
the newest code a phone got, as its owner would.
"""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from aiohttp import web

CODE_RE = re.compile(r"(\d{4,6})")


@dataclass
class Faults:
    delay_s: float = 0.0
    down: bool = False
    refuse: bool = False
    duplicate: bool = False


@dataclass
class SmsRuSimulator:
    api_id: str
    faults: Faults = field(default_factory=Faults)
    inbox: dict[str, list[str]] = field(default_factory=dict)  # "7903…" -> texts received
    requests: int = 0
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    async def send(self, request: web.Request) -> web.Response:
        self.requests += 1
        form = dict(await request.post()) if request.method == "POST" else dict(request.query)
        if self.faults.delay_s:
            await asyncio.sleep(self.faults.delay_s)
        if self.faults.down:
            return web.Response(status=503, text="Service Unavailable")
        if self.faults.refuse:
            return web.json_response(
                {"status": "ERROR", "status_code": 500, "status_text": "Ошибка на сервере"}
            )
        if form.get("api_id") != self.api_id:
            return web.json_response(
                {"status": "ERROR", "status_code": 200, "status_text": "Неправильный api_id"}
            )
        to, text = str(form.get("to", "")), str(form.get("msg", ""))
        if not (to.isdigit() and len(to) == 11) or not text:
            one = {"status": "ERROR", "status_code": 202, "status_text": "Неправильно указан номер"}
        else:
            one = {"status": "OK", "status_code": 100, "sms_id": f"{next(self._ids):06d}-{to[-4:]}"}
            box = self.inbox.setdefault(to, [])
            box.extend([text] * (2 if self.faults.duplicate else 1))
        return web.json_response({"status": "OK", "status_code": 100, "sms": {to: one}, "balance": 100.0})

    def last_code(self, phone: str) -> str:
        texts = self.inbox.get(phone.lstrip("+"), [])
        found = CODE_RE.search(texts[-1]) if texts else None
        return found.group(1) if found else ""


@asynccontextmanager
async def serving(sim: SmsRuSimulator) -> AsyncIterator[str]:
    """The simulator on 127.0.0.1:<free port>; yields its base URL for ``POSGW_CORE_SMS_URL``."""
    app = web.Application()
    app.router.add_route("*", "/sms/send", sim.send)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def _serve_forever(sim: SmsRuSimulator, port: int) -> None:
    app = web.Application()
    app.router.add_route("*", "/sms/send", sim.send)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print(f"SMS.ru simulator on http://127.0.0.1:{port} (POSGW_CORE_SMS_URL); Ctrl-C stops it", flush=True)
    seen = 0
    try:
        while True:  # what the phones receive, as it arrives
            await asyncio.sleep(0.2)
            texts = [(to, t) for to, box in sim.inbox.items() for t in box]
            for to, text in texts[seen:]:
                print(f"+{to}: {text}", flush=True)
            seen = len(texts)
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    """``python -m simulators.sms.smsru --api-id KEY [--port N] [--delay-s S] [--down] [--duplicate]``:
    the simulator for a hand-run core (``POSGW_CORE_SMS_PROVIDER=smsru``)."""
    import argparse

    parser = argparse.ArgumentParser(description="SMS.ru API simulator (prints every SMS it accepts)")
    parser.add_argument("--api-id", required=True)
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--delay-s", type=float, default=0.0, help="answer this late (a slow provider)")
    parser.add_argument("--down", action="store_true", help="answer 503")
    parser.add_argument("--duplicate", action="store_true", help="deliver every message twice")
    args = parser.parse_args(argv)
    sim = SmsRuSimulator(args.api_id, Faults(delay_s=args.delay_s, down=args.down, duplicate=args.duplicate))
    try:
        asyncio.run(_serve_forever(sim, args.port))
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
