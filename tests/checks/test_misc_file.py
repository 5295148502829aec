"""MISC_CHECK with real scripts and FILE_CHECK with real files."""

from __future__ import annotations

import os
import stat
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import require
from lvsd.checks import file as file_check
from lvsd.checks import misc
from lvsd.config.model import NOPOS, Checker, CheckKind, Script

pytestmark = pytest.mark.realserver


def script(tmp: Path, name: str, body: str) -> str:
    p = tmp / name
    p.write_text("#!/bin/sh\n" + body + "\n")
    p.chmod(p.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return str(p)


def alive(pid: int) -> bool:
    """Running (a zombie waiting for its new parent to reap it counts as dead)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


def misc_ck(cmd: str, user: str | None = None, **kw: Any) -> Checker:
    return Checker(CheckKind.MISC_CHECK, NOPOS, "127.0.0.1", 0,
                   misc_path=Script(cmd, user=user), **kw)


@pytest.mark.parametrize("code,dynamic,ok,reason,weight", [
    (0, False, True, "script exit 0", None),
    (1, False, False, "script exit 1", None),
    (7, False, False, "script exit 7", None),
    (1, True, False, "script exit 1", None),
    (7, True, True, "script exit 7 (weight 5)", 5),
    (2, True, True, "script exit 2 (weight 0)", 0),
    (255, True, True, "script exit 255 (weight 253)", 253),
])
async def test_exit_codes(tmp_path: Path, code: int, dynamic: bool, ok: bool, reason: str,
                          weight: int | None) -> None:
    path = script(tmp_path, "s.sh", f"exit {code}")
    r = await misc.probe(misc_ck(path, misc_dynamic=dynamic, misc_timeout=5.0))
    assert (r.ok, r.reason, r.weight) == (ok, reason, weight)


async def test_hanging_script_and_its_children_are_killed_on_timeout(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    path = script(tmp_path, "hang.sh", f"sleep 300 &\necho $! > {pidfile}\nwait")
    r = await misc.probe(misc_ck(path, misc_timeout=0.5))
    assert not r.ok and r.reason == "script timeout after 500 ms"
    child = int(pidfile.read_text())
    for _ in range(50):
        if not alive(child):
            break
        time.sleep(0.02)
    assert not alive(child), "the script's child outlived the check"


async def test_term_ignoring_script_is_killed_after_grace(tmp_path: Path) -> None:
    path = script(tmp_path, "stubborn.sh", "trap '' TERM\nwhile :; do sleep 0.05; done")
    r = await misc.probe(misc_ck(path, misc_timeout=0.3), grace=0.3)
    assert not r.ok and r.reason == "script timeout after 300 ms"
    # the signals sent: tests/checks/test_script_runner.py


async def test_words_never_a_shell(tmp_path: Path) -> None:
    # keepalived execs the words (lib/notify.c): no shell, so `&&` and `||` are arguments
    flag = tmp_path / "flag"
    r = await misc.probe(misc_ck(f"test -e {flag}"))
    assert not r.ok and r.reason == "script exit 1"
    flag.write_text("")
    r = await misc.probe(misc_ck(f"test -e '{flag}'"))
    assert r.ok
    r = await misc.probe(misc_ck(f"test -e {flag} && exit 0 || exit 1"))
    assert not r.ok and r.reason == "script exit 2"  # test(1): too many arguments
    r = await misc.probe(misc_ck(str(tmp_path / "does-not-exist")))
    assert not r.ok and r.reason.startswith("cannot run script: Error exec-ing command")


async def test_runs_as_script_user() -> None:
    require("running as another user needs root" if os.geteuid() != 0 else None)
    with tempfile.TemporaryDirectory(prefix="lvsd-misc-") as d:
        os.chmod(d, 0o755)  # readable by nobody
        await _as_user(Path(d))


async def _as_user(tmp_path: Path) -> None:
    path = script(tmp_path, "who.sh", '[ "$(id -u)" = "65534" ] && exit 0 || exit 1')
    r = await misc.probe(misc_ck(path, user="nobody"))
    assert r.ok, r.reason
    r = await misc.probe(misc_ck(path))  # as ourselves (root): exit 1
    assert not r.ok
    r = await misc.probe(misc_ck(path), default_user="nobody")  # global script_user
    assert r.ok


# ------------------------------------------------------------------------------ FILE_CHECK


def file_ck(path: Path, weight: int | None) -> Checker:
    return Checker(CheckKind.FILE_CHECK, NOPOS, "127.0.0.1", 0, track_file=str(path),
                   file_weight=weight)


@pytest.mark.parametrize("content,weight,ok,offset", [
    ("0\n", 0, True, None), ("1\n", 0, False, None), ("5", 2, True, 10), ("-3", 4, True, -12),
    ("0x10", 1, True, 16), ("010", 1, True, 8), ("junk", 3, True, 0),
    ("-2147483648", 1, False, None),
])
def test_file_values(tmp_path: Path, content: str, weight: int, ok: bool,
                     offset: int | None) -> None:
    p = tmp_path / "state"
    p.write_text(content)
    r = file_check.probe_sync(file_ck(p, weight))
    assert (r.ok, r.weight) == (ok, offset), r.reason


def test_missing_file_counts_as_zero(tmp_path: Path) -> None:
    r = file_check.probe_sync(file_ck(tmp_path / "absent", 0))
    assert r.ok and "counted as 0" in r.reason
