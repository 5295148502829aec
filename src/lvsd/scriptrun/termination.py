"""The timeout and kill policy of a running script, as a sans-IO core.

Theory of operation
-------------------
keepalived supervises the scripts it waits for (MISC_CHECK, vrrp_script) the same way
(check_misc.c ``misc_check_child_thread``, vrrp_scheduler.c ``vrrp_script_child_thread``); lvsd
applies that one policy to every script it runs (notify scripts included, whose timeout is
lvsd's: keepalived's ``notify_exec`` does not supervise them). Each script is the leader of its
own process group, so a signal reaches whatever it started:

1. RUNNING until ``timeout`` after the start: then SIGTERM to the process group,
   REQUESTING_TERMINATION for ``grace`` seconds (keepalived: 2);
2. still there: SIGKILL to the group, FORCING_TERMINATION for ``grace`` seconds more;
3. still there: "failed to terminate after kill" is logged and SIGKILL repeated every
   ``rekill`` seconds (keepalived: 10);
4. if signalling finds the group gone (ESRCH) the script is "lost": nothing more is sent.

How it ended (:meth:`Termination.exited`, fed the ``returncode``):

* an exit status is the script's answer, even after our SIGTERM (a script that traps TERM
  and exits 0 succeeded: keepalived looks at ``WIFEXITED`` first);
* killed by our SIGTERM while REQUESTING_TERMINATION, or by SIGTERM/SIGKILL while
  FORCING_TERMINATION: **timed out**;
* any other signal: failed "due to signal N".

When the leader died of our SIGTERM the group gets SIGKILL at once, "to make sure any children
it created have died too" (keepalived's words; lvsd does the same after a stop's SIGTERM);
after our SIGKILL they already had it. A script that ends by itself, in time, may leave
children behind: keepalived does not kill them, nor does lvsd.

Stopping or reloading with a script still running (lib/notify.c ``script_killall`` then
``child_killed_thread``/``child_killed_reload``): SIGTERM to the group, SIGKILL 1 s later if
it is still there (:meth:`Termination.cancel`), whatever phase the script was in (a MISC_CHECK
in its kill grace included). A stop always ends in SIGKILL of the whole group: when the
leader is gone by then, however it ended (our SIGTERM, an exit status from a trap), the group
gets SIGKILL at once, so nothing it started outlives a reload or a stop. keepalived only
SIGKILLs the group when the leader outlived the 1 s; lvsd does not leave the rest to chance.
A second stop request (:meth:`Termination.hasten`: the daemon is going away now) brings the
SIGKILL forward.

The object only decides; the shell (:mod:`lvsd.scriptrun.runner`) sends the signals and calls
back at :attr:`Termination.deadline`.
"""

from __future__ import annotations

import enum
import signal
from dataclasses import dataclass

__all__ = ["KILL_GRACE", "REKILL_INTERVAL", "STOP_GRACE", "Ending", "Phase", "Step",
           "Termination"]

#: seconds between SIGTERM and SIGKILL (check_misc.c / vrrp_scheduler.c: ``timeout = 2``)
KILL_GRACE = 2.0
#: seconds between further SIGKILLs of a group that does not die (``timeout = 10``)
REKILL_INTERVAL = 10.0
#: seconds between SIGTERM and SIGKILL on stop/reload (lib/notify.c script_killall: TIMER_HZ)
STOP_GRACE = 1.0


class Phase(enum.Enum):
    RUNNING = "running"
    REQUESTING_TERMINATION = "requesting termination"
    FORCING_TERMINATION = "forcing termination"
    STOPPING = "stopping"  # cancel(): the daemon stops or reloads
    IDLE = "idle"  # exited, or lost


@dataclass(frozen=True, slots=True)
class Step:
    """What to do at a deadline: send ``signo`` to the process group; log ``note`` if set."""

    signo: int
    note: str | None = None


