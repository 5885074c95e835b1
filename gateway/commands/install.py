"""``posgw install``: put the gateway's system files in place; ``scripts/install.sh`` runs it after
making the virtual environment.

Into ``--root`` (``/`` for the machine itself, a directory for an image or a test):

1. ``/usr/lib/sysusers.d/posgw.conf`` and ``systemd-sysusers --root``: the ``posgw`` user and group;
2. ``/usr/lib/tmpfiles.d/posgw.conf`` and ``systemd-tmpfiles --root --create``: ``/var/lib/posgw``
   (0700 posgw), ``/etc/posgw`` (0750 root:posgw), ``/etc/posgw/credentials`` (0700 root);
3. ``/etc/posgw/credentials/admin_api_key`` and ``native_api_keys``: random keys, 0600, made only
   when missing (the unit's ``LoadCredential=`` needs both files);
4. ``/etc/posgw/posgw.example.toml`` (always refreshed) and, only when missing, ``posgw.toml``: the
   example with the admin key and the native till keys read from those credentials;
5. ``/etc/systemd/system/posgw.service``: ``systemd/posgw.service`` with ``ExecStart`` and
   ``ExecStartPre`` running ``--exec`` (the installed ``posgw``);
6. ``/usr/local/bin/posgw``: a link to ``--exec`` (the operator types ``posgw``), unless a file
   that is not a link is there;
7. ``systemd-analyze verify`` of that unit: with ``--root`` when the binary is inside the root (the
   root then needs systemd's own units under ``/usr/lib/systemd/system``, as a real system has),
   else as this machine sees it (``--exec`` names a binary of this machine: a ``--no-venv`` install).

Invariants: an existing config or credential is never overwritten (a re-install upgrades the
unit and the example only); every step prints one ``ok:`` line, and the first failure one
``posgw install: ...`` line with the fix, exit 1. Nothing is started: the last lines say how.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

UNIT_BINARY = "/opt/posgw/venv/bin/posgw"  # what systemd/posgw.service runs: the default prefix
TOOL_TIMEOUT_S = 120


class InstallError(Exception):
    """A step failed: the message says which and what to do."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", type=Path, default=Path("/"), help="install into this root (default /)")
    parser.add_argument("--exec", dest="binary", default=None, metavar="PATH",
                        help="the posgw the unit runs, as seen inside the root "
                             "(default: the posgw next to this Python)")
    parser.add_argument("--source", type=Path, default=None, metavar="DIR",
                        help="the posgw source tree with systemd/ and config/ (default: this checkout)")


def run(args: argparse.Namespace) -> int:
    binary = args.binary or str(Path(sys.executable).parent / "posgw")
    source = args.source or Path(__file__).resolve().parents[2]
    try:
        install(args.root.resolve(), binary, source)
    except InstallError as exc:
        print(f"posgw install: {exc}", file=sys.stderr)
        return 1
    return 0


