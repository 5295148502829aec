"""The pid file is a lock, never a judge of availability (issue 16 item 6).

Real ``lvsd run`` processes: a pid file naming a live unrelated process or an exited but not
reaped one does not block the start; a second lvsd while the lock is held is refused with
keepalived's "daemon is already running"; on a full file system (a tmpfs we mount and fill)
lvsd starts anyway and leaves nothing behind.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import require
from lvsd.daemon import pidfile

pytestmark = pytest.mark.unit

HOLDER = ("import sys; from lvsd.daemon import pidfile; "
          "assert pidfile.acquire(sys.argv[1]); print('locked', flush=True); sys.stdin.read()")


def start_lvsd(tmp: Path, pid_path: Path) -> subprocess.Popen[bytes]:
    conf = tmp / "keepalived.conf"
    conf.write_text("global_defs {\n router_id pidfile\n}\n")
    log = open(tmp / "lvsd.log", "wb")  # noqa: SIM115 -- the child's stderr, closed below
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "lvsd.cli", "run", "-f", str(conf), "--check-only", "-G",
             "--dataplane", "memory", "--status-listen", "off", "--pid-file", str(pid_path)],
            stdout=subprocess.DEVNULL, stderr=log)
    finally:
        log.close()


def wait_for_pid(proc: subprocess.Popen[bytes], path: Path, log: Path) -> None:
    """Until ``path`` holds ``proc``'s pid (lvsd is up)."""
    deadline = time.monotonic() + 30
    while not (path.exists() and path.read_text().strip() == str(proc.pid)):
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)


def stop(proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    """Another process holding the lock on tmp/lvsd.pid until its stdin closes."""
    path = tmp_path / "lvsd.pid"
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        yield proc, path
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        proc.wait(10)


def test_a_live_unrelated_pid_in_the_file_does_not_block_the_start(tmp_path: Path) -> None:
    path = tmp_path / "lvsd.pid"
    other = subprocess.Popen(["sleep", "300"])
    # longer than lvsd's pid with its padding: the rewrite must not leave a tail
    path.write_text(f"{other.pid}{' ' * 30}\n")
    lvsd = start_lvsd(tmp_path, path)
    try:
        wait_for_pid(lvsd, path, tmp_path / "lvsd.log")
        assert path.read_text() == f"{lvsd.pid}\n"
        assert other.poll() is None  # lvsd never touched it
    finally:
        other.kill()
        other.wait()
        assert stop(lvsd) == 0, (tmp_path / "lvsd.log").read_text()
    assert not path.exists()


def test_an_exited_unreaped_lvsd_does_not_block_the_start(tmp_path: Path) -> None:
    path = tmp_path / "lvsd.pid"
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 10
    while "\nState:\tZ" not in Path(f"/proc/{zombie.pid}/status").read_text():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    path.write_text(f"{zombie.pid}\n")  # kill(pid, 0) succeeds on a zombie
    lvsd = start_lvsd(tmp_path, path)
    try:
        wait_for_pid(lvsd, path, tmp_path / "lvsd.log")
    finally:
        zombie.wait()
        assert stop(lvsd) == 0


def test_a_held_lock_refuses_a_second_lvsd(holder: tuple[subprocess.Popen[str], Path],
                                           tmp_path: Path) -> None:
    proc, path = holder
    assert path.read_text() == f"{proc.pid}\n"
    lvsd = start_lvsd(tmp_path, path)
    assert lvsd.wait(30) == 1
    log = (tmp_path / "lvsd.log").read_text()
    assert "daemon is already running" in log and f"pid {proc.pid}" in log, log
    assert "Traceback" not in log
    assert path.read_text() == f"{proc.pid}\n"  # untouched


def test_the_lock_is_what_counts_not_the_content(holder: tuple[subprocess.Popen[str], Path],
                                                 tmp_path: Path) -> None:
    proc, path = holder
    path.write_text("")  # emptied behind the holder's back: still locked
    lvsd = start_lvsd(tmp_path, path)
    assert lvsd.wait(30) == 1
    assert "daemon is already running" in (tmp_path / "lvsd.log").read_text()
    assert proc.stdin is not None
    proc.stdin.close()  # the holder goes away: the lock with it
    proc.wait(10)
    lvsd = start_lvsd(tmp_path, path)
    try:
        wait_for_pid(lvsd, path, tmp_path / "lvsd.log")
    finally:
        assert stop(lvsd) == 0


@pytest.fixture
def full_fs(tmp_path: Path) -> Iterator[Path]:
    """A tiny tmpfs filled to the last byte."""
    if os.geteuid() != 0:
        require("needs root to mount a tmpfs")
    mnt = tmp_path / "full"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0755", "lt-lvsd-full",
                    str(mnt)], check=True)
    try:
        fd = os.open(mnt / "filler", os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            while os.write(fd, b"\0" * 4096):
                pass
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
        finally:
            os.close(fd)
        with pytest.raises(OSError):  # really full
            (mnt / "probe").write_text("x")
        (mnt / "probe").unlink()
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_full_disk_starts_anyway_and_leaves_nothing(full_fs: Path, tmp_path: Path) -> None:
    path = full_fs / "lvsd.pid"
    lvsd = start_lvsd(tmp_path, path)
    log = tmp_path / "lvsd.log"
    try:
        deadline = time.monotonic() + 30
        while "cannot write the pid" not in log.read_text():
            assert lvsd.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        # running, and holding the lock on the (empty) file: a second lvsd is refused
        (tmp_path / "second").mkdir()
        second = start_lvsd(tmp_path / "second", path)
        assert second.wait(30) == 1
        assert "daemon is already running" in (tmp_path / "second" / "lvsd.log").read_text()
        assert lvsd.poll() is None
    finally:
        assert stop(lvsd) == 0, log.read_text()
    assert sorted(p.name for p in full_fs.iterdir()) == ["filler"]  # no pid file, no temp file


def test_release_leaves_a_file_that_is_no_longer_ours(tmp_path: Path) -> None:
    path = str(tmp_path / "own.pid")
    assert pidfile.acquire(path)
    try:
        assert Path(path).read_text() == f"{os.getpid()}\n"
        os.unlink(path)
        Path(path).write_text("12345\n")  # someone else's now
    finally:
        pidfile.release(path)
    assert Path(path).read_text() == "12345\n"


def test_no_pid_file_possible_is_a_warning_not_a_refusal(tmp_path: Path,
                                                         caplog: pytest.LogCaptureFixture
                                                         ) -> None:
    path = str(tmp_path / "missing-dir" / "lvsd.pid")
    assert pidfile.acquire(path) is False
    assert "starting without a pid file" in caplog.text
    pidfile.release(path)  # nothing held: nothing done


def test_a_forked_child_never_removes_the_parents_pid_file(tmp_path: Path) -> None:
    path = str(tmp_path / "fork.pid")
    assert pidfile.acquire(path)
    try:
        child = os.fork()
        if child == 0:  # the child: what a forked VRRP process would do at its stop
            pidfile.release(path)
            os._exit(0)
        _, status = os.waitpid(child, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert Path(path).read_text() == f"{os.getpid()}\n"
    finally:
        pidfile.release(path)
    assert not Path(path).exists()
