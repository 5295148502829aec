"""The pool service: the one loop that keeps the data plane's table right.

Theory of operation
-------------------
:class:`PoolService` is the async shell around the pool's sans-IO core. It is handed its parts
(the health source, i.e. the check scheduler; a :class:`~lvsd.pool.planner.Planner`; a
:class:`~lvsd.pool.reconciler.Reconciler` over the data plane), a script runner and an event
publisher, and it is the only thing that drives them:

* **Start** (:meth:`PoolService.start`): start the checks, plan once, let the reconciler adopt
  (or, with ``lvs_flush``, flush) the data plane and reconcile, read the connection counters,
  then run the loop.
* **The loop** sleeps until the first of: a health change (:meth:`PoolService.on_health`, the
  checks' callback), a reload (:meth:`PoolService.reload`), the drain deadline of the last plan
  (:attr:`Plan.next_deadline <lvsd.pool.planner.Plan.next_deadline>`) or the sweep interval
  (:func:`next_wake` decides which, on the injected clock). Each pass plans, reports what the
  plan says changed, runs its actions, hands the table to the reconciler and reconciles (reason
  ``change``, ``drain end`` or ``sweep``); a sweep also re-reads the counters (they let a drain
  end early, and status shows them). Passes never overlap; one that fails is logged and counted
  and the loop goes on.
* **What a pass reports** comes from the plan as data, in this order: drains started and ended
  (log lines), the plan's problems (log errors), the actions (an ``action`` event each; the
  script, if any, runs in the background through the injected runner: keepalived's
  ``notify_exec`` does not wait either), the quorum changes (a ``quorum`` event each; a log
  line unless the virtual server is new). Health changes give a ``realserver`` event and a log
  line, reconciles that wrote something a ``reconcile`` event, failed operations an ``alarm``.
* **Stop** (:meth:`PoolService.stop`): the loop ends, the checks stop, the scripts keepalived's
  ``omega`` runs on stop (:meth:`Planner.shutdown <lvsd.pool.planner.Planner.shutdown>`) run and
  are waited for (bounded), the reconciler stops (the table stays unless
  ``lvs_flush_on_stop``), and the scripts still running are given a moment.
* **Connection sync daemons** (``lvs_sync_daemon``, :mod:`lvsd.pool.syncd`): the pool keeps the
  VRRP state of the instances it is told about (:meth:`PoolService.vrrp_state`, the daemon's
  hook for VRRP state events; an instance never reported is BACKUP, which is also what a mode
  without VRRP, ``--check-only``, runs with), turns it and the config into the wanted daemons
  and hands them to the reconciler with the table; a change of the named instance's state
  wakes the loop for a pass (reason ``vrrp``).
* **Status** reads :meth:`PoolService.view`: a frozen :class:`PoolView` of the last plan, the
  health, the reconciler's status and view of the table, the counters and the error counts.
  It never reads the data plane itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from lvsd.dataplane.base import DataPlaneError
from lvsd.pool.syncd import SyncSettings, desired_daemons, settings_from_config
from lvsd.status.event_types import (
    ActionTaken,
    Alarm,
    EventPayload,
    QuorumChange,
    RealServerChange,
    Reconciled,
)
from lvsd.status.model import hostport

if TYPE_CHECKING:
    from lvsd.checks.health import RealServerHealth, RealServerId
    from lvsd.checks.scheduler import HealthEvent
    from lvsd.config.model import Config, Script
    from lvsd.pool.planner import Action, Plan, Planner
    from lvsd.pool.reconciler import Reconciler, ReconcileResult, ReconcilerStatus
    from lvsd.pool.table import DestKey, DestStats, ServiceKey

log = logging.getLogger(__name__)

#: runs one configured script (keepalived ``notify_exec``); its result is not looked at
ScriptRunner = Callable[["Script"], Coroutine[Any, Any, object]]
#: publishes one event (``EventBus.publish``): a record of ``lvsd.status.event_types``
Publish = Callable[[EventPayload], object]
Stats = Mapping[tuple["ServiceKey", "DestKey"], "DestStats"]

#: how long :meth:`PoolService.stop` gives the scripts still running in the background
SCRIPTS_GRACE = 2.0


class HealthSource(Protocol):
    """What the pool needs of the checks (:class:`lvsd.checks.scheduler.Scheduler`)."""

    @property
    def health(self) -> Mapping[RealServerId, RealServerHealth]: ...

    def add_callback(self, cb: Callable[[HealthEvent], None]) -> None: ...

    async def start(self) -> None: ...

    def update(self, config: Config) -> None: ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class PoolView:
    """What status needs of the pool, read-only: a copy of references, taken at once."""

    plan: Plan | None
    health: Mapping[RealServerId, RealServerHealth]
    reconciler: ReconcilerStatus
    stats: Stats
    stats_at: float | None  # the service's clock at the counters' read
    last_ops: tuple[str, ...]  # the writes of the last reconcile that wrote something
    errors_total: int  # failed operations + failed passes
    last_error: str | None
    passes: int  # passes of the loop since the start (the start's own one not counted)
    #: the VRRP instance driving the sync daemons (None: none configured or none named) and
    #: its state as the pool knows it (BACKUP until reported)
    sync_instance: str | None = None
    sync_vrrp_state: str | None = None


def next_wake(now: float, sweep_interval: float,
              deadline: float | None) -> tuple[float, str]:
    """How long the loop may sleep and why it wakes if nothing else wakes it: the sweep, or
    the last plan's drain deadline when that comes first."""
    if deadline is not None and deadline - now < sweep_interval:
        return max(0.0, deadline - now), "drain end"
    return sweep_interval, "sweep"


