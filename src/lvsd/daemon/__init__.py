"""``lvsd run -f FILE``: the main process (health checks, the pool, status) and, as in
keepalived, a VRRP child process.

Theory of operation
-------------------
Data flows one way::

    config --> check scheduler --(health)--> planner --(desired table)--> reconciler --> data plane
       \\--> VRRP child process: VRRP runners (VIPs, adverts, notify) --(state, events)--^
    status app <-- read-only snapshots of all of the above

* *Execution model.* VRRP runs in a child process with its own event loop
  (:mod:`lvsd.daemon.vrrpchild`; the parent's handle is :mod:`lvsd.daemon.vrrpproc`), so that
  nothing the main process does - a reload of 37,000 real servers, status scraped flat out, a
  garbage collection of a large heap, descriptor exhaustion by clients - can delay an advert.
  A thread was measured and rejected: ``bench/loop_isolation.py`` (the GIL is held for
  hundreds of ms by C calls such as ``json.dumps`` and a GC pass). The child gets the VRRP side
  of each config (start and reload), reports its instances' status and events, is respawned
  when it dies (keepalived's back-off) and dies with the parent (SIGTERM: graceful). Both
  loops have a watchdog (:mod:`lvsd.daemon.loopwatch`: ``lvsd_event_loop_max_stall_seconds``).
  keepalived's ``vrrp_rt_priority`` / ``vrrp_priority`` / ``vrrp_no_swap`` apply to the child
  (:mod:`lvsd.daemon.procprio`). A reload's parse runs in a worker thread of the main process,
  so the pool's writes go on meanwhile.

Like keepalived, every director runs its checkers and programs its pool whatever its VRRP
state; only the VRRP master holds the VIPs, so only the master receives traffic (a backup's
table is ready the moment it takes over).

* The *pool service* (:mod:`lvsd.pool.service`) is the only writer of the data plane (through
  the reconciler): it wakes on every health change, on reload, at a drain's end and every
  ``--sweep`` seconds; it plans (planner), runs the plan's quorum/notify scripts, sets the
  reconciler's desired table and reconciles. The daemon only wires it, and reloads and stops
  it. The status
  page's table is the reconciler's own view (its last full read plus what it read and applied
  since), so a pass reads the data plane once, not twice; the connection counters (``stats``,
  a full read with counters) are refreshed at start and on every sweep only.
* Startup: load the config and run :func:`lvsd.preflight.preflight` (the checks ``lvsd
  check-config`` runs: keepalived's policy, what keepalived logs and runs through is logged with
  its ``(FILE: Line N)`` and run through; only what keepalived cannot run, or with ``--strict``
  any error, exits 1 with one line), open the
  data plane (a kernel without IPVS: one line telling to use ``--dataplane nftables``), start
  the status endpoint (its address: bound and listening), the checks, the first full
  reconcile, then the VRRP runners; then ``READY=1`` to systemd (``Type=notify``); then the
  status endpoint's HTTP app, whose import is the largest of all (:mod:`lvsd.status.listen`:
  a client connecting in between waits in the listen backlog, never refused).
* SIGHUP: ``RELOADING=1``; load and check the new file *completely* first, with the same
  preflight and policy as a start. A config that would not start: the
  old config keeps running untouched; the errors go to the log, ``/status`` (``config``) and a
  ``reload`` event. Otherwise apply the difference: ``Scheduler.update`` (unchanged checkers
  keep state and retry counts, new ones start like at boot, alpha respected), ``Planner.reload``
  (same virtual servers keep quorum state), VRRP: an instance (or sync group) whose
  configuration is unchanged keeps its runner, and so its state, counters and VIPs. A changed
  one goes to ``VrrpRunner.update``: members whose identity (interface, vrid, version, family)
  is unchanged keep their state and take the new parameters in place (priority, advert_int,
  preempt, auth, tracking, VIPs, garp, notify); one whose identity changed is stopped
  (priority 0, VIPs removed) and started again. An instance moving into or out of a sync
  group, or renamed outside one, is a new runner (stopped + started). Removed instances are
  stopped (notify_stop), new ones started. Then ``READY=1``.
* SIGTERM/SIGINT: the VRRP runners stop first (a master sends priority 0 and removes its VIPs:
  RFC 5798 §6.4.3, the backup takes over after Skew_Time; notify_stop runs), then the checks
  stop, virtual servers with ``omega`` run their quorum_down/notify_down scripts (keepalived),
  the reconciler stops (the table stays unless ``lvs_flush_on_stop``), the status endpoint
  closes. The whole shutdown is bounded (``--stop-timeout``); the process then exits.
* SIGUSR1 / SIGUSR2 / SIGRTMIN+2: keepalived's dump files (data / stats / JSON) in
  ``--dump-dir`` (default /tmp), see :mod:`lvsd.status.dumps`.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lvsd.daemon.command import cmd_run, options_from_args, register
    from lvsd.daemon.configinfo import config_errors, config_secrets, config_warnings
    from lvsd.daemon.core import Daemon
    from lvsd.daemon.logsetup import SECRET_FILTER, JsonFormatter, SecretFilter, setup_logging
    from lvsd.daemon.options import (
        DEFAULT_CONFIG,
        DEFAULT_PID_FILE,
        DEFAULT_STATUS_LISTEN,
        MODES,
        Options,
        StartupError,
    )
    from lvsd.daemon.sdnotify import sd_notify
    from lvsd.daemon.snapshot import TRANSITIONS_KEPT

# The names below are imported on first use (PEP 562): the VRRP child process imports
# lvsd.daemon.vrrpchild, and with it this package, and must not pay for the daemon's
# command line, core and status model (its start-up is on the critical path of READY).
_EXPORTS = {
    "cmd_run": "command", "options_from_args": "command", "register": "command",
    "config_errors": "configinfo", "config_secrets": "configinfo",
    "config_warnings": "configinfo", "Daemon": "core", "SECRET_FILTER": "logsetup",
    "JsonFormatter": "logsetup", "SecretFilter": "logsetup", "setup_logging": "logsetup",
    "DEFAULT_CONFIG": "options", "DEFAULT_PID_FILE": "options",
    "DEFAULT_STATUS_LISTEN": "options", "MODES": "options", "Options": "options",
    "StartupError": "options", "sd_notify": "sdnotify", "TRANSITIONS_KEPT": "snapshot",
}


def __getattr__(name: str) -> Any:
    mod = _EXPORTS.get(name)
    if mod is None:
        raise AttributeError(f"module 'lvsd.daemon' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"lvsd.daemon.{mod}"), name)
    globals()[name] = value
    return value


__all__ = [
    "DEFAULT_CONFIG", "DEFAULT_PID_FILE", "DEFAULT_STATUS_LISTEN", "MODES", "SECRET_FILTER",
    "TRANSITIONS_KEPT", "Daemon", "JsonFormatter", "Options", "SecretFilter", "StartupError",
    "cmd_run", "config_errors", "config_secrets", "config_warnings", "options_from_args",
    "register", "sd_notify", "setup_logging",
]
