"""The one script runner: every script lvsd runs starts and ends here.

Theory of operation
-------------------
MISC_CHECK (``misc_path``), notify scripts (VRRP ``notify*``, ``notify_up``/``notify_down``,
``quorum_up``/``quorum_down``), ``vrrp_script`` and the stop-time (``omega``) scripts all go
through :meth:`ScriptRunner.run`, keepalived's ``system_call_script()`` (lib/notify.c):

1. the command is split into words (:func:`lvsd.scriptrun.words.split_words`), the caller's
   extra arguments appended (``notify``: ``TYPE NAME STATE PRIORITY``), and the words are
   executed directly -- **never through a shell**, so ``;``, ``$(...)``, ``|`` are plain
   text. The one exception is keepalived's own: a first word ``</path`` only tests that the
   file opens; keepalived gives that to ``system()``, lvsd to ``/bin/sh`` with the path as an
   argument (never as shell text), and a 126/127 from that shell counts as 0 as in
   keepalived ("Couldn't find command", "Couldn't execute command");
2. as the user of :func:`lvsd.scriptrun.identity.script_identity` (one rule for all scripts:
   the script's own ``user [group]``, else ``script_user [script_group]``, else
   ``keepalived_script`` or the daemon's own), supplementary groups reset to that gid;
3. with ``enable_script_security``, a script that would run with root privileges is refused
   when its file or a directory above it became unsafe since the load
   (:mod:`lvsd.scriptrun.security`);
4. in its own process group (a new session), stdin/stdout/stderr on ``/dev/null``, the
   daemon's environment;
5. supervised by :class:`lvsd.scriptrun.termination.Termination`: SIGTERM to the group at the
   timeout, SIGKILL ``grace`` seconds later, timed out; cancelling the run (stop, reload)
   sends SIGTERM then SIGKILL after 1 s and waits for the leader, and always ends with
   SIGKILL to the whole group.

The stop sequence of a cancelled run is a task of its own, detached from the cancelled one:
the caller waits for it (shielded), but a second cancellation of the caller -- a reload that
does not wait, a shutdown that cancels everything left -- only stops the waiting, never the
sequence (it brings the SIGKILL forward). :func:`wait_stopped` waits for every sequence still
running; the daemon's shutdown awaits it (through the checks' ``Scheduler.close``), so no
process group of a removed or stopped script outlives lvsd.

The result is an :class:`Outcome`: the exit status, or the signal, or timed out, or why it did
not run (keepalived's words). What it means is the caller's business (MISC_CHECK weights,
vrrp_script rise/fall, nothing for notify scripts).

A program that cannot be executed at run time (gone, not executable, no ``#!`` line) is an
Outcome with ``error`` "Error exec-ing command '...', error N: ..." (keepalived's message);
keepalived's child then exits 0, lvsd reports it as not run (a MISC_CHECK fails) instead.
"""

from __future__ import annotations

import asyncio
import errno
import os
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from lvsd.scriptrun.identity import (
    Accounts,
    Identity,
    IdentityError,
    SystemAccounts,
    exec_credentials,
    our_identity,
    script_identity,
)
from lvsd.scriptrun.security import insecure_reason
from lvsd.scriptrun.termination import KILL_GRACE, Termination
from lvsd.scriptrun.words import ScriptParseError, cmd_str, file_test_path, split_words

__all__ = ["NOTIFY_TIMEOUT", "Outcome", "ScriptRunner", "ScriptSpec", "prepare", "wait_stopped"]

#: ``</path [cmd args]``: open the file (as the script's user) -- and run the rest with it
#: as stdin, as ``system("</path 'cmd' 'args'")`` does; the path is "$1", never shell text
_FILE_TEST = 'f=$1; shift; exec "$@" <"$f"'

Log = Callable[[str], None]

#: lvsd's limit for notify-type scripts (notify*, quorum_*, notify_up/down): keepalived's
#: notify_exec() does not supervise them; lvsd kills them (same policy) after this long
NOTIFY_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class ScriptSpec:
    """A command line as configured plus its own user/group (None: the default rule)."""

    command: str
    user: str | None = None
    group: str | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one run ended: ``error`` (not run), or ``status``, ``signal`` or ``timed_out``."""

    status: int | None = None
    signal: int | None = None
    timed_out: bool = False
    error: str | None = None
    signals_sent: tuple[int, ...] = ()  # what the timeout policy sent to the process group
    pid: int | None = None
    errno: int | None = None  # not run: the OSError's errno (EAGAIN, EMFILE: fork, pipes)

    @property
    def ran(self) -> bool:
        return self.error is None

    @property
    def ok(self) -> bool:
        return self.status == 0

    def describe(self) -> str:
        """keepalived's words: "exited with status N", "due to signal N", "timed out"."""
        if self.error is not None:
            return self.error
        if self.timed_out:
            return "timed out"
        if self.signal is not None:
            return f"due to signal {self.signal}"
        return f"exited with status {self.status}"


def prepare(command: str, extra: Sequence[str] = ()) -> tuple[list[str], bool]:
    """The argv to execute for ``command`` (+ ``extra``) and whether it is a ``</path`` file
    test. Raises :class:`~lvsd.scriptrun.words.ScriptParseError`."""
    args = split_words(command) + list(extra)
    path = file_test_path(args)
    if path is None:
        return args, False
    return ["/bin/sh", "-c", _FILE_TEST, "sh", path, *args[1:]], True


#: stop sequences of cancelled runs still going (see the module docstring)
_STOPPING: set[asyncio.Task[None]] = set()


