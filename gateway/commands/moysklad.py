"""``posgw moysklad register``: give MoySklad the gateway's base URL and a fresh token.

    posgw moysklad register --token-file /etc/posgw/credentials/moysklad.tokens \\
        --app-id APP --account-id ACCOUNT --url https://shop.example.ru/v1/moysklad

A new random token is written to ``--token-file`` **first** (atomically, mode 0600, the previous
token kept on the second line so requests in flight still pass), and only then is MoySklad's
Vendor API called: ``PUT {vendor-api}/api/vendor/1.0/apps/{appId}/{accountId}/loyalty`` with
``url``, ``token`` and ``externalSearch`` (``Authorization: Bearer`` the vendor JWT from
``$POSGW_MOYSKLAD_VENDOR_JWT`` or ``--jwt-file``). If the call fails, the stored token is
harmless (MoySklad still sends the old one, which stays accepted) and the command can be run
again; if the store failed, nothing was sent. The driver reads the file through
``tokens_file`` in ``[drivers.moysklad]``: restart the gateway after registering.

Exit codes: 0 registered; 1 MoySklad refused or could not be reached (the token is stored);
2 bad usage or the token file could not be written (nothing sent).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp

VENDOR_API = "https://apps-api.moysklad.ru"
PATH = "/api/vendor/1.0/apps/{app}/{account}/loyalty"
KEEP = 2  # tokens kept in the file: the new one and the one before it


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = sub.add_parser(
        "register", help="store a new token, then set base URL and token in MoySklad (Vendor API)"
    )
    p.add_argument(
        "--token-file", required=True, type=Path, help="where the driver reads its tokens (tokens_file)"
    )
    p.add_argument("--app-id", required=True, help="the solution's appId")
    p.add_argument("--account-id", required=True, help="the MoySklad account the solution is installed on")
    p.add_argument("--url", required=True, help="the public base URL, https://<host>/v1/moysklad")
    p.add_argument("--vendor-api", default=VENDOR_API, help=f"Vendor API base (default {VENDOR_API})")
    p.add_argument(
        "--jwt-file", type=Path, help="file with the vendor JWT (default: $POSGW_MOYSKLAD_VENDOR_JWT)"
    )
    p.add_argument(
        "--no-external-search",
        action="store_true",
        help="let MoySklad search customers itself (externalSearch=false)",
    )
    p.add_argument("--allow-http", action="store_true", help="accept an http:// base URL (tests, simulators)")
    p.add_argument("--timeout-s", type=float, default=15.0, help="deadline of the Vendor API call")


def store_token(path: Path, token: str) -> None:
    """Write ``token`` first and the previous one after it (atomically, 0600, fsynced)."""
    old: list[str] = []
    if path.exists():
        old = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    lines = [token, *[t for t in old if t != token]][:KEEP]
    tmp = path.with_name(path.name + ".new")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, ("\n".join(lines) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


async def put_loyalty(args: argparse.Namespace, jwt: str, token: str) -> tuple[int, str]:
    url = args.vendor_api.rstrip("/") + PATH.format(app=args.app_id, account=args.account_id)
    body = {"url": args.url, "token": token, "externalSearch": not args.no_external_search}
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=args.timeout_s)) as session,
        session.put(url, json=body, headers={"Authorization": f"Bearer {jwt}"}) as resp,
    ):
        return resp.status, (await resp.text())[:300]


def _jwt(args: argparse.Namespace) -> str:
    if args.jwt_file is not None:
        return str(args.jwt_file.read_text(encoding="utf-8")).strip()
    return os.environ.get("POSGW_MOYSKLAD_VENDOR_JWT", "").strip()


def run(args: argparse.Namespace) -> int:
    where = "posgw moysklad register"
    scheme = urlsplit(args.url).scheme
    if scheme != "https" and not (scheme == "http" and args.allow_http):
        print(
            f"{where}: --url must be https:// (MoySklad's servers call it over the internet)", file=sys.stderr
        )
        return 2
    try:
        jwt = _jwt(args)
    except OSError as exc:
        print(f"{where}: cannot read {args.jwt_file}: {exc.strerror}", file=sys.stderr)
        return 2
    if not jwt:
        print(f"{where}: no vendor JWT: set $POSGW_MOYSKLAD_VENDOR_JWT or give --jwt-file", file=sys.stderr)
        return 2
    token = secrets.token_urlsafe(32)
    try:
        store_token(args.token_file, token)
    except OSError as exc:
        print(
            f"{where}: cannot write {args.token_file}: {exc.strerror}; nothing was sent to MoySklad",
            file=sys.stderr,
        )
        return 2
    try:
        status, text = asyncio.run(put_loyalty(args, jwt, token))
    except (aiohttp.ClientError, TimeoutError) as exc:
        print(
            f"{where}: MoySklad's Vendor API not reached ({exc.__class__.__name__}); the new token is stored "
            f"in {args.token_file} and harmless: run the command again",
            file=sys.stderr,
        )
        return 1
    if status != 200:
        hint = {
            401: "check the vendor JWT",
            404: "the solution is not installed on that account (2004)",
            400: "the descriptor lacks <loyaltyApi/> or the installation is not finished (2006/2007)",
        }
        print(
            f"{where}: MoySklad answered {status}: {hint.get(status, text)}; the new token is stored and "
            "harmless: fix and run again",
            file=sys.stderr,
        )
        return 1
    print(
        f"registered {args.url} with MoySklad; the token is in {args.token_file} "
        "(set tokens_file in [drivers.moysklad] to it and restart the gateway)"
    )
    return 0
