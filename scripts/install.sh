#!/usr/bin/env bash
# Install lvsd for real, from this tree (the one documented install; docs/operations.md):
#
#   /opt/lvsd                         a virtualenv holding lvsd, installed from a wheel built
#                                     from this tree (or --wheel FILE) and its dependencies
#   /usr/local/bin/lvsd               a symlink to /opt/lvsd/bin/lvsd
#   /etc/systemd/system/lvsd.service  conf/lvsd.service (paths rewritten if you move them)
#   /opt/lvsd/share/doc/lvsd/         operations.md (the unit's Documentation=), migration.md,
#                                     README.md, example director pairs (examples/nat, dr, tun)
#   /etc/keepalived/keepalived.conf   the config lvsd run and the unit read: never written here;
#                                     an existing one is checked (`lvsd check-config`)
#
# It starts, stops, enables or disables nothing: after it, `systemctl daemon-reload` is run
# when systemd manages this host and the unit went to /etc/systemd/system; enabling lvsd (which
# stops keepalived: the unit Conflicts= with it) is your step. Re-running it upgrades in place.
#
# usage: scripts/install.sh [--prefix DIR] [--bin-dir DIR] [--unit-dir DIR|''] [--wheel FILE]
#                           [--config FILE] [--python PY] [--uninstall]
# (--unit-dir '' installs no unit: the container image does that.)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)

PREFIX=/opt/lvsd
BIN_DIR=/usr/local/bin
UNIT_DIR=/etc/systemd/system
CONFIG=/etc/keepalived/keepalived.conf
WHEEL=""
PY=${PYTHON:-python3}
UNINSTALL=no
# what conf/lvsd.service says, rewritten when the install goes elsewhere
UNIT_BIN=/usr/local/bin/lvsd
UNIT_PREFIX=/opt/lvsd
UNIT_CONFIG=/etc/keepalived/keepalived.conf

die() { echo "install: $*" >&2; exit 1; }
while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) PREFIX=${2:?}; shift 2 ;;
        --bin-dir) BIN_DIR=${2:?}; shift 2 ;;
        --unit-dir) UNIT_DIR=${2-}; shift 2 ;;
        --wheel) WHEEL=${2:?}; shift 2 ;;
        --config) CONFIG=${2:?}; shift 2 ;;
        --python) PY=${2:?}; shift 2 ;;
        --uninstall) UNINSTALL=yes; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
done
case "$PREFIX" in /*) ;; *) die "--prefix must be absolute" ;; esac
PREFIX=${PREFIX%/}
DOC_DIR=$PREFIX/share/doc/lvsd

if [ "$UNINSTALL" = yes ]; then
    # only what this script put there: the symlink into PREFIX, our unit, the venv
    if [ -L "$BIN_DIR/lvsd" ] && [ "$(readlink "$BIN_DIR/lvsd")" = "$PREFIX/bin/lvsd" ]; then
        rm -f "$BIN_DIR/lvsd"
    fi
    if [ -n "$UNIT_DIR" ] && grep -qs "^ExecStart=$BIN_DIR/lvsd run" "$UNIT_DIR/lvsd.service"; then
        rm -f "$UNIT_DIR/lvsd.service"
        echo "install: removed $UNIT_DIR/lvsd.service (stop lvsd first if it runs:" \
             "systemctl disable --now lvsd)"
    fi
    if [ -f "$PREFIX/pyvenv.cfg" ] && [ -e "$PREFIX/bin/lvsd" ]; then
        rm -rf "$PREFIX"
    fi
    echo "install: lvsd removed from $PREFIX ($CONFIG left as it is)"
    exit 0
fi

"$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' \
    || die "Python >= 3.11 needed ($PY is $("$PY" --version 2>&1))"
if ! "$PY" -c 'import ensurepip, venv' 2>/dev/null; then
    command -v apt-get >/dev/null || die "$PY has no venv module: install it (python3-venv)"
    echo "install: installing python3-venv"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
fi
if [ -e "$BIN_DIR/lvsd" ] && [ ! -L "$BIN_DIR/lvsd" ]; then
    die "$BIN_DIR/lvsd exists and is not a symlink: not replacing it"
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/lvsd-install.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

[ -x "$PREFIX/bin/python" ] || "$PY" -m venv "$PREFIX"
pip=("$PREFIX/bin/python" -m pip --disable-pip-version-check -q)
if [ -z "$WHEEL" ]; then
    # build from a copy of what the wheel holds, so the checkout gets no build/ or egg-info
    mkdir "$tmp/src" "$tmp/dist"
    cp -r "$ROOT/pyproject.toml" "$ROOT/README.md" "$ROOT/src" "$tmp/src/"
    find "$tmp/src" -name __pycache__ -prune -exec rm -rf {} +
    "${pip[@]}" wheel --no-deps -w "$tmp/dist" "$tmp/src"
    WHEEL=$(ls "$tmp"/dist/lvsd-*.whl)
fi
[ -f "$WHEEL" ] || die "no wheel at $WHEEL"
"${pip[@]}" install "$WHEEL"
"${pip[@]}" install --force-reinstall --no-deps "$WHEEL"  # same version number: still this code
version=$("$PREFIX/bin/lvsd" --version)

mkdir -p "$BIN_DIR"
ln -sfn "$PREFIX/bin/lvsd" "$BIN_DIR/lvsd"

mkdir -p "$DOC_DIR/examples"
cp "$ROOT/docs/operations.md" "$ROOT/docs/migration.md" "$ROOT/README.md" "$DOC_DIR/"
for kind in nat dr tun; do
    mkdir -p "$DOC_DIR/examples/$kind"
    cp "$ROOT/conf/$kind/"*.conf "$DOC_DIR/examples/$kind/"
done

if [ -n "$UNIT_DIR" ]; then
    mkdir -p "$UNIT_DIR"
    sed -e "s|$UNIT_BIN|$BIN_DIR/lvsd|g" -e "s|$UNIT_PREFIX/|$PREFIX/|g" \
        -e "s|$UNIT_CONFIG|$CONFIG|g" "$ROOT/conf/lvsd.service" > "$tmp/lvsd.service"
    install -m 0644 "$tmp/lvsd.service" "$UNIT_DIR/lvsd.service"
    if [ "$UNIT_DIR" = /etc/systemd/system ] && [ -d /run/systemd/system ]; then
        systemctl daemon-reload  # reads unit files again; starts or stops nothing
    fi
fi

echo "install: $version in $PREFIX, $BIN_DIR/lvsd${UNIT_DIR:+, $UNIT_DIR/lvsd.service}"
if [ -f "$CONFIG" ]; then
    rc=0
    "$BIN_DIR/lvsd" check-config -f "$CONFIG" >/dev/null 2>&1 || rc=$?
    echo "install: $CONFIG: lvsd check-config exit $rc (0 valid, 5 errors keepalived runs" \
         "with, 6 script security, 4 cannot run)"
else
    echo "install: no $CONFIG yet: write one (keepalived syntax; examples in $DOC_DIR/examples)"
fi
if [ -n "$UNIT_DIR" ]; then
    echo "install: then: systemctl enable --now lvsd   (stops keepalived: lvsd replaces it)"
fi
