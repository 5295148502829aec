"""What the planner reports as data besides the table: quorum changes, drains started and
ended, and the scripts keepalived's ``omega`` runs on stop (check/ipwrapper.c
``update_quorum_state``, ``clear_services`` / ``clear_service_vs`` / ``clear_service_rs``).
Time is the planner's ``now``: a scripted clock."""

from __future__ import annotations

from dataclasses import replace

import pytest
from test_pool_drain import DOWN, UP, conf, rid

from lvsd.checks.health import RealServerHealth, RealServerId
from lvsd.config.model import (
    NOPOS,
    Checker,
    CheckKind,
    Config,
    Protocol,
    RealServer,
    Script,
    SorryServer,
    VirtualServer,
)
from lvsd.pool.planner import Action, DrainEnd, DrainStart, Planner, QuorumChange
from lvsd.pool.table import DestKey, DestStats, Proto, ServiceKey

pytestmark = pytest.mark.unit

SVC = ServiceKey.for_addr("192.0.2.10", 80, Proto.TCP)


def rs(ip: str, weight: int = 1, **kw: object) -> RealServer:
    chk = (Checker(CheckKind.TCP_CHECK, NOPOS, ip, 80),)
    return RealServer(ip, 80, weight=weight, checkers=chk,  # type: ignore[arg-type]
                      notify_down=Script(f"/bin/down {ip}"), **kw)


def vs(*servers: RealServer, vip: str = "192.0.2.10", **kw: object) -> VirtualServer:
    return VirtualServer(NOPOS, address=vip, port=80, protocol=Protocol.TCP,  # type: ignore[arg-type]
                         real_servers=servers, quorum_up=Script(f"/bin/qup {vip}"),
                         quorum_down=Script(f"/bin/qdown {vip}"), **kw)


def cfg(*vss: VirtualServer) -> Config:
    return Config("t.conf", "t", virtual_servers=vss)


def health(v: VirtualServer, **alive: bool) -> dict[RealServerId, RealServerHealth]:
    return {RealServerId(v.ident, ip.replace("_", "."), 80): UP if up else DOWN
            for ip, up in alive.items()}


def scripts(actions: tuple[Action, ...]) -> list[tuple[str, str | None]]:
    return [(a.kind, a.script.command if a.script else None) for a in actions]


# ---- quorum changes


def test_quorum_changes_initial_then_transitions_only() -> None:
    v = vs(rs("10.0.0.1"), rs("10.0.0.2"), quorum=2,
           sorry_server=SorryServer("10.0.0.99", 80))
    pl = Planner(cfg(v))
    p = pl.plan({}, 0.0)
    assert p.quorum_changes == (QuorumChange(v.ident, True, False, 2, 2, initial=True),)
    assert pl.plan({}, 1.0).quorum_changes == ()  # nothing changed: nothing reported
    p = pl.plan(health(v, **{"10_0_0_1": False}), 2.0)
    assert p.quorum_changes == (QuorumChange(v.ident, False, True, 1, 1, initial=False),)
    # the scripts of the same plan: the real server's notify first, then the quorum's
    assert scripts(p.actions) == [("notify_down", "/bin/down 10.0.0.1"),
                                  ("quorum_down", "/bin/qdown 192.0.2.10")]
    assert pl.plan(health(v, **{"10_0_0_1": False}), 3.0).quorum_changes == ()
    p = pl.plan(health(v, **{"10_0_0_1": True}), 4.0)
    assert p.quorum_changes == (QuorumChange(v.ident, True, False, 2, 2, initial=False),)


def test_sorry_server_added_by_reload_while_quorum_down_is_a_change() -> None:
    v = vs(rs("10.0.0.1"), quorum=5)  # 1 < 5: down from the start, no sorry server
    pl = Planner(cfg(v))
    assert pl.plan({}, 0.0).quorum_changes == (
        QuorumChange(v.ident, False, False, 1, 1, initial=True),)
    pl.reload(cfg(replace(v, sorry_server=SorryServer("10.0.0.99", 80))))
    assert pl.plan({}, 1.0).quorum_changes == (
        QuorumChange(v.ident, False, True, 1, 1, initial=False),)


def test_virtual_server_removed_then_added_back_is_initial_again() -> None:
    a, b = vs(rs("10.0.0.1")), vs(rs("10.0.1.1"), vip="192.0.2.11")
    pl = Planner(cfg(a, b))
    assert [q.vs for q in pl.plan({}, 0.0).quorum_changes] == [a.ident, b.ident]
    pl.reload(cfg(a))
    assert pl.plan({}, 1.0).quorum_changes == ()
    pl.reload(cfg(a, b))
    assert pl.plan({}, 2.0).quorum_changes == (
        QuorumChange(b.ident, True, False, 1, 1, initial=True),)


# ---- drains


