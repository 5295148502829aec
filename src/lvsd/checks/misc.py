"""MISC_CHECK: run ``misc_path``, judge its exit status (keepalived ``check_misc.c``).

* exit 0: up. With ``misc_dynamic``, exit 2..255: up with weight ``status - 2`` (0..253);
  exit 1 (or 2..255 without misc_dynamic): down, "script exit N". A signal: down, "killed by
  signal N".
* The command runs without a shell (split like a POSIX shell would split it) unless it needs one
  (shell metacharacters: pipes, redirections, ``$``, globbing, ``;``, ``&``...): ``sh -c``.
* It runs as the script's ``user [group]`` or the global ``script_user``, in its own process group
  (new session), stdin/stdout/stderr on /dev/null.
* Timeout is ``misc_timeout`` (default delay_loop). On expiry the whole process group gets SIGTERM,
  then SIGKILL after :data:`KILL_GRACE` seconds if still there (keepalived: 2 s); the attempt
  fails with "script timeout after N ms". Once the leader is gone, the group is SIGKILLed so no
  child outlives the check.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shlex
import signal
import time

from lvsd.checks.result import ProbeResult, ms
from lvsd.config.model import Checker

KILL_GRACE = 2.0
_SHELL_CHARS = re.compile(r"[|&;<>()$`*?\[\]{}~\n]")


def argv_for(command: str) -> list[str]:
    """argv to execute ``command``: direct exec unless it needs a shell."""
    if _SHELL_CHARS.search(command):
        return ["/bin/sh", "-c", command]
    try:
        argv = shlex.split(command)
    except ValueError:
        return ["/bin/sh", "-c", command]
    return argv or ["/bin/sh", "-c", command]


def _killpg(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


async def probe(ck: Checker, default_user: str | None = None,
                default_group: str | None = None, grace: float = KILL_GRACE) -> ProbeResult:
    t0 = time.monotonic()
    if ck.misc_path is None:
        return ProbeResult(False, "no misc_path", 0.0, started=t0)
    timeout = ck.misc_timeout if ck.misc_timeout is not None else ck.delay_loop
    user = ck.misc_path.user or default_user
    group = ck.misc_path.group or (default_group if ck.misc_path.user is None else None)
    argv = argv_for(ck.misc_path.command)
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL, start_new_session=True,
            user=user if user and os.geteuid() == 0 else None,
            group=group if group and os.geteuid() == 0 else None)
    except (OSError, ValueError, KeyError) as e:  # KeyError/ValueError: unknown user/group
        return ProbeResult(False, f"cannot run script: {e}", time.monotonic() - t0, started=t0)
    timed_out = False
    try:
        await asyncio.wait_for(proc.wait(), timeout)
    except TimeoutError:
        timed_out = True
        _killpg(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), grace)
        except TimeoutError:
            _killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
    except asyncio.CancelledError:
        _killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            await asyncio.shield(proc.wait())
        raise
    _killpg(proc.pid, signal.SIGKILL)  # children left in the group
    lat = time.monotonic() - t0
    rc = proc.returncode
    if timed_out:
        return ProbeResult(False, f"script timeout after {ms(timeout)}", lat, started=t0)
    assert rc is not None
    if rc < 0:
        return ProbeResult(False, f"script killed by signal {-rc}", lat, started=t0)
    if rc == 0:
        return ProbeResult(True, "script exit 0", lat, started=t0)
    if ck.misc_dynamic and 2 <= rc <= 255:
        return ProbeResult(True, f"script exit {rc} (weight {rc - 2})", lat, weight=rc - 2,
                           started=t0)
    return ProbeResult(False, f"script exit {rc}", lat, started=t0)
