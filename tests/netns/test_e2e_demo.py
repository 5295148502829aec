"""``lvsd demo`` itself: it runs its scenario to the end, and it leaves nothing behind, either
at a normal end or on Ctrl-C (SIGINT) in the middle."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time

import pytest

from conftest import require
from lvsd.lab.netns import cleanup_stale, have_netns

pytestmark = pytest.mark.netns



def _namespaces(prefix: str) -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                         check=False).stdout
    return [ln.split()[0] for ln in out.splitlines() if ln.startswith(prefix)]


def _prefix(output: str) -> str:
    m = re.search(r"^namespaces: (\S+)-\*$", output, re.M)
    assert m, output
    return m.group(1)


def test_demo_runs_its_scenario_and_cleans_up() -> None:
    require(have_netns())  # skip locally, fail in CI
    p = subprocess.run([sys.executable, "-m", "lvsd.cli", "demo", "--duration", "1"],
                       capture_output=True, text=True, timeout=150, check=False)
    prefix = _prefix(p.stdout)
    try:
        print(p.stdout[-3000:])
        assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-2000:]
        for step in ("rs2 marked DOWN", "rs2 back UP", "took over as MASTER",
                     "is MASTER again", "done:"):
            assert step in p.stdout, step
        assert re.search(r"client +\d+/\d+ +ok", p.stdout)
        assert _namespaces(prefix) == []
    finally:
        cleanup_stale(prefix)


def test_demo_ctrl_c_cleans_up() -> None:
    require(have_netns())  # skip locally, fail in CI
    proc = subprocess.Popen([sys.executable, "-u", "-m", "lvsd.cli", "demo", "--scenario",
                             "steady", "--duration", "1", "--keep"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = ""
    prefix = ""
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 90
        while "press Ctrl-C" not in out and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            out += line
        prefix = _prefix(out)
        assert "press Ctrl-C" in out, out
        assert len(_namespaces(prefix)) == 8  # bridge + 2 directors + 4 servers + client
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
        out += rest
        assert "cleaning up" in out
        assert _namespaces(prefix) == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if prefix:
            cleanup_stale(prefix)
