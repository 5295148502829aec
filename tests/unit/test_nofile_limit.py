"""``lvsd run`` raises its soft descriptor limit at start (keepalived lib/process.c
set_max_file_limit), bounded by the hard limit and by NOFILE_WANTED (issue 16 item 1)."""

from __future__ import annotations

import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from lvsd.daemon.limits import NOFILE_WANTED

pytestmark = pytest.mark.unit


def limited(soft: int, hard: int) -> Callable[[], None]:
    def set_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return set_limit


def nofile_of(pid: int) -> tuple[str, str]:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return soft, hard
    raise AssertionError("no Max open files line")


def test_lvsd_run_raises_its_soft_limit_to_the_hard_limit(tmp_path: Path) -> None:
    conf = tmp_path / "keepalived.conf"
    conf.write_text("global_defs {\n router_id limits\n}\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "lvsd.cli", "run", "-f", str(conf), "--check-only", "-G",
         "--dataplane", "memory", "--status-listen", "off", "-p", ""],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=limited(256, 4096))
    try:
        deadline = time.monotonic() + 30
        while nofile_of(proc.pid) != ("4096", "4096"):
            assert proc.poll() is None, proc.communicate()[1].decode()
            assert time.monotonic() < deadline, nofile_of(proc.pid)
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert "open file limit raised from 256 to 4096" in err.decode()


@pytest.mark.parametrize(("soft", "hard", "wanted", "result"), [
    (256, 4096, 1000, 1000),  # bounded: not the whole of a larger hard limit
    (2000, 4096, 1000, 2000),  # never lowered
    (256, 1024, NOFILE_WANTED, 1024),  # the hard limit is the ceiling
])
def test_bounds(soft: int, hard: int, wanted: int, result: int) -> None:
    code = ("import resource; from lvsd.daemon.limits import raise_nofile_limit; "
            f"raise_nofile_limit({wanted}); print(resource.getrlimit(resource.RLIMIT_NOFILE)[0])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, preexec_fn=limited(soft, hard))
    assert int(out.stdout) == result
