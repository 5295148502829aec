#!/usr/bin/env bash
# Install what lvsd needs on a fresh Debian machine (idempotent, quick when already done):
# Debian packages, then a virtualenv in .venv with lvsd. Two profiles:
#
#   bash scripts/bootstrap.sh demo    what `scripts/demo.sh` needs: iproute2, nftables, Python's
#                                     venv; lvsd and its runtime dependencies in .venv
#   bash scripts/bootstrap.sh [test]  everything the test suite needs besides: keepalived (the
#                                     VRRP interop peer), qemu (the kernel-IPVS VM), dnsmasq,
#                                     tcpdump, chromium, ipvsadm; lvsd's dev tools in .venv
#                                     and BIRD 2 unpacked into .lab/bird2 (not installed)
#
# It installs packages and builds .venv, nothing else: it never starts, stops, enables or
# disables a service of this host (the tests run their keepalived inside network namespaces).
# Debian's keepalived package enables its unit but starts it only when
# /etc/keepalived/keepalived.conf exists: run the test profile on a development or CI machine,
# not on a director.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

PROFILE=${1:-test}
# the demo: namespaces and veths (iproute2), sysctl (procps), the nftables data plane (kernel
# IPVS needs no package), modprobe for IPVS autoloading (kmod), Python with venv for .venv
DEMO_PACKAGES="iproute2 procps nftables kmod python3 python3-venv ca-certificates"
# the test suite, besides: real peers and tools the tests drive (keepalived as VRRP interop
# peer, qemu for the kernel-IPVS VM and what its harness needs, dnsmasq as a real DNS server,
# chromium for the status page test, ipvsadm/tcpdump as witnesses)
TEST_PACKAGES="iputils-ping psmisc bc cpio gzip xz-utils keepalived qemu-system-x86
  dnsmasq-base ipvsadm tcpdump chromium"
case "$PROFILE" in
    demo) APT_PACKAGES=$DEMO_PACKAGES; EXTRAS="" ;;
    test) APT_PACKAGES="$DEMO_PACKAGES $TEST_PACKAGES"; EXTRAS="[dev]" ;;
    *) echo "usage: bash scripts/bootstrap.sh [demo|test]" >&2; exit 2 ;;
esac

if [ "$(id -u)" != 0 ]; then
    echo "bootstrap: run as root (network namespaces, raw sockets, nftables and the VM need it)" >&2
    exit 1
fi

missing=""
for p in $APT_PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "bootstrap ($PROFILE): installing Debian packages:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086  # one word per package
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

# BIRD 2 for the BGP tests (tests/support/bgplab.py): the package's files unpacked into
# .lab/bird2 (gitignored), never installed: `apt-get install bird2` would enable and start
# bird.service on this host. Only its shared libraries are installed as packages.
if [ "$PROFILE" = test ] && [ ! -x .lab/bird2/usr/sbin/bird ]; then
    echo "bootstrap (test): unpacking BIRD 2 into .lab/bird2"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends libssh-gcrypt-4 libreadline8 libtinfo6 >/dev/null
    birdtmp=$(mktemp -d)
    chmod 755 "$birdtmp"  # apt's _apt user downloads into it
    (cd "$birdtmp" && apt-get download -qq bird2)
    rm -rf .lab/bird2.new
    mkdir -p .lab
    dpkg-deb -x "$birdtmp"/bird2_*.deb .lab/bird2.new
    rm -rf "$birdtmp" .lab/bird2
    mv .lab/bird2.new .lab/bird2
    if ldd .lab/bird2/usr/sbin/bird .lab/bird2/usr/sbin/birdc | grep -q "not found"; then
        echo "bootstrap: BIRD 2 lacks a shared library:" >&2
        ldd .lab/bird2/usr/sbin/bird .lab/bird2/usr/sbin/birdc | grep "not found" >&2
        exit 1
    fi
fi

PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)'; then
    echo "bootstrap: Python >= 3.11 needed ($PY is $("$PY" --version 2>&1))" >&2
    exit 1
fi
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
# the stamp names the profile installed ("demo" or "test"; an older empty stamp was "test"):
# the test profile covers the demo's, not the other way round
stamp=.venv/.lvsd-installed
have=""
if [ -f "$stamp" ]; then
    have=$(cat "$stamp")
    have=${have:-test}
fi
stamp_as=$PROFILE
if [ "$have" = test ]; then
    stamp_as=test
    EXTRAS="[dev]"  # keep what is there
fi
if [ -z "$have" ] || [ pyproject.toml -nt "$stamp" ] || [ "$have" != "$stamp_as" ]; then
    .venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
    .venv/bin/python -m pip install -q -e ".$EXTRAS" 2>&1 | grep -v "^WARNING: Location" || true
    .venv/bin/python -c 'import lvsd, pyroute2, aiohttp'  # fail loudly if pip did not
    if [ "$stamp_as" = test ]; then
        .venv/bin/python -c 'import pytest, mypy'
    fi
    echo "$stamp_as" > "$stamp"
fi
if [ "$PROFILE" = test ]; then
    echo "bootstrap (test): ready ($(.venv/bin/python --version), $(keepalived --version 2>&1 | head -1))"
else
    echo "bootstrap (demo): ready ($(.venv/bin/python --version), $(.venv/bin/lvsd --version))"
fi