async def wait_stopped() -> None:
    """Wait until the stop sequence of every cancelled run on this loop has ended (each is
    bounded: SIGKILL at most :data:`~lvsd.scriptrun.termination.STOP_GRACE` after the stop,
    then the leader's reaping)."""
    loop = asyncio.get_running_loop()
    while pending := {t for t in _STOPPING if t.get_loop() is loop and not t.done()}:
        await asyncio.wait(pending)


def _killpg(pgid: int, signo: int) -> bool:
    """Signal a process group; False when it is gone (ESRCH)."""
    try:
        os.killpg(pgid, signo)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # keepalived: "kill ... failed with errno"; try again at the next deadline
    return True


@dataclass(frozen=True)
class ScriptRunner:
    """Runs scripts for one configuration: its global ``script_user`` [``script_group``],
    ``enable_script_security``, and the kill grace (keepalived: 2 s)."""

    script_user: str | None = None
    script_group: str | None = None
    security: bool = False
    grace: float = KILL_GRACE
    accounts: Accounts = field(default_factory=SystemAccounts)

    def identity(self, spec: ScriptSpec) -> Identity:
        """Who ``spec`` runs as (:func:`~lvsd.scriptrun.identity.script_identity`)."""
        return script_identity(spec.user, spec.group, script_user=self.script_user,
                               script_group=self.script_group, accounts=self.accounts,
                               our=our_identity(), security=self.security)

    async def run(self, spec: ScriptSpec, extra: Sequence[str] = (), *,
                  timeout: float | None, log: Log | None = None) -> Outcome:
        """Run ``spec`` (+ ``extra`` arguments) to its end; ``timeout`` None: no limit.

        Cancelling the awaiting task stops the script (SIGTERM, SIGKILL after 1 s) before the
        cancellation goes on."""
        try:
            argv, file_test = prepare(spec.command, extra)
        except ScriptParseError as exc:
            return Outcome(error=str(exc))
        try:
            ident = self.identity(spec)
        except IdentityError as exc:
            return Outcome(error=str(exc))
        if self.security and not file_test:
            reason = insecure_reason(argv[0], ident)
            if reason is not None:
                return Outcome(error=reason)
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL, start_new_session=True,
                **exec_credentials(ident, our_identity()))
        except OSError as exc:  # lib/notify.c system_call_script, after execve()
            num = exc.errno if exc.errno is not None else errno.EIO
            return Outcome(error=f"Error exec-ing command '{argv[0]}', error {num}: "
                                 f"{exc.strerror or exc}", errno=num)
        except (ValueError, KeyError) as exc:  # credentials refused by the exec machinery
            return Outcome(error=f"Error exec-ing command '{argv[0]}': {exc}")
        out = await _supervise(proc, Termination(time.monotonic(), timeout, grace=self.grace,
                                                 name=argv[0], pid=proc.pid), log)
        if file_test and out.status in (126, 127):
            # lib/notify.c system_call_script: "Couldn't find/execute command", then exit(0)
            what = "find" if out.status == 127 else "execute"
            if log is not None:
                log(f"Couldn't {what} command: {cmd_str(split_words(spec.command))}")
            out = Outcome(status=0, pid=out.pid, signals_sent=out.signals_sent)
        return out


async def _supervise(proc: asyncio.subprocess.Process, term: Termination,
                     log: Log | None) -> Outcome:
    """Wait for ``proc``, applying ``term``'s decisions; stop it if we are cancelled."""
    waiter = asyncio.ensure_future(proc.wait())
    pid = proc.pid
    try:
        while True:
            dl = term.deadline
            delay = None if dl is None else max(0.0, dl - time.monotonic())
            done, _ = await asyncio.wait({waiter}, timeout=delay)
            if done:
                break
            step = term.expire(time.monotonic())
            if step is None:
                continue
            if step.note is not None and log is not None:
                log(step.note)
            if not _killpg(pid, step.signo):
                term.lost()
                if log is not None:  # check_misc.c / vrrp_scheduler.c
                    log(f"Script {term.name} child (PID {pid}) lost")
                await waiter
                break
    except asyncio.CancelledError:
        # the sequence runs on its own: a second cancel of ours must not abandon it
        stop = asyncio.get_running_loop().create_task(_stop(pid, term, waiter))
        _STOPPING.add(stop)
        stop.add_done_callback(_STOPPING.discard)
        await asyncio.shield(stop)
        raise
    rc = waiter.result()
    end = term.exited(rc)
    if end.kill_group:
        _killpg(pid, signal.SIGKILL)  # "make sure any children it created have died too"
    return Outcome(status=end.status, signal=end.signal, timed_out=end.timed_out,
                   signals_sent=tuple(term.sent), pid=pid)


async def _stop(pid: int, term: Termination, waiter: asyncio.Future[Any]) -> None:
    """Cancelled: SIGTERM, SIGKILL after 1 s, reap, SIGKILL the group (lib/notify.c
    script_killall). Cancelling this task brings the SIGKILL forward; once it is sent, a
    cancellation stops the wait for the leader (the loop's child watcher still reaps it)."""
    step = term.cancel(time.monotonic())
    if step is not None and not waiter.done():
        _killpg(pid, step.signo)
    while not waiter.done():
        dl = term.deadline
        delay = None if dl is None else max(0.0, dl - time.monotonic())
        try:
            await asyncio.wait({waiter}, timeout=delay)
        except asyncio.CancelledError:
            if term.killed:
                break
            term.hasten(time.monotonic())
        if waiter.done():
            break
        step = term.expire(time.monotonic())
        if step is not None and not _killpg(pid, step.signo):
            break
    if waiter.done() and not waiter.cancelled():
        end = term.exited(waiter.result())
        if end.kill_group:
            _killpg(pid, signal.SIGKILL)
    else:
        if not term.killed:
            _killpg(pid, signal.SIGKILL)
        waiter.cancel()
