"""The pool service: its loop, what it reports and runs, reload and stop, without a daemon.

The data plane is the in-memory one (same rules and errors as the kernel's); configs go through
the real loader; health comes from a source the test drives (the check scheduler's interface),
and once from the real scheduler probing a real loopback TCP server. Waits are bounded loops
on a condition, never timed assertions.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

import pytest

from lvsd.checks.health import RealServerHealth, RealServerId
from lvsd.checks.scheduler import HealthEvent, Scheduler
from lvsd.config.loader import loads
from lvsd.config.model import Config, Script
from lvsd.dataplane.memory import MemoryDataPlane
from lvsd.pool.planner import Planner
from lvsd.pool.reconciler import Reconciler
from lvsd.pool.service import PoolService, next_wake
from lvsd.pool.table import AddDest, DelService, DestKey, DestStats, Proto, ServiceKey, Table
from lvsd.status.event_types import EventPayload
from lvsd.status.events import EventBus

pytestmark = pytest.mark.unit

VS = "192.0.2.10:80/TCP"
SVC = ServiceKey.for_addr("192.0.2.10", 80, Proto.TCP)
UP = RealServerHealth(alive=True, reason="connected")
DOWN = RealServerHealth(alive=False, reason="refused")


def conf(*servers: str, glob: str = "", vs_extra: str = "", weight: int = 1,
         second_vs: bool = False) -> Config:
    rss = "".join(f"  real_server {ip} 80 {{\n    weight {weight}\n"
                  f"    notify_down \"/bin/echo down {ip}\"\n"
                  f"    TCP_CHECK {{ connect_timeout 1 }}\n  }}\n" for ip in servers)
    text = (f"global_defs {{\n  router_id unit\n{glob}}}\n"
            "virtual_server 192.0.2.10 80 {\n  protocol TCP\n  lb_algo rr\n  lb_kind NAT\n"
            "  quorum_up \"/bin/echo qup\"\n  quorum_down \"/bin/echo qdown\"\n"
            + vs_extra + rss + "}\n")
    if second_vs:
        text += ("virtual_server 192.0.2.11 80 {\n  protocol TCP\n  lb_algo rr\n"
                 "  lb_kind NAT\n  real_server 10.0.1.1 80 { weight 1 }\n}\n")
    cfg = loads(text, name="pool.conf")
    assert cfg.ok, cfg.diagnostics
    return cfg


def rid(ip: str) -> RealServerId:
    return RealServerId(VS, ip, 80)


def weights(table: Table, key: ServiceKey = SVC) -> dict[str, int]:
    return {str(k): d.weight for k, d in table[key].dests.items()} if key in table else {}


class Counted(MemoryDataPlane):
    """Reports one active connection per destination it holds."""

    async def stats(self) -> dict[tuple[ServiceKey, DestKey], DestStats]:
        return {(k, d): DestStats(active_conns=1) for k, e in self.table.items() for d in e.dests}


class Checks:
    """A health source the test drives: the check scheduler's interface, nothing more."""

    def __init__(self) -> None:
        self.health: dict[RealServerId, RealServerHealth] = {}
        self.configs: list[Config] = []
        self.started = self.closed = False
        self._cbs: list[Callable[[HealthEvent], None]] = []

    def add_callback(self, cb: Callable[[HealthEvent], None]) -> None:
        self._cbs.append(cb)

    async def start(self) -> None:
        self.started = True

    def update(self, config: Config) -> None:
        self.configs.append(config)

    async def close(self) -> None:
        self.closed = True

    def set(self, r: RealServerId, h: RealServerHealth) -> None:
        self.health = {**self.health, r: h}
        for cb in self._cbs:
            cb(HealthEvent(r, h, 0.0))