@dataclass(frozen=True, slots=True)
class Ending:
    """How a script ended: exactly one of ``status`` / ``signal`` / ``timed_out``."""

    status: int | None = None
    signal: int | None = None
    timed_out: bool = False
    kill_group: bool = False  # SIGKILL the group now (leader died of our SIGTERM; a stop)


class Termination:
    """One running script's supervision (see the module docstring)."""

    def __init__(self, now: float, timeout: float | None, *, grace: float = KILL_GRACE,
                 rekill: float = REKILL_INTERVAL, name: str = "", pid: int = 0) -> None:
        self.phase = Phase.RUNNING
        self.deadline: float | None = None if timeout is None else now + timeout
        self.grace = grace
        self.rekill = rekill
        self.name = name
        self.pid = pid
        self.sent: list[int] = []
        self._last: int | None = None

    def expire(self, now: float) -> Step | None:
        """The deadline has passed: the signal to send (None: not due, or nothing to do)."""
        if self.deadline is None or now < self.deadline:
            return None
        note = None
        if self.phase is Phase.RUNNING:
            self.phase = Phase.REQUESTING_TERMINATION
            step, wait = Step(signal.SIGTERM), self.grace
        elif self.phase is Phase.REQUESTING_TERMINATION:
            self.phase = Phase.FORCING_TERMINATION
            step, wait = Step(signal.SIGKILL), self.grace
        elif self.phase is Phase.FORCING_TERMINATION:
            # check_misc.c / vrrp_scheduler.c: "... failed to terminate after kill"
            note = f"Script {self.name} child (PID {self.pid}) failed to terminate after kill"
            step, wait = Step(signal.SIGKILL, note), self.rekill
        elif self.phase is Phase.STOPPING:
            step, wait = Step(signal.SIGKILL), self.rekill
        else:
            self.deadline = None
            return None
        self.deadline = now + wait
        self.sent.append(step.signo)
        self._last = step.signo
        return step

    def cancel(self, now: float) -> Step | None:
        """The daemon stops (or the script's owner goes away): SIGTERM now, SIGKILL after
        :data:`STOP_GRACE` (lib/notify.c script_killall + child_killed_thread)."""
        if self.phase is Phase.IDLE:
            return None
        self.phase = Phase.STOPPING
        self.deadline = now + STOP_GRACE
        self.sent.append(signal.SIGTERM)
        self._last = signal.SIGTERM
        return Step(signal.SIGTERM)

    def hasten(self, now: float) -> None:
        """Asked to stop again while stopping: the SIGKILL is due now."""
        if self.phase is Phase.STOPPING and signal.SIGKILL not in self.sent:
            self.deadline = now

    @property
    def killed(self) -> bool:
        """SIGKILL has been sent to the group."""
        return signal.SIGKILL in self.sent

    def lost(self) -> None:
        """Signalling found no such process group (ESRCH): nothing more to send."""
        self.phase = Phase.IDLE
        self.deadline = None

    def exited(self, returncode: int) -> Ending:
        """The leader is gone with ``returncode`` (>= 0 exit status, < 0 killed by -signal)."""
        phase, self.phase, self.deadline = self.phase, Phase.IDLE, None
        stopping = phase is Phase.STOPPING  # a stop ends in SIGKILL of the group, always
        if returncode >= 0:
            return Ending(status=returncode, kill_group=stopping)
        sig = -returncode
        ours_term = sig == signal.SIGTERM and self._last == signal.SIGTERM
        timed_out = ((phase is Phase.REQUESTING_TERMINATION and sig == signal.SIGTERM)
                     or (phase in (Phase.FORCING_TERMINATION, Phase.STOPPING)
                         and sig in (signal.SIGTERM, signal.SIGKILL)))
        if timed_out:
            return Ending(timed_out=True, kill_group=ours_term or stopping)
        return Ending(signal=sig, kill_group=ours_term or stopping)
