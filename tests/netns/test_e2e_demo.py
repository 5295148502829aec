"""``lvsd demo`` itself, run as an operator runs it (a subprocess, nobody at the keyboard).

* the full scenario shows the mission: the VIP moves to the backup and back, rs2 goes to weight
  0 (``inhibit_on_failure``) and back to 1, one ``lvsd status`` table, the client's success
  rate, the status page addresses and the data plane (kernel IPVS where the kernel has it);
* it changes nothing on the host: the systemd unit state, the host's nftables tables, its
  network namespaces and ``/tmp`` (the demo's work dir goes under a ``TMPDIR`` of the test's
  own, which must be empty afterwards; nothing lvsd writes by fixed path appears in ``/tmp``)
  are the same before and after;
* Ctrl-C (SIGINT) in the middle of ``--keep`` cleans everything up and exits 130, and while
  it runs the printed status page address answers from the host.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import require
from lvsd.lab.netns import cleanup_stale, have_netns

pytestmark = pytest.mark.netns

TMP = Path("/tmp")
# names lvsd or keepalived's conventions put straight into /tmp, whatever TMPDIR says
FIXED_TMP_NAMES = ("keepalived", "lvsd.log", "lvsd.")


def _namespaces(prefix: str) -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                         check=False).stdout
    return [ln.split()[0] for ln in out.splitlines() if ln.startswith(prefix)]


def _prefix(output: str) -> str:
    m = re.search(r"in network namespaces (\S+)-\* \(work dir (\S+)\)", output)
    assert m, output
    return m.group(1)


def _workdir(output: str) -> Path:
    m = re.search(r"\(work dir (\S+)\)", output)
    assert m, output
    return Path(m.group(1))


def _cmd(*argv: str) -> str:
    if shutil.which(argv[0]) is None:
        return f"({argv[0]} not installed)"
    p = subprocess.run(list(argv), capture_output=True, text=True, check=False, timeout=60)
    return f"rc={p.returncode}\n{p.stdout}"


def _unit_state() -> str:
    """What systemd would start at boot (the enablement symlinks, which `systemctl disable`
    changes even when systemd is not running) and, under a running systemd, every service's
    load/active/sub state."""
    links = []
    root = Path("/etc/systemd/system")
    if root.is_dir():
        for p in sorted(root.rglob("*")):
            if p.is_symlink():
                links.append(f"{p.relative_to(root)} -> {os.readlink(p)}")
    units = ""
    if Path("/run/systemd/system").is_dir():
        units = _cmd("systemctl", "list-units", "--type=service", "--all", "--plain",
                     "--no-legend", "--no-pager")
    return "\n".join(links) + "\n" + units


def _host_state() -> dict[str, str]:
    return {
        "systemd units": _unit_state(),
        "nft tables": _cmd("nft", "list", "tables"),
        "demo namespaces": "\n".join(_namespaces("lvsdemo-")),
        "fixed /tmp names": "\n".join(sorted(p.name for p in TMP.iterdir()
                                             if p.name.startswith(FIXED_TMP_NAMES))),
    }


def _kernel_has_ipvs() -> bool:
    from lvsd.dataplane.ipvs import probe

    return asyncio.run(probe()) is None


def test_demo_shows_the_mission_and_changes_nothing_on_the_host() -> None:
    require(have_netns())  # skip locally, fail in CI
    before = _host_state()
    tmpdir = Path(tempfile.mkdtemp(prefix="lt-demo-tmpdir-"))
    prefix = ""
    try:
        p = subprocess.run([sys.executable, "-m", "lvsd.cli", "demo", "--duration", "1"],
                           capture_output=True, text=True, timeout=240, check=False,
                           env=dict(os.environ, TMPDIR=str(tmpdir)), stdin=subprocess.DEVNULL)
        out = p.stdout
        prefix = _prefix(out)
        print(out[-6000:])
        assert p.returncode == 0, out[-4000:] + p.stderr[-2000:]
        # the data plane it says it used is the kernel's IPVS exactly when the kernel has it
        want = "ipvs" if _kernel_has_ipvs() else "nftables"
        assert re.search(rf"^data plane: {want} \(", out, re.M), out[:2000]
        assert re.search(r"^status pages .*d1 http://127\.0\.0\.1:\d+/ +d2 http://127\.0\.0"
                         r"\.1:\d+/$", out, re.M)
        # the VIP moved to the backup and back
        assert re.search(r"VIP 192\.0\.2\.100 moved d1 -> d2: d2 is MASTER$", out, re.M)
        assert re.search(r"VIP 192\.0\.2\.100 moved d2 -> d1: d1 is MASTER again$", out, re.M)
        assert re.search(r"^  VIP 192\.0\.2\.100 held by d1 -> d2 -> d1$", out, re.M)
        # rs2 at weight 0 (inhibit_on_failure), seen in the live lines and in lvsd status
        assert "rs2 DOWN: kept in the pool at weight 0" in out
        assert re.search(r"weights rs1=1 rs2=0\(down\) rs3=1$", out, re.M)
        assert re.search(r"^  rs2 weight +1 -> 0 -> 1$", out, re.M)
        table = out.split("--- lvsd status", 1)[1].split("\n---\n", 1)[0]
        assert "IP Virtual Server" in table, table
        assert re.search(r"-> 10\.0\.0\.12:80 +Masq +0 .* DOWN", table), table
        assert re.search(r"-> 10\.0\.0\.11:80 +Masq +1 .* UP", table), table
        # the client's success rate, live and in the summary
        assert re.search(r"client +\d+/\d+ +ok +\d+\.\d%", out)
        m = re.search(r"^  client +(\d+)/(\d+) requests ok \(\d+\.\d%\), (\d+) failed$", out,
                      re.M)
        assert m and int(m.group(2)) > 0 and int(m.group(1)) + int(m.group(3)) == int(
            m.group(2)), out[-1500:]
        assert "every step happened" in out
        # nothing left, nothing of the host changed
        assert _namespaces(prefix) == []
        assert not _workdir(out).exists()
        assert list(tmpdir.iterdir()) == []
        after = _host_state()
        for what in before:
            assert after[what] == before[what], what
    finally:
        if prefix:
            cleanup_stale(prefix)
        shutil.rmtree(tmpdir, ignore_errors=True)


def test_demo_ctrl_c_cleans_up_and_exits_130() -> None:
    require(have_netns())  # skip locally, fail in CI
    proc = subprocess.Popen([sys.executable, "-u", "-m", "lvsd.cli", "demo", "--scenario",
                             "steady", "--duration", "1", "--keep"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            stdin=subprocess.DEVNULL)
    out = ""
    prefix = ""
    workdir: Path | None = None
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 120
        while "press Ctrl-C" not in out and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            out += line
        prefix = _prefix(out)
        workdir = _workdir(out)
        assert "press Ctrl-C" in out, out
        assert len(_namespaces(prefix)) == 8  # bridge + 2 directors + 4 servers + client
        assert workdir.is_dir()
        # --keep says how to look inside
        assert f"ip netns exec {prefix}-d1 " in out and " status" in out
        assert "nft list ruleset" in out or "ipvsadm -Ln" in out
        # the status page address it printed answers from the host, with the lab's state
        m = re.search(r"# d1's status page\n +(http://127\.0\.0\.1:\d+/)", out)
        assert m, out
        with urllib.request.urlopen(m.group(1) + "status", timeout=20) as r:
            status = json.loads(r.read())
        assert status["instances"][0]["state"] == "MASTER"
        with urllib.request.urlopen(m.group(1), timeout=20) as r:
            assert r.status == 200 and b"<html" in r.read().lower()

        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=90)
        out += rest
        assert proc.returncode == 130, out[-3000:]
        assert "interrupted (SIGINT)" in out
        assert "cleaning up" in out
        assert _namespaces(prefix) == []
        assert not workdir.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if prefix:
            cleanup_stale(prefix)
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)