class PoolService:
    """The pool's loop (see the module docstring). Start, reload and stop it; read
    :meth:`view`."""

    def __init__(self, checks: HealthSource, planner: Planner, reconciler: Reconciler, *,
                 sweep_interval: float, publish: Publish,
                 run_script: ScriptRunner | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._checks = checks
        self._planner = planner
        self._reconciler = reconciler
        self._sweep = sweep_interval
        self._publish = publish
        self._run_script = run_script
        self._clock = clock
        self._plan: Plan | None = None
        self._stats: Stats = {}
        self._stats_at: float | None = None
        self._last_ops: tuple[str, ...] = ()
        self._errors_total = 0
        self._last_error: str | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._scripts: set[asyncio.Task[object]] = set()
        self._passes = 0
        self._stopped = False
        self._vrrp_states: dict[str, str] = {}
        self._sync: SyncSettings | None = None
        self._sync_wake = False
        self._set_sync(planner.config)
        checks.add_callback(self.on_health)

    # ---- lifecycle
    async def start(self) -> None:
        """Start the checks, program the data plane once (adopting what it holds), loop."""
        await self._checks.start()
        self._plan_once()
        self._record(await self._reconciler.start())
        await self._read_counters()
        self._task = asyncio.create_task(self._loop(), name="lvsd-pool")

    def reload(self, config: Config) -> None:
        """Checks and planner take ``config`` (state kept by identity); a pass follows."""
        self._checks.update(config)
        self._planner.reload(config)
        self._reconciler.flush_on_stop = config.global_defs.lvs_flush_on_stop
        self._reconciler.set_timeouts(config.global_defs.lvs_timeouts)
        self._set_sync(config)
        self._wake.set()

    async def stop(self, *, script_timeout: float) -> None:
        """End the loop, stop the checks, run the ``omega`` scripts (waiting at most
        ``script_timeout`` seconds), stop the reconciler. Once: a second call does nothing."""
        if self._stopped:
            return
        self._stopped = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        try:
            await self._checks.close()
        except Exception as exc:  # stopping anyway: the omega scripts and the table come next
            log.warning("checks stop: %s", exc)
        await self._omega(script_timeout)
        try:
            await self._reconciler.stop()
        except Exception as exc:
            log.warning("reconciler stop: %s", exc)
        if self._scripts:
            await asyncio.wait(set(self._scripts), timeout=SCRIPTS_GRACE)

    # ---- inputs
    def on_health(self, ev: HealthEvent) -> None:
        """The checks' callback: report the change, wake the loop."""
        rsid, h = ev.rsid, ev.health
        self._publish(RealServerChange(
            rsid.vs, hostport(rsid.addr, rsid.port), None if h is None else h.alive,
            "" if h is None else h.reason, () if h is None else tuple(h.failed_checkers)))
        if h is not None:
            log.info("real server %s %s (%s)", rsid, "UP" if h.alive else "DOWN", h.reason)
        self._wake.set()

    def vrrp_state(self, instance: str, state: str) -> None:
        """The VRRP side's hook: ``instance`` entered ``state`` (``MASTER``, ``BACKUP``,
        ``FAULT``). When it drives the sync daemons and that changes which ones are wanted, a
        pass follows at once (reason ``vrrp``)."""
        self._vrrp_states[instance] = state
        if self._sync is None or self._sync.instance != instance:
            return
        before = self._reconciler.status.sync_desired
        self._push_sync()
        if self._reconciler.status.sync_desired != before:
            self._sync_wake = True
            self._wake.set()

    def _set_sync(self, config: Config) -> None:
        self._sync = settings_from_config(config)
        self._push_sync()

    def _push_sync(self) -> None:
        self._reconciler.set_sync_daemons(desired_daemons(self._sync, self._vrrp_states),
                                          configured=self._sync is not None)

    # ---- outputs
    @property
    def plan(self) -> Plan | None:
        """The last plan (None before the first)."""
        return self._plan

    def view(self) -> PoolView:
        inst = self._sync.instance if self._sync is not None else None
        return PoolView(self._plan, self._checks.health, self._reconciler.status, self._stats,
                        self._stats_at, self._last_ops, self._errors_total, self._last_error,
                        self._passes, inst,
                        None if inst is None else self._vrrp_states.get(inst, "BACKUP"))

    # ---- the loop
    async def _loop(self) -> None:
        while True:
            deadline = self._plan.next_deadline if self._plan is not None else None
            timeout, reason = next_wake(self._clock(), self._sweep, deadline)
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
                reason = "vrrp" if self._sync_wake else "change"
            except TimeoutError:
                pass
            self._wake.clear()
            self._sync_wake = False
            try:
                await self._pass(reason)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the loop must survive anything: log, next pass
                self._errors_total += 1
                self._last_error = f"{type(exc).__name__}: {exc}"
                log.exception("pool pass (%s) failed", reason)
            self._passes += 1

    async def _pass(self, reason: str) -> None:
        self._plan_once()
        self._record(await self._reconciler.reconcile(reason))
        if reason == "sweep":
            await self._read_counters()

    def _plan_once(self) -> None:
        """Plan, report what the plan says changed, run its actions, set the desired table."""
        plan = self._planner.plan(self._checks.health, self._clock(), self._stats,
                                  self._stats_at)
        self._plan = plan
        for ds in plan.drains_started:
            log.info("real server %s removed by reload: draining at weight 0 for %.0f s",
                     ds.rs, max(0.0, ds.end - ds.start))
        for de in plan.drains_ended:
            if de.why == "re-added":
                log.info("real server %s back in the config: drain cancelled", de.rs)
            else:
                log.info("real server %s drained: removed", de.rs)
        for p in plan.problems:
            log.error("pool: %s", p)
        for act in plan.actions:
            self._run_action(act)
        for q in plan.quorum_changes:
            self._publish(QuorumChange(q.vs, q.quorum_up, q.sorry_active, q.live_weight,
                                       q.alive))
            if not q.initial:
                log.info("virtual server %s quorum %s%s", q.vs, "up" if q.quorum_up else "DOWN",
                         " (sorry server active)" if q.sorry_active else "")
        self._reconciler.set_desired(plan.table)

    def _run_action(self, act: Action) -> None:
        # the real server as every event names it: vs apart, rs "addr:port" (event_types)
        self._publish(ActionTaken(act.kind, act.vs,
                                  hostport(act.rs.addr, act.rs.port) if act.rs else None,
                                  act.message))
        if act.script is not None and self._run_script is not None:
            self._background(self._run_script(act.script))

    def _background(self, coro: Coroutine[Any, Any, object]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._scripts.add(task)
        task.add_done_callback(self._scripts.discard)

    def _record(self, result: ReconcileResult) -> None:
        if result.ops or result.timeouts is not None or result.sync:
            self._last_ops = result.descriptions
            self._publish(Reconciled(result.reason, self._last_ops, result.repairs))
        if result.failed:
            self._errors_total += len(result.failed)
            self._last_error = f"{result.failed[0].op}: {result.failed[0].error}"
            self._publish(Alarm(tuple(f"{a.op}: {a.error}" for a in result.failed)))

    async def _read_counters(self) -> None:
        """The connection counters (one full read of the data plane): status and drain ends.
        The table itself is the reconciler's view (``Reconciler.status.actual``), not read
        here."""
        try:
            self._stats = await self._reconciler.dataplane.stats()
            self._stats_at = self._clock()
        except DataPlaneError:
            self._stats, self._stats_at = {}, None

    async def _omega(self, timeout: float) -> None:
        """keepalived ``omega``: the stop-time quorum_down / notify_down scripts, waited for."""
        actions = self._planner.shutdown(self._reconciler.flush_on_stop)
        if self._run_script is None:
            return
        jobs = [self._run_script(a.script) for a in actions if a.script is not None]
        if not jobs:
            return
        try:
            await asyncio.wait_for(asyncio.gather(*jobs, return_exceptions=True), timeout)
        except TimeoutError:
            log.warning("omega scripts still running after %.0f s: not waiting longer", timeout)
