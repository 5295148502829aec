#!/usr/bin/env bash
# Install everything lvsd's demo and test suite need on a fresh Debian machine (idempotent, quick
# when already done): Debian packages, then a virtualenv in .venv with lvsd and its dev tools.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

# Debian packages: real peers and data planes the tests drive (keepalived as VRRP interop peer,
# qemu for the kernel-IPVS VM, nftables data plane, dnsmasq as a real DNS server, chromium for
# the status page test) and the tools the VM harness needs.
APT_PACKAGES="iproute2 iputils-ping procps psmisc bc kmod cpio gzip xz-utils keepalived
  qemu-system-x86 nftables dnsmasq-base ipvsadm tcpdump chromium"

if [ "$(id -u)" != 0 ]; then
    echo "bootstrap: run as root (network namespaces, raw sockets, nftables and the VM need it)" >&2
    exit 1
fi

missing=""
for p in $APT_PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "bootstrap: installing Debian packages:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
# keepalived's package may start a system instance: lvsd's tests start their own, in namespaces.
systemctl disable --now keepalived >/dev/null 2>&1 || true

PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)'; then
    echo "bootstrap: Python >= 3.11 needed ($PY is $("$PY" --version 2>&1))" >&2
    exit 1
fi
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
stamp=.venv/.lvsd-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    .venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
    .venv/bin/python -m pip install -q -e '.[dev]' 2>&1 | grep -v "^WARNING: Location" || true
    .venv/bin/python -c 'import lvsd, pyroute2, aiohttp, pytest'  # fail loudly if pip did not
    touch "$stamp"
fi
echo "bootstrap: ready ($(.venv/bin/python --version), $(keepalived --version 2>&1 | head -1))"