class Harness:
    """A pool service over a memory data plane, recording events and scripts."""

    def __init__(self, cfg: Config, *, sweep: float = 3600.0, checks: Any = None,
                 dp: MemoryDataPlane | None = None, script_delay: float = 0.0) -> None:
        self.dp = dp or MemoryDataPlane()
        self.checks = checks if checks is not None else Checks()
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.ran: list[str] = []  # script commands, in the order they were started
        self.finished: list[str] = []
        self.script_delay = script_delay
        g = cfg.global_defs
        rec = Reconciler(self.dp, flush_on_start=g.lvs_flush,
                         flush_on_stop=g.lvs_flush_on_stop, timeouts=g.lvs_timeouts)
        self.pool = PoolService(self.checks, Planner(cfg), rec, sweep_interval=sweep,
                                publish=self.publish, run_script=self.run_script)

    def publish(self, ev: EventPayload) -> None:
        # as /events serialises it (the bus refuses anything but a typed record)
        EventBus().publish(ev)
        self.events.append((ev.TYPE, ev.data()))

    def run_script(self, sc: Script) -> Coroutine[Any, Any, object]:
        self.ran.append(sc.command)

        async def run() -> object:
            await asyncio.sleep(self.script_delay)
            self.finished.append(sc.command)
            return 0

        return run()

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [d for k, d in self.events if k == kind]

    async def until(self, cond: Callable[[], bool], what: str) -> None:
        for _ in range(1000):  # a bound for a hang, not a timing assertion
            if cond():
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"never: {what}; events {self.events}")


def test_next_wake_sweep_or_the_drain_deadline_first() -> None:
    assert next_wake(100.0, 10.0, None) == (10.0, "sweep")
    assert next_wake(100.0, 10.0, 130.0) == (10.0, "sweep")
    assert next_wake(100.0, 10.0, 104.5) == (4.5, "drain end")
    assert next_wake(100.0, 10.0, 90.0) == (0.0, "drain end")  # overdue: at once


async def test_start_programs_the_table_and_reports_the_initial_state(
        caplog: pytest.LogCaptureFixture) -> None:
    h = Harness(conf("10.0.0.1", "10.0.0.2"), dp=Counted())
    with caplog.at_level(logging.INFO, "lvsd"):
        await h.pool.start()
    try:
        assert h.checks.started
        assert weights(h.dp.table) == {"10.0.0.1:80": 1, "10.0.0.2:80": 1}
        # a new virtual server: its state is published, not logged as a change
        assert h.of("quorum") == [{"vs": VS, "quorum_up": True, "sorry_active": False,
                                   "live_weight": 2, "alive": 2}]
        assert not [r for r in caplog.records if "quorum" in r.getMessage()]
        assert h.of("action") == [{"kind": "quorum_up", "vs": VS, "rs": None, "message":
                                   f"Starting with quorum up 1+0=1 <= 2 for VS {VS}"}]
        await h.until(lambda: h.ran == ["/bin/echo qup"], "quorum_up script")
        (rec,) = h.of("reconcile")
        assert rec["reason"] == "start" and rec["repairs"] == 0 and len(rec["ops"]) == 3
        view = h.pool.view()
        assert view.plan is not None and view.plan.states[VS].quorum_up
        assert view.reconciler.in_sync and view.stats_at is not None
        assert view.stats == {(SVC, DestKey("10.0.0.1", 80)): DestStats(active_conns=1),
                              (SVC, DestKey("10.0.0.2", 80)): DestStats(active_conns=1)}
        assert view.last_ops == tuple(rec["ops"]) and view.errors_total == 0
    finally:
        await h.pool.stop(script_timeout=5)