def test_drain_start_and_end_reported_once_each() -> None:
    pl = Planner(conf(["10.0.0.1", "10.0.0.2"], global_drain=30))
    assert pl.plan({}, 0.0).drains_started == ()
    pl.reload(conf(["10.0.0.2"], global_drain=30))
    p = pl.plan({}, 5.0)
    assert p.drains_started == (DrainStart(rid("10.0.0.1"), 5.0, 35.0),)
    assert p.drains_ended == ()
    p = pl.plan({}, 20.0)
    assert p.drains_started == () and p.drains_ended == ()
    p = pl.plan({}, 35.0)
    assert p.drains_ended == (DrainEnd(rid("10.0.0.1"), "expired"),)
    assert pl.plan({}, 36.0).drains_ended == ()


def test_drain_ended_early_by_idle_counters() -> None:
    pl = Planner(conf(["10.0.0.1", "10.0.0.2"], global_drain=60))
    pl.plan({}, 0.0)
    pl.reload(conf(["10.0.0.2"], global_drain=60))
    assert pl.plan({}, 10.0).drains_started == (DrainStart(rid("10.0.0.1"), 10.0, 70.0),)
    idle = {(SVC, DestKey("10.0.0.1", 80)): DestStats()}
    p = pl.plan({}, 12.0, idle, 11.0)
    assert p.drains_ended == (DrainEnd(rid("10.0.0.1"), "idle"),)


def test_drain_cancelled_by_reload_reported_by_the_next_plan() -> None:
    both, one = conf(["10.0.0.1", "10.0.0.2"], global_drain=30), conf(["10.0.0.2"],
                                                                        global_drain=30)
    pl = Planner(both)
    pl.plan({}, 0.0)
    pl.reload(one)
    assert pl.plan({}, 1.0).drains_started == (DrainStart(rid("10.0.0.1"), 1.0, 31.0),)
    pl.reload(both)
    p = pl.plan({}, 2.0)
    assert p.drains_ended == (DrainEnd(rid("10.0.0.1"), "re-added"),) and not p.draining
    # removed and re-added before any plan saw the drain: nothing to report either way
    pl.reload(one)
    pl.reload(both)
    p = pl.plan({}, 3.0)
    assert p.drains_started == () and p.drains_ended == ()


# ---- omega on stop


def test_no_omega_runs_nothing_on_stop() -> None:
    v = vs(rs("10.0.0.1"))
    pl = Planner(cfg(v))
    pl.plan({}, 0.0)
    assert pl.shutdown() == ()


def test_never_planned_runs_nothing_on_stop() -> None:
    assert Planner(cfg(vs(rs("10.0.0.1"), omega=True))).shutdown() == ()


def test_omega_notifies_alive_servers_in_the_pool_then_quorum_down() -> None:
    a = vs(rs("10.0.0.1"), rs("10.0.0.2"), rs("10.0.0.3"), omega=True)
    b = vs(rs("10.0.1.1"), vip="192.0.2.11", omega=False)
    pl = Planner(cfg(a, b))
    pl.plan({}, 0.0)
    pl.plan(health(a, **{"10_0_0_2": False}), 1.0)
    assert scripts(pl.shutdown()) == [
        ("notify_down", "/bin/down 10.0.0.1"), ("notify_down", "/bin/down 10.0.0.3"),
        ("quorum_down", "/bin/qdown 192.0.2.10")]
    # keepalived lvs_flush_on_stop (FULL or VS): no real server is cleared one by one, so
    # only update_vs_notifies runs: quorum_down
    assert scripts(pl.shutdown("all")) == scripts(pl.shutdown("vs")) == [
        ("quorum_down", "/bin/qdown 192.0.2.10")]
    assert pl.shutdown() == pl.shutdown()  # a query: nothing changed by asking


def test_omega_quorum_down_even_if_quorum_was_down_and_sorry_server_pushed_servers_out() -> None:
    # quorum 3: 10.0.0.1 (weight 1) fails -> 2 < 3, the sorry server enters; 10.0.0.2 is
    # alive but out of the pool (not rs->set), 10.0.0.3 stays at weight 0 (inhibit: set)
    v = vs(rs("10.0.0.1"), rs("10.0.0.2"), rs("10.0.0.3", inhibit_on_failure=True),
           quorum=3, sorry_server=SorryServer("10.0.0.99", 80), omega=True)
    pl = Planner(cfg(v))
    pl.plan({}, 0.0)
    p = pl.plan(health(v, **{"10_0_0_1": False}), 1.0)
    st = p.states[v.ident]
    assert not st.quorum_up and st.sorry_active
    assert scripts(pl.shutdown()) == [("notify_down", "/bin/down 10.0.0.3"),
                                      ("quorum_down", "/bin/qdown 192.0.2.10")]
    shut = pl.shutdown()
    assert shut[0].rs == RealServerId(v.ident, "10.0.0.3", 80)
    assert shut[-1].kind == "quorum_down" and shut[-1].rs is None


def test_omega_alpha_server_never_checked_is_not_notified() -> None:
    v = vs(rs("10.0.0.1", alpha=True), rs("10.0.0.2"), omega=True)
    pl = Planner(cfg(v))
    pl.plan({}, 0.0)  # alpha: out of the pool until a check passes
    assert scripts(pl.shutdown()) == [("notify_down", "/bin/down 10.0.0.2"),
                                      ("quorum_down", "/bin/qdown 192.0.2.10")]