def install(root: Path, binary: str, source: Path) -> None:
    for needed in (source / "systemd" / "posgw.service", source / "config" / "posgw.example.toml"):
        if not needed.is_file():
            raise InstallError(f"{needed} is missing (fix: pass --source with the posgw source tree)")
    if not Path(binary).is_absolute():
        raise InstallError(f"--exec {binary}: must be an absolute path")

    def at(path: str) -> Path:
        return root / path.lstrip("/")

    root_flag = [] if root == Path("/") else [f"--root={root}"]

    at("/etc").mkdir(parents=True, exist_ok=True)  # systemd-sysusers locks <root>/etc/passwd there
    sysusers = at("/usr/lib/sysusers.d/posgw.conf")
    copy(source / "systemd" / "posgw.sysusers.conf", sysusers, 0o644)
    tool(["systemd-sysusers", *root_flag, "posgw.conf"], "create the posgw user")
    say(f"user posgw ({sysusers})")
    tmpfiles = at("/usr/lib/tmpfiles.d/posgw.conf")
    copy(source / "systemd" / "posgw.tmpfiles.conf", tmpfiles, 0o644)
    tool(["systemd-tmpfiles", *root_flag, "--create", "posgw.conf"], "create the directories")
    say(f"directories /var/lib/posgw, /etc/posgw ({tmpfiles})")

    credentials = at("/etc/posgw/credentials")
    for name in ("admin_api_key", "native_api_keys"):
        made = write_new(credentials / name, secrets.token_urlsafe(32) + "\n", 0o600)
        say(f"{'generated' if made else 'kept'} {credentials / name}")

    example = (source / "config" / "posgw.example.toml").read_text(encoding="utf-8")
    copy(source / "config" / "posgw.example.toml", at("/etc/posgw/posgw.example.toml"), 0o644)
    config = at("/etc/posgw/posgw.toml")
    made = write_new(config, installed_config(example), 0o640, group="posgw", root=root)
    say(f"{'wrote' if made else 'kept'} {config}")

    unit = at("/etc/systemd/system/posgw.service")
    text = (source / "systemd" / "posgw.service").read_text(encoding="utf-8")
    if UNIT_BINARY not in text:
        raise InstallError(f"systemd/posgw.service does not run {UNIT_BINARY} (fix: restore the unit)")
    unit.parent.mkdir(parents=True, exist_ok=True)
    write(unit, text.replace(UNIT_BINARY, binary), 0o644)
    say(f"unit {unit} runs {binary}")
    link = at("/usr/local/bin/posgw")
    if link.is_symlink() or not link.exists():
        link.parent.mkdir(parents=True, exist_ok=True)
        link.unlink(missing_ok=True)
        link.symlink_to(binary)
        say(f"{link} -> {binary} (posgw on the PATH)")
    else:
        say(f"kept {link} (not a link made by posgw install)")
    verify = ["systemd-analyze", "verify", "--man=no", "--generators=no"]
    if root_flag and at(binary).exists():  # the root's own view: its units, its binary
        verify += [*root_flag, "posgw.service"]
    else:  # this machine's view (a --no-venv install runs a binary of this machine)
        verify += [str(unit)]
    tool(verify, "verify the unit", strict=True)
    say(f"systemd-analyze verify{' ' + root_flag[0] if verify[-1] == 'posgw.service' else ''}: no problems")
    print("next: edit /etc/posgw/posgw.toml (drivers, core.address, listen_host; see docs/INSTALL.md), then")
    print("  posgw check-config --user posgw /etc/posgw/posgw.toml && systemctl daemon-reload && "
          "systemctl enable --now posgw")


def installed_config(example: str) -> str:
    """The example with the keys read from the generated credentials (the placeholders removed)."""
    swaps = {
        'admin_api_key = ""\n': 'admin_api_key_file = "admin_api_key"\n',
        'api_keys = ["change-me-till-key"]\n': 'api_keys_file = "native_api_keys"\n',
    }
    for old, new in swaps.items():
        if example.count(old) != 1:
            raise InstallError(f"config/posgw.example.toml no longer has {old.strip()!r} once "
                               "(fix: update gateway/commands/install.py with the example)")
        example = example.replace(old, new)
    header = ("# Written by posgw install from posgw.example.toml: keys come from /etc/posgw/credentials\n"
              "# (systemd LoadCredential=). Check after editing: posgw check-config --user posgw FILE\n")
    return header + example


def say(what: str) -> None:
    print(f"ok: {what}")


def tool(argv: list[str], what: str, *, strict: bool = False) -> None:
    if shutil.which(argv[0]) is None:
        raise InstallError(f"cannot {what}: {argv[0]} is not installed (fix: apt-get install systemd)")
    done = subprocess.run(argv, capture_output=True, text=True, timeout=TOOL_TIMEOUT_S, check=False)
    output = (done.stdout + done.stderr).strip()
    if done.returncode != 0 or (strict and output):
        fix = "see the message; nothing was started"
        if "sysinit.target not found" in output:
            fix = ("the root has no systemd units (/usr/lib/systemd/system): install systemd in it, or "
                   "verify once it is the running system: systemd-analyze verify posgw.service")
        raise InstallError(f"cannot {what}: {' '.join(argv)} said: {output or done.returncode} (fix: {fix})")


def copy(src: Path, dst: Path, mode: int) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    write(dst, src.read_text(encoding="utf-8"), mode)


def write(path: Path, text: str, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
        os.fchmod(out.fileno(), mode)
    os.replace(tmp, path)


def write_new(path: Path, text: str, mode: int, *, group: str = "", root: Path = Path("/")) -> bool:
    """Write ``path`` only when it does not exist; True when written."""
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    write(path, text, mode)
    if group:
        gid = group_id(root, group)
        if gid is not None:
            os.chown(path, -1, gid)
    return True


def group_id(root: Path, name: str) -> int | None:
    """The gid of ``name`` in the root's /etc/group (the root's user database, not this machine's)."""
    try:
        lines = (root / "etc" / "group").read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split(":")
        if len(fields) >= 3 and fields[0] == name and fields[2].isdigit():
            return int(fields[2])
    return None