async def test_health_change_reported_scripted_and_reconciled(
        caplog: pytest.LogCaptureFixture) -> None:
    h = Harness(conf("10.0.0.1", "10.0.0.2",
                     vs_extra="  quorum 2\n  sorry_server 10.0.0.99 80\n"))
    await h.pool.start()
    try:
        h.events.clear()
        with caplog.at_level(logging.INFO, "lvsd"):
            h.checks.set(rid("10.0.0.1"), DOWN)
            await h.until(lambda: bool(h.of("reconcile")), "reconcile")
        assert weights(h.dp.table) == {"10.0.0.99:80": 1}  # quorum lost: the sorry server
        assert [k for k, _ in h.events] == ["realserver", "action", "action", "quorum",
                                            "reconcile"]
        assert h.of("realserver") == [{"vs": VS, "rs": "10.0.0.1:80", "alive": False,
                                       "reason": "refused", "failed_checkers": []}]
        # one shape for a real server in every event: vs apart, rs "addr:port"
        assert [(a["kind"], a["vs"], a["rs"]) for a in h.of("action")] == [
            ("notify_down", VS, "10.0.0.1:80"), ("quorum_down", VS, None)]
        assert h.of("quorum") == [{"vs": VS, "quorum_up": False, "sorry_active": True,
                                   "live_weight": 1, "alive": 1}]
        assert h.of("reconcile")[0]["reason"] == "change"
        msgs = [r.getMessage() for r in caplog.records]
        assert f"real server 10.0.0.1:80 in {VS} DOWN (refused)" in msgs
        assert f"virtual server {VS} quorum DOWN (sorry server active)" in msgs
        await h.until(lambda: len(h.ran) == 3, "scripts")
        assert h.ran == ["/bin/echo qup", "/bin/echo down 10.0.0.1", "/bin/echo qdown"]
        # back up: quorum up, the sorry server leaves
        h.checks.set(rid("10.0.0.1"), UP)
        await h.until(lambda: len(h.of("quorum")) == 2, "quorum up")
        await h.until(lambda: "10.0.0.99:80" not in weights(h.dp.table), "sorry server out")
        assert weights(h.dp.table) == {"10.0.0.1:80": 1, "10.0.0.2:80": 1}
    finally:
        await h.pool.stop(script_timeout=5)


async def test_sweep_repairs_drift_within_one_interval() -> None:
    h = Harness(conf("10.0.0.1"), sweep=0.05)
    await h.pool.start()
    try:
        h.dp.drift(DelService(SVC))  # ipvsadm -D, by hand
        await h.until(lambda: SVC in h.dp.table, "repaired")
        await h.until(lambda: any(e["reason"] == "sweep" for e in h.of("reconcile")), "event")
        assert weights(h.dp.table) == {"10.0.0.1:80": 1}
        assert h.pool.view().reconciler.repairs == 2  # the service and its destination
        sweep = [e for e in h.of("reconcile") if e["reason"] == "sweep"]
        assert sweep[0]["repairs"] == 2
        # a change (here a reload) is reconciled at once, and is not a repair
        h.pool.reload(conf("10.0.0.1", weight=7))
        await h.until(lambda: weights(h.dp.table) == {"10.0.0.1:80": 7}, "new weight")
        assert h.pool.view().reconciler.repairs == 2
    finally:
        await h.pool.stop(script_timeout=5)


async def test_reload_reaches_checks_planner_and_reconciler(
        caplog: pytest.LogCaptureFixture) -> None:
    h = Harness(conf("10.0.0.1"))
    await h.pool.start()
    try:
        h.events.clear()
        new = conf("10.0.0.1", "10.0.0.2", second_vs=True,
                   glob="  lvs_timeouts tcp 7200\n  lvs_flush_on_stop VS\n")
        with caplog.at_level(logging.INFO, "lvsd"):
            h.pool.reload(new)
            await h.until(lambda: bool(h.of("reconcile")), "reconcile")
        assert h.checks.configs == [new]
        assert weights(h.dp.table) == {"10.0.0.1:80": 1, "10.0.0.2:80": 1}
        assert ServiceKey.for_addr("192.0.2.11", 80, Proto.TCP) in h.dp.table
        assert h.dp.timeouts.tcp == 7200
        assert "set timeouts tcp 7200" in h.of("reconcile")[0]["ops"]
        # the added virtual server is reported, not logged as a quorum change
        assert [q["vs"] for q in h.of("quorum")] == ["192.0.2.11:80/TCP"]
        assert not [r for r in caplog.records if "quorum" in r.getMessage()]
        await h.pool.stop(script_timeout=5)
        # lvs_flush_on_stop VS came with the reload: the services are ours to delete
        assert h.dp.table == {}
        assert h.dp.timeouts.tcp != 7200  # restored (keepalived ipvs_stop)
    finally:
        await h.pool.stop(script_timeout=5)


