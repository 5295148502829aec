"""The VRRP child process of ``lvsd run`` (keepalived's process model): it is respawned when it
dies, it dies with its parent (gracefully: the VIP is released), and a stop of the parent stops
it. One namespace, one director alone on its segment (it becomes master)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lvsd.lab.netns import Host, Topology
from testlab import wait_for

pytestmark = pytest.mark.netns

STATUS = "127.0.0.1:9345"
VIP = "192.0.2.100"
GET = ("import sys, urllib.request\n"
       "with urllib.request.urlopen('http://%s/status' % sys.argv[1], timeout=5) as r:\n"
       "    sys.stdout.write(r.read().decode())\n")
CONF = f"""global_defs {{
  router_id solo
}}
vrrp_instance VI_1 {{
  state MASTER
  interface eth0
  virtual_router_id 61
  priority 150
  advert_int 0.2
  version 3
  virtual_ipaddress {{
    {VIP}/24
  }}
}}
"""


class Solo:
    def __init__(self, host: Host, workdir: Path) -> None:
        self.host = host
        self.conf = workdir / "solo.conf"
        self.conf.write_text(CONF)
        self.log = workdir / "solo.log"
        with self.log.open("w") as out:
            self.proc = host.popen(
                [sys.executable, "-m", "lvsd.cli", "run", "-f", str(self.conf), "--vrrp-only",
                 "--dataplane", "memory", "--status-listen", STATUS, "--no-syslog",
                 "--pid-file", str(workdir / "solo.pid"), "--dump-dir", str(workdir)],
                stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONUNBUFFERED="1"))

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def status(self) -> dict[str, Any]:
        p = self.host.run(sys.executable, "-c", GET, STATUS, check=False, timeout=15)
        try:
            return dict(json.loads(p.stdout)) if p.returncode == 0 else {}
        except ValueError:
            return {}

    def master_with_vip(self) -> bool:
        st = self.status()
        inst = st.get("instances") or [{}]
        return inst[0].get("state") == "MASTER" and any(
            a.split("/")[0] == VIP for a in self.host.addresses())

    def child_pid(self) -> int | None:
        pid = self.status().get("process", {}).get("vrrp_pid")
        return int(pid) if pid else None


@pytest.fixture
def solo(tmp_path: Path) -> Iterator[Solo]:
    with Topology("vch") as topo:
        s = Solo(topo.add_host("d1", "192.0.2.1/24"), tmp_path)
        try:
            assert wait_for(s.master_with_vip, 30), s.text()
            yield s
        finally:
            if s.proc.poll() is None:
                s.proc.send_signal(signal.SIGTERM)
                try:
                    s.proc.wait(20)
                except subprocess.TimeoutExpired:
                    s.proc.kill()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def test_a_dead_vrrp_child_is_respawned_and_takes_the_vip_again(solo: Solo) -> None:
    first = solo.child_pid()
    assert first and first != solo.proc.pid
    os.kill(first, signal.SIGKILL)
    assert wait_for(lambda: f"VRRP child process({first}) died: Respawning" in solo.text(), 15)
    assert wait_for(lambda: (solo.child_pid() or first) != first, 20), solo.text()
    second = solo.child_pid()
    assert wait_for(solo.master_with_vip, 30), solo.text()
    st = solo.status()
    assert st["process"]["vrrp_respawns"] == 1 and st["process"]["pid"] == solo.proc.pid
    assert solo.proc.poll() is None and second is not None and _alive(second)


def test_the_child_dies_with_its_parent_and_releases_the_vip(solo: Solo) -> None:
    child = solo.child_pid()
    assert child
    solo.proc.send_signal(signal.SIGKILL)  # the parent alone: the child gets SIGTERM
    solo.proc.wait(10)
    assert wait_for(lambda: not _alive(child), 15), "the VRRP child outlived its parent"
    # the graceful stop: priority 0 sent and the VIP removed (keepalived PR_SET_PDEATHSIG)
    assert not any(a.split("/")[0] == VIP for a in solo.host.addresses())
    assert re.search(r"VRRP VI_1 stopped", solo.text()), solo.text()[-2000:]


def test_sigterm_stops_parent_and_child(solo: Solo) -> None:
    child = solo.child_pid()
    assert child
    solo.proc.send_signal(signal.SIGTERM)
    assert solo.proc.wait(30) == 0
    assert not _alive(child)
    assert not any(a.split("/")[0] == VIP for a in solo.host.addresses())


def test_sigterm_to_both_at_once_as_systemd_does_is_no_respawn(solo: Solo) -> None:
    """systemd's stop signals every process of the unit at once: the child's clean exit must
    not be mistaken for a death to respawn from."""
    child = solo.child_pid()
    assert child
    os.kill(child, signal.SIGTERM)
    time.sleep(0.3)  # the child's graceful stop is done by now; the parent's signal lags
    solo.proc.send_signal(signal.SIGTERM)
    assert solo.proc.wait(30) == 0
    assert not _alive(child)
    assert "Respawning" not in solo.text(), solo.text()[-2000:]
    assert not any(a.split("/")[0] == VIP for a in solo.host.addresses())
