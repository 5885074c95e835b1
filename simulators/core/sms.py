"""How the reference core sends confirmation codes: a pluggable SMS sender.

- :class:`SmsSender`: ``await send(phone, text)`` returns the provider's message id or raises
  :class:`SmsError`; the caller bounds it with a deadline (:func:`deliver`), so a slow provider
  never holds an RPC past what the gateway waits;
- :class:`DebugSender`: no provider (the default): keeps the texts in memory and makes SendOtp
  answer the code as ``debug_code``, as the core always did;
- :class:`SmsRu`: SMS.ru's HTTP API. ``POST {base}/sms/send`` with form fields ``api_id`` (the
  account's API key), ``to`` (digits, no +), ``msg`` (UTF-8 text) and ``json=1``; the answer is
  JSON: ``status`` "OK" with ``status_code`` 100 for the request, and under ``sms`` one object per
  number with its own ``status``/``status_code`` (100: accepted) and ``sms_id``; anything else
  (``status`` "ERROR", a number's code other than 100, a non-200 HTTP status, bad JSON) is a
  failure whose ``status_text`` is reported;
- :func:`from_environ`: ``POSGW_CORE_SMS_PROVIDER=smsru`` with ``POSGW_CORE_SMS_API_ID`` (and
  ``POSGW_CORE_SMS_URL``, default ``https://sms.ru``) picks SMS.ru; unset: :class:`DebugSender`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

import aiohttp

SMSRU_URL = "https://sms.ru"
DEFAULT_WAIT_S = 5.0


class SmsError(Exception):
    """The provider did not accept the message."""


class SmsSender(Protocol):
    debug: bool  # True: no provider; the code is answered to the caller instead of texted

    async def send(self, phone: str, text: str) -> str: ...


@dataclass
class DebugSender:
    debug: bool = True
    sent: list[tuple[str, str]] = field(default_factory=list)

    async def send(self, phone: str, text: str) -> str:
        self.sent.append((phone, text))
        return f"debug-{len(self.sent)}"


@dataclass
class SmsRu:
    api_id: str
    base_url: str = SMSRU_URL
    debug: bool = False

    async def send(self, phone: str, text: str) -> str:
        to = phone.lstrip("+")
        form = {"api_id": self.api_id, "to": to, "msg": text, "json": "1"}
        try:
            async with (
                aiohttp.ClientSession() as session,
                session.post(f"{self.base_url.rstrip('/')}/sms/send", data=form) as resp,
            ):
                raw = await resp.read()
                if resp.status != 200:
                    raise SmsError(f"SMS.ru answered HTTP {resp.status}")
        except aiohttp.ClientError as exc:
            raise SmsError(f"SMS.ru unreachable: {exc.__class__.__name__}") from None
        try:
            doc = json.loads(raw)
        except ValueError:
            raise SmsError("SMS.ru answered something that is not JSON") from None
        if not isinstance(doc, dict) or doc.get("status") != "OK":
            raise SmsError(f"SMS.ru refused: {_text(doc)}")
        one = (doc.get("sms") or {}).get(to) if isinstance(doc.get("sms"), dict) else None
        if not isinstance(one, dict) or one.get("status") != "OK" or int(one.get("status_code", 0)) != 100:
            raise SmsError(f"SMS.ru refused the number: {_text(one)}")
        return str(one.get("sms_id", ""))


def _text(doc: object) -> str:
    if isinstance(doc, dict):
        return f"{doc.get('status_code', '?')} {doc.get('status_text', doc.get('status', ''))}".strip()
    return "no answer"


async def deliver(sender: SmsSender, phone: str, text: str, wait_s: float) -> str:
    """``""`` when the provider accepted the message within ``wait_s``, else why not."""
    try:
        async with asyncio.timeout(wait_s):
            await sender.send(phone, text)
    except TimeoutError:
        return f"the SMS provider did not answer within {wait_s:.1f} s"
    except SmsError as exc:
        return str(exc)
    return ""


def text_of(code: str, purpose: str) -> str:
    what = "регистрации" if purpose == "registration" else "списания баллов"
    return f"Код подтверждения {what}: {code}. Никому его не сообщайте."


def from_environ(environ: Mapping[str, str]) -> SmsSender:
    provider = environ.get("POSGW_CORE_SMS_PROVIDER", "").strip().lower()
    if provider == "smsru":
        api_id = environ.get("POSGW_CORE_SMS_API_ID", "").strip()
        if not api_id:
            raise ValueError("POSGW_CORE_SMS_PROVIDER=smsru needs POSGW_CORE_SMS_API_ID (the SMS.ru API key)")
        return SmsRu(api_id, environ.get("POSGW_CORE_SMS_URL", SMSRU_URL))
    if provider:
        raise ValueError(f"POSGW_CORE_SMS_PROVIDER={provider!r}: the reference core knows 'smsru' only")
    return DebugSender()
