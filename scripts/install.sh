#!/bin/sh
# Install posgw as a systemd service: its own virtual environment under PREFIX (/opt/posgw), the
# posgw user and directories (sysusers/tmpfiles), generated admin and till keys, a config from the
# example, the unit with the right ExecStart, checked by systemd-analyze verify. Run as root from
# the source tree. Nothing is started; the last lines say how.
#
#   scripts/install.sh [--prefix DIR] [--root DIR] [--python PYTHON] [--wheel FILE] [--no-venv]
#
#   --prefix DIR     where the virtual environment goes (default /opt/posgw; the unit runs
#                    DIR/venv/bin/posgw)
#   --root DIR       install into DIR as the system root (an image, a test); the venv then lives
#                    under DIR too and only works once DIR is the real root
#   --python PYTHON  the Python that makes the venv (default python3; 3.11 or later)
#   --wheel FILE     install this posgw wheel instead of building from the source tree
#   --no-venv        make no venv: PYTHON's environment already has posgw (development, tests);
#                    the unit runs the posgw next to PYTHON
#
# Dependencies come from requirements.lock with pip --require-hashes (every file checked against
# its sha256); posgw itself is installed with --no-deps from the wheel or the source tree.
set -eu

SRC=$(cd "$(dirname "$0")/.." && pwd)
PREFIX=/opt/posgw
ROOT=/
PYTHON=python3
WHEEL=
VENV=yes

die() { echo "install.sh: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) PREFIX=${2:?--prefix needs a directory}; shift 2 ;;
        --root) ROOT=${2:?--root needs a directory}; shift 2 ;;
        --python) PYTHON=${2:?--python needs a path}; shift 2 ;;
        --wheel) WHEEL=${2:?--wheel needs a file}; shift 2 ;;
        --no-venv) VENV=no; shift ;;
        -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
done

case "$PREFIX" in /*) ;; *) die "--prefix must be absolute: $PREFIX" ;; esac
[ -d "$ROOT" ] || die "--root $ROOT is not a directory"
ROOT=$(cd "$ROOT" && pwd)
[ "$(id -u)" = 0 ] || die "run as root (it creates a system user and writes /etc)"
command -v "$PYTHON" >/dev/null 2>&1 || die "no $PYTHON (fix: apt-get install python3 python3-venv)"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die "$PYTHON is older than 3.11 (fix: --python /usr/bin/python3.11 or later)"

if [ "$VENV" = yes ]; then
    venv=${ROOT%/}$PREFIX/venv
    echo "venv: $venv"
    "$PYTHON" -m venv "$venv" || die "cannot make a venv (fix: apt-get install python3-venv)"
    "$venv/bin/python" -m pip install --quiet --require-hashes --no-deps -r "$SRC/requirements.lock" \
        || die "dependencies from requirements.lock failed to install (see pip's message above)"
    "$venv/bin/python" -m pip install --quiet --no-deps "${WHEEL:-$SRC}" || die "posgw failed to install"
    POSGW=$venv/bin/posgw
    EXEC=$PREFIX/venv/bin/posgw
else
    POSGW=$(dirname "$PYTHON")/posgw
    [ -x "$POSGW" ] || die "--no-venv: no posgw next to $PYTHON (fix: pip install -e . there, or drop --no-venv)"
    EXEC=$(cd "$(dirname "$POSGW")" && pwd)/posgw
fi

exec "$POSGW" install --root "$ROOT" --exec "$EXEC" --source "$SRC"
