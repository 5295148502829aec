"""The VRRP child process's scheduling: keepalived's ``vrrp_priority``, ``vrrp_rt_priority``,
``vrrp_rlimit_rttime`` and ``vrrp_no_swap`` (keepalived lib/process.c set_process_priorities).

Theory of operation
-------------------
:func:`plan` (pure) turns the ``global_defs`` values into the steps, in keepalived's order:

* ``vrrp_rt_priority N``: ``SCHED_RR`` at priority N, with ``SCHED_RESET_ON_FORK`` (scripts
  run at normal priority), and ``RLIMIT_RTTIME`` (the CPU time the process may use without
  blocking: hard = the limit, soft = half, so ``SIGXCPU`` warns first). keepalived's default
  limit is 10,000 us, sized for C; a Python advert or reload step costs tens of times more,
  so lvsd's default is :data:`DEFAULT_RLIMIT_RTTIME` (an explicit ``vrrp_rlimit_rttime`` is
  used as written);
* otherwise ``vrrp_priority N``: the nice value;
* ``vrrp_no_swap``: ``mlockall(MCL_CURRENT | MCL_FUTURE)``.

Without any of them nothing changes (keepalived's default too). A real-time VRRP process is
what keeps adverts on time when the *machine* is overloaded (other processes competing for
the CPU); the separate process already keeps them on time whatever lvsd itself does.

:func:`apply` (shell) performs the steps and logs keepalived's words on failure ("child
process: cannot raise priority", "Unable to set process priority to %d - %s", "Unable to lock
process in memory - %s"); a failure never stops the process.
"""

from __future__ import annotations

import ctypes
import logging
import os
import resource
import signal
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lvsd.config.model import GlobalDefs

log = logging.getLogger(__name__)

KEEPALIVED_RLIMIT_RTTIME = 10_000  # lib/process.h RT_RLIMIT_DEFAULT (us)
DEFAULT_RLIMIT_RTTIME = 200_000  # lvsd (us): see the module docstring
MCL_CURRENT, MCL_FUTURE = 1, 2


@dataclass(frozen=True)
class Plan:
    rt_priority: int | None = None
    rlimit_rttime: int | None = None  # us, with rt_priority only
    nice: int | None = None
    no_swap: bool = False

    @property
    def empty(self) -> bool:
        return self == Plan()


def plan(gd: GlobalDefs) -> Plan:
    if gd.vrrp_rt_priority:
        return Plan(rt_priority=gd.vrrp_rt_priority,
                    rlimit_rttime=gd.vrrp_rlimit_rttime or DEFAULT_RLIMIT_RTTIME,
                    no_swap=gd.vrrp_no_swap)
    return Plan(nice=gd.vrrp_priority or None, no_swap=gd.vrrp_no_swap)


def _on_sigxcpu(_sig: int, _frame: FrameType | None) -> None:
    log.warning("SIGXCPU: the VRRP process used half of vrrp_rlimit_rttime of CPU without "
                "blocking (at the limit the kernel kills it and it is restarted)")


def apply(p: Plan) -> list[str]:
    """Perform ``p``; returns what was done (for the log)."""
    done: list[str] = []
    if p.rt_priority:
        try:
            os.sched_setscheduler(0, os.SCHED_RR | os.SCHED_RESET_ON_FORK,
                                  os.sched_param(p.rt_priority))
        except OSError as exc:
            log.warning("child process: cannot raise priority (%s)", exc.strerror or exc)
        else:
            done.append(f"SCHED_RR priority {p.rt_priority}")
            if p.rlimit_rttime:
                signal.signal(signal.SIGXCPU, _on_sigxcpu)
                try:
                    resource.setrlimit(resource.RLIMIT_RTTIME,
                                       (p.rlimit_rttime // 2, p.rlimit_rttime))
                    done.append(f"RLIMIT_RTTIME {p.rlimit_rttime} us")
                except (OSError, ValueError) as exc:
                    log.warning("child process cannot set realtime rlimit (%s)", exc)
    elif p.nice is not None:
        try:
            os.setpriority(os.PRIO_PROCESS, 0, p.nice)
            done.append(f"nice {p.nice}")
        except OSError as exc:
            log.info("Unable to set process priority to %d - %s", p.nice, exc.strerror or exc)
    if p.no_swap:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.mlockall(MCL_CURRENT | MCL_FUTURE) != 0:
            log.info("Unable to lock process in memory - %s", os.strerror(ctypes.get_errno()))
        else:
            done.append("locked in memory")
    return done
