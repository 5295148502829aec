"""A script stopped by a reload or a shutdown leaves no process behind (issue 16 item 5).

Real scripts with 50 background children each; survivors are looked up in /proc by process
group. After the stop returns, the event loop is deliberately blocked while we look: whatever
lvsd still had to do for the group must have been done by then.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from pathlib import Path

import pytest

from lvsd.checks.scheduler import Scheduler
from lvsd.config.loader import loads
from lvsd.scriptrun import ScriptRunner, ScriptSpec, wait_stopped

pytestmark = pytest.mark.realserver

CHILDREN = 50


def members(pgid: int) -> list[int]:
    """Live (not zombie) processes of process group ``pgid``."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{name}/stat").read_text()
        except OSError:
            continue
        state, _ppid, pgrp = stat.rsplit(")", 1)[1].split()[:3]
        if state != "Z" and int(pgrp) == pgid:
            out.append(int(name))
    return out


def survivors_after_stop(pgid: int, limit: float = 10.0) -> list[int]:
    """The group's processes still alive once SIGKILL had ``limit`` seconds to take effect.
    Blocking on purpose: the event loop cannot send anything meanwhile."""
    end = time.monotonic() + limit
    while (left := members(pgid)) and time.monotonic() < end:
        time.sleep(0.02)
    return left


def kill_left(pgid: int) -> None:
    for pid in members(pgid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 9)


async def started(pidfile: Path, children: int = CHILDREN) -> int:
    """The leader's pid once it and all its children are running."""
    for _ in range(1000):
        if pidfile.exists() and pidfile.read_text().strip():
            pid = int(pidfile.read_text())
            if len(members(pid)) >= children + 1:
                return pid
        await asyncio.sleep(0.01)
    raise AssertionError("the script never started its children")


def script(tmp: Path, body: str) -> tuple[str, Path]:
    pidfile = tmp / "leader.pid"
    path = tmp / "stubborn.sh"
    path.write_text("#!/bin/sh\n" + body.replace("PIDFILE", str(pidfile)) + "\n")
    path.chmod(0o755)
    return str(path), pidfile


# every child ignores SIGTERM (SIG_IGN is inherited), the leader too
IGNORES_TERM = (f"trap '' TERM\nfor i in $(seq {CHILDREN}); do sleep 300 & done\n"
                "echo $$ > PIDFILE\nwhile :; do sleep 0.05; done")
# the leader answers SIGTERM with exit 0; its children ignore SIGTERM
EXITS_ON_TERM = (f"for i in $(seq {CHILDREN}); do (trap '' TERM; exec sleep 300) & done\n"
                 "trap 'exit 0' TERM\necho $$ > PIDFILE\nwhile :; do sleep 0.05; done")


async def test_stopped_script_answering_term_takes_its_children_along(tmp_path: Path) -> None:
    path, pidfile = script(tmp_path, EXITS_ON_TERM)
    task = asyncio.create_task(ScriptRunner().run(ScriptSpec(path), timeout=None))
    pgid = await started(pidfile)
    try:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # the leader exited 0 on the stop's SIGTERM: the group still gets SIGKILL
        assert survivors_after_stop(pgid) == []
    finally:
        kill_left(pgid)


async def test_second_cancel_does_not_abandon_the_kill(tmp_path: Path) -> None:
    path, pidfile = script(tmp_path, IGNORES_TERM)
    task = asyncio.create_task(ScriptRunner().run(ScriptSpec(path), timeout=None))
    pgid = await started(pidfile)
    try:
        task.cancel()
        await asyncio.sleep(0.1)  # the stop's SIGTERM is ignored; SIGKILL is 1 s away
        task.cancel()  # e.g. a shutdown cancelling what is left
        with pytest.raises(asyncio.CancelledError):
            await task
        await wait_stopped()
        assert survivors_after_stop(pgid) == []
    finally:
        kill_left(pgid)


def misc_conf(path: str, with_check: bool = True) -> str:
    check = f"""
        MISC_CHECK {{
            misc_path {path}
            misc_timeout 0.3
            warmup 0
        }}""" if with_check else ""
    return f"""
virtual_server 10.0.0.1 80 {{
    delay_loop 60
    lb_algo rr
    lb_kind NAT
    protocol TCP
    real_server 127.0.0.1 80 {{{check}
    }}
}}
"""


@pytest.mark.parametrize("how", ["reload", "shutdown"])
async def test_misc_check_stopped_in_its_kill_grace_leaves_nothing(tmp_path: Path,
                                                                   how: str) -> None:
    path, pidfile = script(tmp_path, IGNORES_TERM)
    sched = Scheduler(loads(misc_conf(path)))
    await sched.start()
    pgid = 0
    try:
        pgid = await started(pidfile)
        # misc_timeout 0.3: SIGTERM (ignored) sent, SIGKILL due 2 s later (KILL_GRACE)
        await asyncio.sleep(0.6)
        assert members(pgid), "the script died before the test could stop it"
        if how == "reload":
            sched.update(loads(misc_conf(path, with_check=False)))
        await sched.close()
        assert survivors_after_stop(pgid) == []
    finally:
        try:
            await sched.close()
        finally:
            if pgid:
                kill_left(pgid)
