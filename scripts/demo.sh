#!/usr/bin/env bash
# lvsd's main job, self-contained: two directors electing a master by VRRP, health-checking three
# real servers and load-balancing a client's traffic (kernel IPVS where the kernel has it, else
# nftables), all in network namespaces on this machine; shows failover and a server failure
# live, then removes everything. Installs only what the demo needs (`bootstrap.sh demo`) and
# changes nothing else on the host. Extra args go to `lvsd demo` (--keep, --duration, ...).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null; then
        exec sudo bash "$0" "$@"
    fi
    echo "demo: run as root (network namespaces need it)" >&2
    exit 1
fi
bash scripts/bootstrap.sh demo
exec .venv/bin/lvsd demo "$@"
