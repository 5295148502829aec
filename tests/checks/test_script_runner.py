"""The one script runner with real processes: the kill policy on process groups, no shell ever,
the user/group rule, the exec-time security refusal (lvsd.scriptrun; keepalived lib/notify.c)."""

from __future__ import annotations

import asyncio
import os
import signal
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import require
from lvsd.checks import misc
from lvsd.config.model import NOPOS, Checker, CheckKind, Script
from lvsd.scriptrun import ScriptRunner, ScriptSpec
from lvsd.vrrp.notify import Notifier

pytestmark = pytest.mark.realserver


def alive(pid: int) -> bool:
    """Running (a zombie waiting to be reaped counts as dead)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


async def gone(pid: int) -> bool:
    """True once ``pid`` is dead; polls a bounded number of times (SIGKILL is not instant)."""
    for _ in range(200):
        if not alive(pid):
            return True
        await asyncio.sleep(0.01)
    return False


async def appears(path: Path) -> str:
    for _ in range(500):
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        await asyncio.sleep(0.01)
    raise AssertionError(f"{path} never written")


def sh(d: Path, name: str, body: str) -> str:
    p = d / name
    p.write_text("#!/bin/sh\n" + body + "\n")
    p.chmod(0o755)
    return str(p)


@pytest.fixture
def shared_dir_for_all() -> Iterator[Path]:
    """A directory every user can enter, read and write (scripts run as nobody too)."""
    with tempfile.TemporaryDirectory(prefix="lvsd-scr-") as d:
        os.chmod(d, 0o755)
        yield Path(d)


# ------------------------------------------------------------------ the kill policy


async def test_term_ignoring_script_and_grandchild_killed_with_the_group(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    # the script and its background child ignore SIGTERM (SIG_IGN is inherited)
    path = sh(tmp_path, "stubborn.sh",
              f"trap '' TERM\nsleep 300 &\necho $$ $! > {pids}\nwhile :; do sleep 0.05; done")
    out = await ScriptRunner(grace=0.3).run(ScriptSpec(path), timeout=0.3)
    assert out.timed_out and out.status is None and out.signal is None
    # SIGTERM at the timeout was not enough: SIGKILL to the process group after the grace
    assert out.signals_sent == (signal.SIGTERM, signal.SIGKILL)
    leader, grandchild = (int(x) for x in pids.read_text().split())
    assert leader == out.pid
    assert await gone(leader) and await gone(grandchild), "the group outlived the timeout"


async def test_term_killed_leader_takes_its_children_along(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    # the leader dies of SIGTERM; its child ignores SIGTERM: keepalived SIGKILLs the group
    path = sh(tmp_path, "hang.sh",
              f"(trap '' TERM; exec sleep 300) &\necho $! > {pidfile}\nwait")
    out = await ScriptRunner(grace=30.0).run(ScriptSpec(path), timeout=0.3)
    assert out.timed_out and out.signals_sent == (signal.SIGTERM,)
    assert await gone(int(pidfile.read_text())), "the script's child outlived the check"


async def test_trapped_term_then_exit_status_counts(tmp_path: Path) -> None:
    path = sh(tmp_path, "trap.sh", "trap 'exit 0' TERM\nwhile :; do sleep 0.05; done")
    out = await ScriptRunner(grace=30.0).run(ScriptSpec(path), timeout=0.3)
    # keepalived looks at WIFEXITED first: a script that answers our SIGTERM with exit 0 is OK
    assert out.signals_sent == (signal.SIGTERM,) and not out.timed_out and out.status == 0


async def test_cancelled_run_stops_the_script(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    path = sh(tmp_path, "long.sh", f"echo $$ > {pidfile}\nexec sleep 300")
    task = asyncio. create_task(ScriptRunner().run(ScriptSpec(path), timeout=None))
    pid = int(await appears(pidfile))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await gone(pid)


async def test_signal_not_ours_is_reported(tmp_path: Path) -> None:
    out = await ScriptRunner().run(ScriptSpec(sh(tmp_path, "k.sh", "kill -USR1 $$")),
                                   timeout=5.0)
    assert out.signal == signal.SIGUSR1 and not out.timed_out and out.signals_sent == ()
    assert out.describe() == f"due to signal {int(signal.SIGUSR1)}"


# ------------------------------------------------------------------ no shell, ever


async def test_notify_metacharacters_do_not_run_a_shell(tmp_path: Path) -> None:
    d = tmp_path
    n = Notifier("INSTANCE", "VI_1", {
        "MASTER": ScriptSpec(f"/usr/bin/touch {d}/marker;id"),
        "BACKUP": ScriptSpec(f"/usr/bin/touch {d}/x$(id${{IFS}}-u) {d}/a|id>y&"),
    }, (), timeout=10.0)
    n.notify("MASTER", 100)
    n.notify("BACKUP", 100)
    await n.drain(20)
    assert n.stats.started == 2 and n.stats.failed == 0, n.stats
    # touch got the words as they are: the files are named with the metacharacters; a shell
    # would have made "marker", "x0", "a" and "y"
    names = sorted(p.name for p in d.iterdir())
    assert names == ["a|id>y&", "marker;id", "x$(id${IFS}-u)"], names


async def test_misc_check_command_is_not_expanded(tmp_path: Path) -> None:
    ck = Checker(CheckKind.MISC_CHECK, NOPOS, "127.0.0.1", 0,
                 misc_path=Script(f"/usr/bin/touch {tmp_path}/$(id${{IFS}}-u) {tmp_path}/a;id"),
                 misc_timeout=10.0)
    r = await misc.probe(ck)
    assert r.ok, r.reason
    assert sorted(p.name for p in tmp_path.iterdir()) == ["$(id${IFS}-u)", "a;id"]


async def test_quoted_words_and_file_test(tmp_path: Path) -> None:
    out_file = tmp_path / "args"
    path = sh(tmp_path, "a.sh", f'for a in "$@"; do echo "[$a]"; done > {out_file}')
    out = await ScriptRunner().run(ScriptSpec(f"{path} 'a b' \"c'd\" e\\ f"), ("X Y",),
                                   timeout=10.0)
    assert out.status == 0
    assert out_file.read_text().splitlines() == ["[a b]", "[c'd]", "[e f]", "[X Y]"]
    # keepalived's "</path": the file opens (0) or not (dash: 2); the path is not shell text
    ok = await ScriptRunner().run(ScriptSpec(f"<{out_file}"), timeout=10.0)
    bad = await ScriptRunner().run(ScriptSpec(f"'<{tmp_path}/none;touch {tmp_path}/p'"),
                                   timeout=10.0)
    assert (ok.status, bad.status) == (0, 2) and not (tmp_path / "p").exists()


async def test_unexecutable_is_not_run(tmp_path: Path) -> None:
    out = await ScriptRunner().run(ScriptSpec(str(tmp_path / "nope")), timeout=1.0)
    assert not out.ran and out.error is not None
    assert out.error.startswith(f"Error exec-ing command '{tmp_path}/nope', error 2: ")


# ------------------------------------------------------------------ users


async def test_runs_as_the_configured_user(shared_dir_for_all: Path) -> None:
    require("running as another user needs root" if os.geteuid() != 0 else None)
    d = shared_dir_for_all
    out_file = d / "ids"
    out_file.touch()
    out_file.chmod(0o666)
    path = sh(d, "ids.sh", f'echo "$1 $(id -u) $(id -g) $(id -G)" >> {out_file}')
    users_gid = 100  # Debian's "users" group
    n = Notifier("INSTANCE", "VI_1", {
        "MASTER": ScriptSpec(f"{path} own-user", user="nobody"),
        "BACKUP": ScriptSpec(f"{path} own-user-group", user="nobody", group="users"),
        "FAULT": ScriptSpec(f"{path} default"),
    }, (), default_user="daemon", default_group="users", timeout=10.0)
    for state in ("MASTER", "BACKUP", "FAULT"):
        n.notify(state, 100)
    await n.drain(20)
    lines = out_file.read_text().splitlines()
    assert lines == [
        # its own user: that user's primary group, not the global script_group
        "own-user 65534 65534 65534",
        "own-user-group 65534 100 100",
        # no user of its own: script_user daemon (uid 1) with script_group users;
        # supplementary groups reset to that one group (no root groups left)
        f"default 1 {users_gid} {users_gid}",
    ], lines


async def test_unknown_user_is_not_run_as_root(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    out = await ScriptRunner().run(ScriptSpec(f"/usr/bin/touch {marker}", user="no-such-u"),
                                   timeout=5.0)
    assert out.error == "Script user 'no-such-u' does not exist" and not marker.exists()


# ------------------------------------------------------------------ enable_script_security


async def test_security_refuses_a_script_made_unsafe_after_load(tmp_path: Path) -> None:
    require("script security applies to root scripts" if os.geteuid() != 0 else None)
    d = tmp_path / "bin"
    d.mkdir(mode=0o755)
    marker = tmp_path / "ran"
    path = sh(d, "s.sh", f"touch {marker}")
    runner = ScriptRunner(security=True)
    # every path element root-owned and safe (tmp_path's parents: /tmp is sticky)
    for p in [d, *d.parents]:
        st = p.stat()
        require(None if st.st_uid == 0 and (st.st_mode & stat.S_ISVTX or not st.st_mode & 0o022)
                else f"{p} is not a safe root directory")
    ok = await runner.run(ScriptSpec(path, user="root"), timeout=5.0)
    assert ok.status == 0 and marker.exists()
    marker.unlink()
    d.chmod(0o777)  # someone made the directory world-writable
    out = await runner.run(ScriptSpec(path, user="root"), timeout=5.0)
    assert out.error == f"Unsafe permissions found for script '{path}' - disabling."
    assert not marker.exists()
    # without enable_script_security keepalived runs it anyway (and warns at load)
    out = await ScriptRunner(security=False).run(ScriptSpec(path, user="root"), timeout=5.0)
    assert out.status == 0 and marker.exists()
    # as an unprivileged user nothing needs protecting
    d.chmod(0o755)
    os.chmod(path, 0o757)  # world-writable file: unsafe for root only
    marker.unlink()
    out = await runner.run(ScriptSpec(path, user="root"), timeout=5.0)
    assert out.error == f"Unsafe permissions found for script '{path}' - disabling."


# ------------------------------------------------------------------ the pool's scripts


async def test_daemon_pool_scripts_go_through_the_runner(shared_dir_for_all: Path) -> None:
    """quorum_up from a real (check-only, in-memory) daemon: words, no shell, script_user."""
    require("running as another user needs root" if os.geteuid() != 0 else None)
    from lvsd.daemon import Daemon, Options

    d = shared_dir_for_all
    out_file = d / "ran"
    out_file.touch()
    out_file.chmod(0o666)
    path = sh(d, "q.sh", f'echo "[$*] $(id -u) $(id -g) $(id -G)" >> {out_file}')
    conf = d / "k.conf"
    conf.write_text(
        "global_defs {\n  script_user nobody users\n}\n"
        "virtual_server 192.0.2.10 80 {\n  protocol TCP\n  lb_algo rr\n  lb_kind NAT\n"
        f'  quorum_up "{path} up;touch {d}/pwned"\n'
        "  real_server 10.0.0.1 80 {\n    weight 1\n  }\n}\n")
    daemon = Daemon(Options(config_file=str(conf), dataplane="memory", status_listen=None,
                            mode="check-only", sweep_interval=3600))
    run = asyncio.create_task(daemon.run())
    try:
        # two words (no shell); script_user nobody with script_group users (gid 100)
        assert await appears(out_file) == f"[up;touch {d}/pwned] 65534 100 100"
    finally:
        daemon._stop.set()  # what SIGTERM does
        assert await asyncio.wait_for(run, 30) == 0
    assert not (d / "pwned").exists()
