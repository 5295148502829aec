"""One director and a "wire" on a bridge: the small lab the single-daemon VRRP netns tests share.

``wire_topology(prefix)`` gives a :class:`~lvsd.lab.netns.Topology` with ``d1`` (192.0.2.1)
and, unless ``wire=False``, ``wire`` (192.0.2.50), which plays the other routers on the link:
:data:`ADVERT_SENDER` sends adverts for VRID 51 from it with a raw socket. ``start_lvsd`` runs
the shipped ``lvsd run`` in a host, ``wait_until`` bounds every wait (a failure prints the
daemon's log), ``stop`` ends a process politely then by force. Test harness only: not shipped.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from lvsd.lab.netns import Host, Topology

D1 = "192.0.2.1"
WIRE = "192.0.2.50"

# argv: version priority gap-seconds stamp-file. Sends adverts for VRID 51 (VIP 192.0.2.100)
# from "wire" every gap seconds; the wall-clock time of the first one goes to the stamp file.
ADVERT_SENDER = r"""
import socket, sys, time
from ipaddress import IPv4Address
from lvsd.vrrp import codec
version, prio, gap, out = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
adv = codec.Advert(version=version, vrid=51, priority=prio,
                   advert_int=0.1 if version == 3 else 1,
                   addresses=(IPv4Address("192.0.2.100"),))
payload = codec.encode(adv, "192.0.2.50", "224.0.0.18")
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 112)
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 255)
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("192.0.2.50"))
s.bind(("192.0.2.50", 0))
first = True
while True:
    s.sendto(payload, ("224.0.0.18", 0))
    if first:
        with open(out, "w") as fh:
            fh.write("%.6f\n" % time.time())
        first = False
    time.sleep(gap)
"""

# argv: host:port path. Prints the body of one GET.
HTTP_GET = ("import sys, urllib.request\n"
            "with urllib.request.urlopen('http://%s%s' % (sys.argv[1], sys.argv[2]), "
            "timeout=3) as r:\n"
            "    sys.stdout.write(r.read().decode())\n")


@contextmanager
def wire_topology(prefix: str, wire: bool = True) -> Iterator[Topology]:
    t = Topology(prefix)
    try:
        t.add_host("d1", f"{D1}/24")
        if wire:
            t.add_host("wire", f"{WIRE}/24")
        yield t
    finally:
        t.close()


def send_adverts(host: Host, stamp: Path, priority: int, gap: float,
                 version: int = 2) -> subprocess.Popen[bytes]:
    return host.popen([sys.executable, "-c", ADVERT_SENDER, str(version), str(priority),
                       str(gap), str(stamp)], stderr=subprocess.DEVNULL)


def start_lvsd(host: Host, conf: Path, workdir: Path, log: Path,
               status: str) -> subprocess.Popen[bytes]:
    """``lvsd run --vrrp-only`` as shipped, its output appended to ``log``."""
    with open(log, "a") as out:
        return host.popen(
            [sys.executable, "-m", "lvsd.cli", "run", "-f", str(conf), "--vrrp-only",
             "--dataplane", "memory", "--status-listen", status,
             "--pid-file", str(workdir / f"{host.name}.pid"), "--dump-dir", str(workdir)],
            stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONUNBUFFERED="1"))


def wait_until(cond: Callable[[], bool], what: str, log: Path, limit: float = 30.0) -> None:
    end = time.monotonic() + limit
    while not cond():
        if time.monotonic() > end:
            text = log.read_text()[-4000:] if log.exists() else "(no log)"
            pytest.fail(f"never happened: {what}\n{text}")
        time.sleep(0.05)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
