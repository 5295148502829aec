"""MISC_CHECK: run ``misc_path``, judge its exit status (keepalived ``check_misc.c``).

The script runs through the one script runner (:mod:`lvsd.scriptrun`): split into words and
executed without a shell, as its ``user [group]`` or the default script user, in its own
process group, SIGTERM to the group at ``misc_timeout`` (default: the delay_loop), SIGKILL
:data:`KILL_GRACE` seconds later. What the end means (check_misc.c
``misc_check_child_thread``):

* exit 0: up. With ``misc_dynamic``, exit 2..255: up with weight ``status - 2`` (0..253);
  exit 1 (or 2..255 without misc_dynamic): down, "script exit N". An exit status counts even
  after our SIGTERM (a script that traps it and exits 0 is up, as in keepalived);
* ended by our SIGTERM/SIGKILL after the timeout: down, "script timeout after N ms";
* another signal: down, "script killed by signal N";
* not run (cannot be executed, unknown user, unsafe under ``enable_script_security``): down,
  "cannot run script: ..." (keepalived's message);
* not started for a local reason (fork: EAGAIN, ENOMEM; pipes, /dev/null: EMFILE, ENFILE): no
  verdict (``local``), the checker keeps its state. keepalived's misc_check_thread logs
  "Failed fork process" (lib/notify.c system_call) and, as nothing is rescheduled, never runs
  that check again; lvsd tries again at the next attempt.
"""

from __future__ import annotations

import errno
import time

from lvsd.checks.result import LOCAL_ERRNOS, ProbeResult, local_failure, ms
from lvsd.config.model import Checker
from lvsd.scriptrun import ScriptRunner, ScriptSpec
from lvsd.scriptrun.termination import KILL_GRACE

__all__ = ["KILL_GRACE", "judge", "probe"]

_LOCAL = LOCAL_ERRNOS | {errno.EAGAIN}  # + fork() over RLIMIT_NPROC / the pid limit


def judge(ck: Checker, status: int | None, sig: int | None, timed_out: bool, error: str | None,
          timeout: float) -> tuple[bool, str, int | None]:
    """(up, reason, weight) for one end of ``ck``'s script (check_misc.c
    misc_check_child_thread)."""
    if error is not None:
        return False, f"cannot run script: {error}", None
    if timed_out:
        return False, f"script timeout after {ms(timeout)}", None
    if sig is not None:
        return False, f"script killed by signal {sig}", None
    assert status is not None
    if status == 0:
        return True, "script exit 0", None
    if ck.misc_dynamic and 2 <= status <= 255:
        return True, f"script exit {status} (weight {status - 2})", status - 2
    return False, f"script exit {status}", None


async def probe(ck: Checker, default_user: str | None = None,
                default_group: str | None = None, grace: float = KILL_GRACE, *,
                security: bool = False, runner: ScriptRunner | None = None) -> ProbeResult:
    """One run of ``ck``'s script. ``default_user``/``default_group``: global_defs
    ``script_user``/``script_group``; ``security``: ``enable_script_security``; a ``runner``
    given carries those itself."""
    t0 = time.monotonic()
    if ck.misc_path is None:
        return ProbeResult(False, "no misc_path", 0.0, started=t0)
    if runner is None:
        runner = ScriptRunner(default_user, default_group, security=security, grace=grace)
    timeout = ck.misc_timeout if ck.misc_timeout is not None else ck.delay_loop
    mp = ck.misc_path
    out = await runner.run(ScriptSpec(mp.command, mp.user, mp.group), timeout=timeout)
    if out.errno is not None and out.errno in _LOCAL:
        return local_failure(out.errno, t0)
    ok, reason, weight = judge(ck, out.status, out.signal, out.timed_out, out.error, timeout)
    return ProbeResult(ok, reason, time.monotonic() - t0, weight=weight, started=t0)
