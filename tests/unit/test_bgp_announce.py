"""The BGP announcer core (lvsd.bgp.announce) and the health derivation (lvsd.bgp.health), on a
scripted clock: rise/fall hysteresis, pending transitions cancelled, reload, stop, sessions."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from lvsd.bgp.announce import Announce, Announcer, AnnounceSpec, Withdraw
from lvsd.bgp.health import ScriptTrack, derive
from lvsd.config.model import BgpAnnounce
from lvsd.pool.table import DestKey, DestSpec

pytestmark = pytest.mark.unit

WEB = AnnounceSpec("WEB", "10.0.0.100/32", rise_delay=2.0, fall_delay=1.0)


def kinds(acts: list[Announce | Withdraw]) -> list[tuple[str, str]]:
    return [(type(a).__name__, a.name) for a in acts]


def test_nothing_announced_before_a_verdict_and_rise_delay_holds() -> None:
    an = Announcer([WEB], now=0.0)
    assert an.tick(100.0) == [] and an.next_deadline() is None
    assert not an.announced("WEB")
    assert an.health("WEB", True, "quorum up", 10.0) == []
    assert an.next_deadline() == 12.0
    assert an.tick(11.999) == []
    acts = an.tick(12.0)
    assert kinds(acts) == [("Announce", "WEB")]
    assert isinstance(acts[0], Announce) and acts[0].cidr == "10.0.0.100/32"
    assert "quorum up" in acts[0].reason and "healthy for 2 s" in acts[0].reason
    assert an.announced("WEB") and an.next_deadline() is None
    st = an.states()[0]
    assert st.announced and st.since == 12.0 and st.reason == "quorum up"


def test_flapping_health_within_the_delays_never_moves_the_route() -> None:
    an = Announcer([WEB], now=0.0)
    an.health("WEB", True, "up", 0.0)
    assert kinds(an.tick(2.0)) == [("Announce", "WEB")]
    # down for less than fall_delay (1 s), back up: no withdraw
    assert an.health("WEB", False, "quorum down", 3.0) == []
    assert an.next_deadline() == 4.0
    assert an.health("WEB", True, "up", 3.5) == []
    assert an.next_deadline() is None
    assert an.tick(10.0) == [] and an.announced("WEB")
    # down for fall_delay: withdrawn with the health reason
    an.health("WEB", False, "virtual server X quorum down", 11.0)
    acts = an.tick(12.0)
    assert kinds(acts) == [("Withdraw", "WEB")]
    assert acts[0].reason == "virtual server X quorum down"
    # up again for less than rise_delay, down again: nothing announced
    an.health("WEB", True, "up", 13.0)
    assert an.tick(14.9) == []
    an.health("WEB", False, "down", 14.9)
    assert an.tick(20.0) == [] and not an.announced("WEB")


def test_zero_fall_delay_withdraws_at_once_and_repeated_verdicts_keep_timing() -> None:
    an = Announcer([AnnounceSpec("A", "192.0.2.1/32", rise_delay=1.0, fall_delay=0.0)], 0.0)
    an.health("A", True, "up", 0.0)
    an.health("A", True, "up, new reason", 0.9)  # same verdict: the delay still runs from 0
    assert kinds(an.tick(1.0)) == [("Announce", "A")]
    assert kinds(an.health("A", False, "interface eth0 down", 5.0)) == [("Withdraw", "A")]


def test_stop_withdraws_every_announced_route_and_ignores_health_after() -> None:
    specs = [WEB, AnnounceSpec("DNS", "10.0.0.53/32", 0.0, 0.0),
             AnnounceSpec("IDLE", "10.0.0.7/32", 0.0, 0.0)]
    an = Announcer(specs, 0.0)
    an.health("WEB", True, "up", 0.0)
    an.health("DNS", True, "up", 0.0)
    an.tick(5.0)
    assert an.announced("WEB") and an.announced("DNS") and not an.announced("IDLE")
    acts = an.stop("lvsd stopping", 6.0)
    assert sorted(kinds(acts)) == [("Withdraw", "DNS"), ("Withdraw", "WEB")]
    assert all(a.reason == "lvsd stopping" for a in acts)
    assert an.stopped and an.next_deadline() is None
    assert an.health("WEB", True, "up", 7.0) == [] and an.tick(100.0) == []
    assert not any(st.announced for st in an.states())


def test_reload_keeps_unchanged_withdraws_removed_and_moved() -> None:
    an = Announcer([WEB, AnnounceSpec("OLD", "10.0.0.9/32", 0.0, 0.0)], 0.0)
    an.health("WEB", True, "up", 0.0)
    an.health("OLD", True, "up", 0.0)
    an.tick(2.0)
    # WEB keeps its address (new delays), OLD goes, NEW comes
    acts = an.configure([AnnounceSpec("WEB", "10.0.0.100/32", 5.0, 5.0),
                         AnnounceSpec("NEW", "10.0.0.10/32", 0.0, 0.0)], 3.0)
    assert kinds(acts) == [("Withdraw", "OLD")] and acts[0].reason == "removed from the config"
    assert an.announced("WEB") and not an.announced("NEW")
    assert {s.name for s in an.states()} == {"WEB", "NEW"}
    # the new fall delay applies
    an.health("WEB", False, "down", 4.0)
    assert an.tick(8.9) == [] and kinds(an.tick(9.0)) == [("Withdraw", "WEB")]
    # an address change is a withdraw of the old route; the new one starts withdrawn
    an.health("NEW", True, "up", 10.0)
    an.tick(10.0)
    acts = an.configure([AnnounceSpec("NEW", "10.0.0.11/32", 0.0, 0.0)], 11.0)
    assert [(type(a).__name__, a.cidr) for a in acts] == [("Withdraw", "10.0.0.10/32")]
    assert not an.announced("NEW")


def test_sessions_report_changes_only() -> None:
    an = Announcer([WEB], 0.0)
    ch = an.sessions({"10.0.1.1": "Active"}, 1.0)
    assert [(c.neighbor, c.previous, c.state) for c in ch] == [("10.0.1.1", None, "Active")]
    assert an.sessions({"10.0.1.1": "Active"}, 2.0) == []
    ch = an.sessions({"10.0.1.1": "Established", "10.0.1.2": "Idle"}, 3.0)
    assert [(c.neighbor, c.previous, c.state) for c in ch] == [
        ("10.0.1.1", "Active", "Established"), ("10.0.1.2", None, "Idle")]
    assert {(s.neighbor, s.state, s.since) for s in an.session_states()} == {
        ("10.0.1.1", "Established", 3.0), ("10.0.1.2", "Idle", 3.0)}
    an.sessions({"10.0.1.2": "Idle"}, 4.0)
    assert [s.neighbor for s in an.session_states()] == ["10.0.1.2"]


# ------------------------------------------------------------------ health derivation

@dataclass
class _Vs:
    quorum_up: bool
    services: tuple[object, ...]
    live_weight: int = 1
    quorum: int = 1


@dataclass
class _Entry:
    dests: dict[object, object] = field(default_factory=dict)


def _ann(**kw: object) -> BgpAnnounce:
    base: dict[str, object] = {"name": "WEB", "address": "10.0.0.100", "prefixlen": 32,
                               "virtual_servers": ("10.0.0.100:80/TCP",)}
    base.update(kw)
    return BgpAnnounce(**base)  # type: ignore[arg-type]


def test_health_quorum_programmed_scripts_interfaces() -> None:
    key = "svc-key"
    dest = DestSpec(DestKey("10.0.0.2", 80), weight=1)
    zero = DestSpec(DestKey("10.0.0.2", 80), weight=0)
    up = {"10.0.0.100:80/TCP": _Vs(True, (key,))}
    a = _ann()
    assert derive(a, vs_states=None, actual={}, data_plane_ok=True, scripts={}, links={}) \
        .reason == "pool not planned yet"
    v = derive(a, vs_states={}, actual={}, data_plane_ok=True, scripts={}, links={})
    assert not v.ok and "not in the pool" in v.reason
    v = derive(a, vs_states={"10.0.0.100:80/TCP": _Vs(False, (key,), 0, 2)}, actual={},
               data_plane_ok=True, scripts={}, links={})
    assert not v.ok and v.reason == ("virtual server 10.0.0.100:80/TCP quorum down (live "
                                     "weight 0, quorum 2)")
    v = derive(a, vs_states=up, actual={}, data_plane_ok=True, scripts={}, links={})
    assert not v.ok and "not programmed" in v.reason
    v = derive(a, vs_states=up, actual={key: _Entry({1: zero})}, data_plane_ok=True,
               scripts={}, links={})
    assert not v.ok and "not programmed" in v.reason
    v = derive(a, vs_states=up, actual={key: _Entry({1: dest})}, data_plane_ok=True,
               scripts={}, links={})
    assert v.ok and "quorum up and programmed" in v.reason
    v = derive(a, vs_states=up, actual={key: _Entry({1: dest})}, data_plane_ok=False,
               scripts={}, links={})
    assert not v.ok and "data plane" in v.reason
    b = _ann(track_scripts=("CHK",), track_interfaces=("eth0",))
    ok_pool = {"vs_states": up, "actual": {key: _Entry({1: dest})}, "data_plane_ok": True}
    v = derive(b, scripts={}, links={}, **ok_pool)  # type: ignore[arg-type]
    assert not v.ok and v.reason == ("track_script CHK has no result yet; interface eth0 "
                                     "missing")
    v = derive(b, scripts={"CHK": False}, links={"eth0": False}, **ok_pool)  # type: ignore[arg-type]
    assert v.reason == "track_script CHK failing; interface eth0 down"
    v = derive(b, scripts={"CHK": True}, links={"eth0": True}, **ok_pool)  # type: ignore[arg-type]
    assert v.ok and "scripts OK: CHK" in v.reason and "interfaces up: eth0" in v.reason


CONF = """
virtual_server 10.0.0.100 80 {
    lb_algo mh
    lb_kind DR
    protocol TCP
    quorum 2
    real_server 10.0.0.2 80 { weight 1 }
    real_server 10.0.0.3 80 { weight 1 }
}
bgp_speaker {
    local_as 65001
    neighbor 10.0.1.1 { remote_as 65000 }
}
bgp_announce WEB {
    address 10.0.0.100/32
    virtual_server 10.0.0.100 80
}
"""


async def test_health_over_the_real_planner_and_reconciler() -> None:
    """The derivation over the pool's own values: a plan of the config with the servers' health
    and the reconciler's view of the memory data plane after a reconcile."""
    from lvsd.checks.health import RealServerHealth
    from lvsd.config.loader import loads
    from lvsd.dataplane.memory import MemoryDataPlane
    from lvsd.pool.planner import Planner
    from lvsd.pool.reconciler import Reconciler

    cfg = loads(CONF)
    assert cfg.ok, [str(d) for d in cfg.diagnostics]
    (ann,) = cfg.bgp_announces
    vs = cfg.virtual_servers[0]
    planner = Planner(cfg)
    rec = Reconciler(MemoryDataPlane())
    await rec.start()

    def verdict(alive: list[bool], now: float) -> tuple[bool, str]:
        health = {Planner.rs_id(vs, rs): RealServerHealth(alive=a)
                  for rs, a in zip(vs.real_servers, alive, strict=True)}
        plan = planner.plan(health, now)
        v = derive(ann, vs_states=plan.states, actual=rec.status.actual,  # type: ignore[arg-type]
                   data_plane_ok=True, scripts={}, links={})
        rec.set_desired(plan.table)
        return v.ok, v.reason

    ok, why = verdict([True, True], 1.0)  # planned, but the table is not written yet
    assert not ok and "not programmed in the data plane" in why
    await rec.reconcile("change")
    assert verdict([True, True], 2.0) == (True, "quorum up and programmed: 10.0.0.100:80/TCP")
    ok, why = verdict([True, False], 3.0)  # quorum 2: one server is not enough
    assert not ok and "quorum down (live weight 1, quorum 2)" in why
    await rec.stop()


def test_script_track_rise_fall() -> None:
    t = ScriptTrack(rise=2, fall=3, init_fail=False)
    assert t.ok is None
    assert t.result(True) is True  # from unknown the first result decides
    assert t.result(False) is True and t.result(False) is True
    assert t.result(False) is False  # third failure
    assert t.result(True) is False and t.result(True) is True  # rise 2
    t = ScriptTrack(rise=1, fall=1, init_fail=True)
    assert t.ok is False and t.result(True) is True and t.result(False) is False
