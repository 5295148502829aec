"""A real ``lvsd run`` on the nftables data plane reports the connections it NATs.

One namespace is the director: the VIP and the real server's address are local to it, the real
server (``nftlab/rs.py``) listens there, and a client inside it holds connections to the VIP,
which the data plane's output chain DNATs to the real server. ``lvsd status`` (JSON and text)
must show them as ``ipvsadm -Ln`` would: ESTABLISHED ones active, a closed one inactive; the
values come from the data plane (conntrack), nothing else in the daemon knows them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conftest import require
from lvsd.lab.netns import Host, Topology, have_netns

pytestmark = pytest.mark.netns

HERE = Path(__file__).parent / "nftlab"
PY = sys.executable
VIP, RS, LISTEN = "198.51.100.10", "10.0.0.11", "127.0.0.1:9330"
CONF = f"""global_defs {{
  router_id nft-director
}}
virtual_server {VIP} 80 {{
  protocol TCP
  lb_algo rr
  lb_kind NAT
  real_server {RS} 8080 {{
    weight 1
  }}
}}
"""
# holds N connections to the VIP (each answered once: established both ways); "close" closes
# one of them; every step is acknowledged on stdout
CLIENT = f"""
import socket, sys
conns = []
for _ in range(int(sys.argv[1])):
    s = socket.create_connection(({VIP!r}, 80), 10)
    s.sendall(b"GET / HTTP/1.1\\r\\nHost: vip\\r\\n\\r\\n")
    got = b""
    while b"rs1" not in got:  # head and body may come in separate segments
        chunk = s.recv(4096)
        assert chunk, got
        got += chunk
    conns.append(s)
print("ready", flush=True)
for line in sys.stdin:
    if line.strip() == "close":
        conns.pop().close()
        print("closed", flush=True)
"""


def _status(h: Host, *args: str) -> subprocess.CompletedProcess[str]:
    return h.run(PY, "-m", "lvsd.cli", "status", "-s", LISTEN, *args, check=False, timeout=60)


def _rs_when(h: Host, pred: Callable[[dict[str, Any]], bool],
             daemon: subprocess.Popen[bytes], log: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    deadline = time.monotonic() + 60  # a bound for a hang on a busy machine
    last: Any = None
    while time.monotonic() < deadline:
        assert daemon.poll() is None, log.read_text()
        out = _status(h, "--json")
        if out.returncode == 0:
            last = json.loads(out.stdout)
            if last["process"]["ready"] and last["virtual_servers"]:
                vs = last["virtual_servers"][0]
                if pred(vs["real_servers"][0]):
                    return vs, vs["real_servers"][0]
        time.sleep(0.3)
    raise AssertionError(f"never; last status {last}\n{log.read_text()}")


def test_nftables_daemon_reports_conntrack_connections(tmp_path: Path) -> None:
    require(have_netns())
    require(None if shutil.which("nft") else "needs nft (nftables)")
    topo = Topology(tag=f"lt-stc{os.getpid() % 10000}")
    try:
        h = topo.add_host("director", "198.51.100.1/24")
        h.add_addr(f"{VIP}/32")
        h.add_addr(f"{RS}/32")
        h.popen([PY, str(HERE / "rs.py"), "rs1", "8080"])
        h.run(PY, str(HERE / "wait.py"), RS, "8080")
        conf = tmp_path / "keepalived.conf"
        conf.write_text(CONF)
        log = tmp_path / "lvsd.log"
        with open(log, "wb") as out:
            daemon = h.popen([PY, "-m", "lvsd.cli", "run", "-f", str(conf), "--check-only",
                              "--dataplane", "nftables", "--nft-table", "lvsdst",
                              "--status-listen", LISTEN, "--pid-file", str(tmp_path / "pid"),
                              "--dump-dir", str(tmp_path), "--sweep", "0.5"],
                             stdout=out, stderr=subprocess.STDOUT)
        vs, rs = _rs_when(h, lambda rs: rs["in_dataplane"], daemon, log)
        assert rs["active_conns"] == 0 and rs["inactive_conns"] == 0  # read, and none yet
        assert rs["forward"] == "Masq" and rs["stats"] is None  # conntrack: no traffic counters

        client = h.popen([PY, "-c", CLIENT, "3"], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
        assert client.stdin is not None and client.stdout is not None
        assert client.stdout.readline().strip() == "ready"
        vs, rs = _rs_when(h, lambda rs: rs["active_conns"] == 3, daemon, log)
        assert vs["active_conns"] == 3
        text = _status(h)
        assert text.returncode == 0, text.stderr
        line = next(x for x in text.stdout.splitlines() if x.startswith(f"  -> {RS}:8080"))
        assert line.split()[2:7] == ["Masq", "1", "3", "0", "UP"], line

        # a closed connection is inactive (FIN_WAIT / TIME_WAIT), as IPVS counts it
        client.stdin.write("close\n")
        client.stdin.flush()
        assert client.stdout.readline().strip() == "closed"
        vs, rs = _rs_when(h, lambda rs: rs["active_conns"] == 2 and rs["inactive_conns"] >= 1,
                          daemon, log)
        assert vs["inactive_conns"] == rs["inactive_conns"]
    finally:
        topo.close()