async def test_drain_ends_at_its_deadline_not_at_the_sweep(
        caplog: pytest.LogCaptureFixture) -> None:
    h = Harness(conf("10.0.0.1", "10.0.0.2", glob="  lvs_drain_on_remove 1\n"))
    await h.pool.start()
    try:
        with caplog.at_level(logging.INFO, "lvsd"):
            h.pool.reload(conf("10.0.0.2", glob="  lvs_drain_on_remove 1\n"))
            await h.until(lambda: weights(h.dp.table).get("10.0.0.1:80") == 0, "weight 0")
            plan = h.pool.view().plan
            assert plan is not None and set(plan.draining) == {rid("10.0.0.1")}
            # the sweep is an hour away: only the plan's deadline can end the drain
            await h.until(lambda: "10.0.0.1:80" not in weights(h.dp.table), "drain end")
        assert [e["reason"] for e in h.of("reconcile")][-1] == "drain end"
        msgs = [r.getMessage() for r in caplog.records]
        assert (f"real server 10.0.0.1:80 in {VS} removed by reload: draining at weight 0 "
                "for 1 s") in msgs
        assert f"real server 10.0.0.1:80 in {VS} drained: removed" in msgs
        plan = h.pool.view().plan
        assert plan is not None and not plan.draining
    finally:
        await h.pool.stop(script_timeout=5)


async def test_drain_cancelled_by_a_reload_that_puts_the_server_back(
        caplog: pytest.LogCaptureFixture) -> None:
    both = conf("10.0.0.1", "10.0.0.2", glob="  lvs_drain_on_remove 300\n")
    h = Harness(both)
    await h.pool.start()
    try:
        with caplog.at_level(logging.INFO, "lvsd"):
            h.pool.reload(conf("10.0.0.2", glob="  lvs_drain_on_remove 300\n"))
            await h.until(lambda: weights(h.dp.table).get("10.0.0.1:80") == 0, "weight 0")
            h.pool.reload(both)
            await h.until(lambda: weights(h.dp.table).get("10.0.0.1:80") == 1, "back")
        msgs = [r.getMessage() for r in caplog.records]
        assert f"real server 10.0.0.1:80 in {VS} back in the config: drain cancelled" in msgs
        assert not [m for m in msgs if "drained: removed" in m]
    finally:
        await h.pool.stop(script_timeout=5)


class Flaky(MemoryDataPlane):
    """Raises a bug (not a data plane error) from the next full read, once."""

    boom = False

    async def dump(self, services: Any = None) -> Table:
        if self.boom:
            self.boom = False
            raise RuntimeError("bug in a data plane")
        return await super().dump(services)


async def test_a_failing_pass_is_counted_and_the_loop_goes_on(
        caplog: pytest.LogCaptureFixture) -> None:
    dp = Flaky()
    h = Harness(conf("10.0.0.1", "10.0.0.2"), dp=dp)
    await h.pool.start()
    try:
        dp.boom = True
        with caplog.at_level(logging.ERROR, "lvsd"):
            h.pool.reload(conf("10.0.0.1", "10.0.0.2", weight=3))
            await h.until(lambda: h.pool.view().errors_total == 1, "error counted")
        assert h.pool.view().last_error == "RuntimeError: bug in a data plane"
        assert "pool pass (change) failed" in [r.getMessage() for r in caplog.records]
        # a data plane error is an alarm (event + count), not a failed pass
        dp.fail_next(4, transient=False, match=lambda op: isinstance(op, AddDest))
        h.checks.set(rid("10.0.0.1"), UP)  # the loop still runs: this pass does its work
        h.pool.reload(conf("10.0.0.1", "10.0.0.2", "10.0.0.3", weight=3))
        await h.until(lambda: bool(h.of("alarm")), "alarm")
        assert h.of("alarm")[0]["alarms"][0].startswith("add dest 10.0.0.3:80 to TCP")
        assert h.pool.view().errors_total >= 2
        assert weights(h.dp.table)["10.0.0.1:80"] == 3  # the failed pass's change came through
    finally:
        await h.pool.stop(script_timeout=5)


OMEGA = "  omega\n  quorum 2\n  sorry_server 10.0.0.99 80\n"


