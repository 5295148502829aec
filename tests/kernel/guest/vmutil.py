"""Helpers for the in-VM suite (imported by its tests; not a test module): ``ipvsadm`` as a
witness, and the NAT lab (client, director, two HTTP real servers) that test_traffic.py and
test_drain.py send real traffic through."""

from __future__ import annotations

import contextlib
import http.client
import select
import socket
import subprocess
import sys
from collections.abc import Iterator

from lvsd.lab.netns import Host, Topology


def ipvsadm(*args: str, check: bool = True) -> str:
    proc = subprocess.run(["ipvsadm", *args], capture_output=True, text=True, timeout=30,
                          check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"ipvsadm {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout


def saved() -> list[str]:
    """``ipvsadm -Sn`` lines, sorted: the kernel table as the reference tool sees it."""
    return sorted(line for line in ipvsadm("-Sn").splitlines() if line.strip())


VIP = "192.0.2.10"

SERVER = r"""
import http.server, sys
name, port = sys.argv[1], int(sys.argv[2])
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = name.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
class S(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
srv = S(("0.0.0.0", port), H)
print("ready", flush=True)
srv.serve_forever()
"""


@contextlib.contextmanager
def nat_lab(tag: str) -> Iterator[Topology]:
    """The NAT topology of test_traffic.py / test_drain.py (module docstring of
    test_traffic.py), under namespaces tagged ``tag``; removed on exit, even on failure."""
    topo = Topology(tag)
    try:
        topo.add_host("client", "192.0.2.100/24")
        d = topo.add_host("dir", "192.0.2.1/24", forwarding=True)
        d.add_addr("10.0.0.1/24")
        d.add_addr(f"{VIP}/24")
        for i, name in ((11, "rs1"), (12, "rs2")):
            h = topo.add_host(name, f"10.0.0.{i}/24")
            h.run("ip", "route", "add", "default", "via", "10.0.0.1")
            start_server(h, name)
        yield topo
    finally:
        topo.close()


def start_server(host: Host, name: str) -> None:
    proc = host.popen([sys.executable, "-c", SERVER, name, "8080"], stdout=subprocess.PIPE,
                      text=True)
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 60)
    assert ready and proc.stdout.readline().strip() == "ready", f"{name} did not start"


def connect(ns: str) -> http.client.HTTPConnection:
    """A keep-alive HTTP connection from inside namespace ``ns`` to the VIP."""
    from pyroute2.netns import create_socket

    s = create_socket(ns, socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect((VIP, 80))
    conn = http.client.HTTPConnection(VIP, 80, timeout=10)
    conn.sock = s
    return conn


def get(conn: http.client.HTTPConnection) -> str:
    conn.request("GET", "/")
    resp = conn.getresponse()
    assert resp.status == 200
    return resp.read().decode()
