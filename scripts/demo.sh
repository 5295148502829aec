#!/usr/bin/env bash
# lvsd's main job, self-contained: two directors electing a master by VRRP, health-checking three
# real servers and load-balancing a client's traffic (nftables data plane), all in network
# namespaces on this machine; shows failover and a server failure live. Extra args go to `lvsd demo`.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
bash scripts/bootstrap.sh
exec .venv/bin/lvsd demo "$@"