async def test_stop_runs_and_waits_for_the_omega_scripts_then_stops_the_reconciler() -> None:
    h = Harness(conf("10.0.0.1", "10.0.0.2", "10.0.0.3", vs_extra=OMEGA), script_delay=0.05)
    await h.pool.start()
    h.checks.set(rid("10.0.0.2"), DOWN)
    await h.until(lambda: "10.0.0.2:80" not in weights(h.dp.table), "down")
    await h.until(lambda: len(h.finished) == 2, "start scripts")  # qup, down 10.0.0.2
    h.ran.clear()
    h.finished.clear()
    await h.pool.stop(script_timeout=5)
    # keepalived clear_service_rs: notify_down of each alive server in the pool, then
    # update_vs_notifies: quorum_down (the quorum was up); all awaited
    want = ["/bin/echo down 10.0.0.1", "/bin/echo down 10.0.0.3", "/bin/echo qdown"]
    assert h.ran == want and sorted(h.finished) == sorted(want)
    assert h.checks.closed
    assert weights(h.dp.table) == {"10.0.0.1:80": 1, "10.0.0.3:80": 1}  # the table stays
    assert h.pool.view().passes >= 1


async def test_stop_without_omega_runs_no_script_and_bounds_a_hanging_one(
        caplog: pytest.LogCaptureFixture) -> None:
    h = Harness(conf("10.0.0.1"))
    await h.pool.start()
    await h.until(lambda: h.finished == ["/bin/echo qup"], "start script")
    h.ran.clear()
    await h.pool.stop(script_timeout=5)
    assert h.ran == []
    hung = Harness(conf("10.0.0.1", vs_extra="  omega\n"), script_delay=3600)
    await hung.pool.start()
    hung.ran.clear()
    with caplog.at_level(logging.WARNING, "lvsd"):
        stop = asyncio.create_task(hung.pool.stop(script_timeout=0.1))
        await hung.until(stop.done, "stop returns")
    assert hung.ran == ["/bin/echo down 10.0.0.1", "/bin/echo qdown"] and not hung.finished
    assert "omega scripts still running after 0 s: not waiting longer" in [
        r.getMessage() for r in caplog.records]


class Listener:
    """A real TCP server on loopback that can be killed and started again."""

    def __init__(self) -> None:
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port: int = probe.getsockname()[1]
        probe.close()
        self.server: asyncio.Server | None = None

    async def start(self) -> None:
        async def handle(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            w.close()

        self.server = await asyncio.start_server(handle, "127.0.0.1", self.port,
                                                 reuse_address=True)

    async def kill(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None


async def test_with_the_real_scheduler_a_dead_server_leaves_the_table() -> None:
    lis = Listener()
    await lis.start()
    text = (f"virtual_server 192.0.2.10 80 {{\n  protocol TCP\n  lb_algo rr\n  lb_kind NAT\n"
            f"  delay_loop 0.3\n  real_server 127.0.0.1 {lis.port} {{\n"
            "    TCP_CHECK {\n      connect_timeout 0.3\n      retry 1\n"
            "      delay_before_retry 0.1\n    }\n  }\n"
            f"  real_server 127.0.0.2 {lis.port} {{\n    weight 2\n  }}\n}}\n")
    cfg = loads(text, name="real.conf")
    assert cfg.ok, cfg.diagnostics
    sched = Scheduler(cfg, rng=random.Random(1))
    h = Harness(cfg, checks=sched)
    await h.pool.start()
    mine = f"127.0.0.1:{lis.port}"
    try:
        await h.until(lambda: any(e["alive"] for e in h.of("realserver")), "first check")
        assert mine in weights(h.dp.table)
        await lis.kill()
        await h.until(lambda: mine not in weights(h.dp.table), "removed")
        down = [e for e in h.of("realserver") if e["alive"] is False]
        assert down[0]["rs"] == mine and "refused" in down[0]["reason"]
        assert weights(h.dp.table) == {f"127.0.0.2:{lis.port}": 2}
        health: Mapping[RealServerId, RealServerHealth] = h.pool.view().health
        assert not health[RealServerId(VS, "127.0.0.1", lis.port)].alive
    finally:
        await h.pool.stop(script_timeout=5)
        await lis.kill()


async def test_stop_twice_runs_the_omega_scripts_once() -> None:
    h = Harness(conf("10.0.0.1", vs_extra="  omega\n"))
    await h.pool.start()
    await h.until(lambda: h.finished == ["/bin/echo qup"], "start script")
    h.ran.clear()
    await h.pool.stop(script_timeout=5)
    await h.pool.stop(script_timeout=5)  # e.g. a second signal: nothing runs again
    assert h.ran == ["/bin/echo down 10.0.0.1", "/bin/echo qdown"]
