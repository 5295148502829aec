"""Planner rules, against keepalived's behaviour (check/ipwrapper.c, check_misc.c)."""

from __future__ import annotations

import random
from collections.abc import Mapping

import pytest

from lvsd.checks.health import RealServerHealth, RealServerId
from lvsd.checks.result import ProbeResult
from lvsd.checks.tracker import CheckTracker, aggregate
from lvsd.config.model import (
    NOPOS,
    Checker,
    CheckKind,
    Config,
    LbKind,
    Protocol,
    RealServer,
    Script,
    SorryServer,
    TunnelOptions,
    VirtualServer,
    VirtualServerGroup,
    VsgAddressRange,
    VsgFwmark,
)
from lvsd.pool.planner import Planner, effective_weight
from lvsd.pool.table import DestKey, Fwd, Proto, ServiceEntry, ServiceKey

pytestmark = pytest.mark.unit

VIP = "192.0.2.10"
SVC = ServiceKey.for_addr(VIP, 80, Proto.TCP)


def tcp(ip: str, port: int = 80, **kw: object) -> Checker:
    return Checker(CheckKind.TCP_CHECK, NOPOS, ip, port, **kw)  # type: ignore[arg-type]


def rs(ip: str, weight: int = 1, port: int = 80, checkers: int = 1, **kw: object) -> RealServer:
    chk = tuple(tcp(ip, port) for _ in range(checkers))
    return RealServer(ip, port, weight=weight, checkers=chk, **kw)  # type: ignore[arg-type]


def vs(*servers: RealServer, **kw: object) -> VirtualServer:
    kw.setdefault("address", VIP)
    kw.setdefault("port", 80)
    kw.setdefault("protocol", Protocol.TCP)
    return VirtualServer(NOPOS, real_servers=servers, **kw)  # type: ignore[arg-type]


def cfg(*vss: VirtualServer, groups: tuple[VirtualServerGroup, ...] = ()) -> Config:
    return Config("test.conf", "t", virtual_servers=vss, virtual_server_groups=groups)


def rid(v: VirtualServer, ip: str, port: int = 80) -> RealServerId:
    return RealServerId(v.ident, ip, port)


UP = RealServerHealth(alive=True, reason="ok")
DOWN = RealServerHealth(alive=False, reason="refused")


def weights(plan_table: Mapping[ServiceKey, ServiceEntry],
            key: ServiceKey = SVC) -> dict[str, int]:
    entry = plan_table[key]
    return {str(k): d.weight for k, d in entry.dests.items()}


def test_all_servers_added_before_first_check_without_alpha() -> None:
    v = vs(rs("10.0.0.1", 3), rs("10.0.0.2", 1))
    p = Planner(cfg(v)).plan({}, now=0.0)
    assert weights(p.table) == {"10.0.0.1:80": 3, "10.0.0.2:80": 1}
    assert p.states[v.ident].quorum_up
    # keepalived: quorum starts down, is gained at init -> quorum_up runs, no rs notify
    assert [a.kind for a in p.actions] == ["quorum_up"]


def test_alpha_keeps_servers_out_until_checked() -> None:
    v = vs(rs("10.0.0.1", alpha=True), rs("10.0.0.2", alpha=True, inhibit_on_failure=True),
           rs("10.0.0.3", checkers=0, alpha=True))
    pl = Planner(cfg(v))
    p = pl.plan({}, 0.0)
    # no checker -> always alive; alpha+inhibit -> present at 0; alpha -> absent
    assert weights(p.table) == {"10.0.0.2:80": 0, "10.0.0.3:80": 1}
    p = pl.plan({rid(v, "10.0.0.1"): UP, rid(v, "10.0.0.2"): DOWN}, 1.0)
    assert weights(p.table) == {"10.0.0.1:80": 1, "10.0.0.2:80": 0, "10.0.0.3:80": 1}
    kinds = [(a.kind, a.rs.addr if a.rs else None) for a in p.actions]
    # 10.0.0.1 came up; 10.0.0.2's first (alpha) check failed -> notify_down
    assert ("notify_up", "10.0.0.1") in kinds
    assert ("notify_down", "10.0.0.2") in kinds


def test_failed_server_removed_or_inhibited_and_returns() -> None:
    v = vs(rs("10.0.0.1", 5), rs("10.0.0.2", 7, inhibit_on_failure=True),
           rs("10.0.0.3", 1, notify_down=Script("/bin/down"), notify_up=Script("/bin/up")))
    pl = Planner(cfg(v))
    pl.plan({}, 0.0)
    down = {rid(v, "10.0.0.1"): DOWN, rid(v, "10.0.0.2"): DOWN, rid(v, "10.0.0.3"): DOWN}
    p = pl.plan(down, 1.0)
    assert weights(p.table) == {"10.0.0.2:80": 0}
    notif = [a for a in p.actions if a.kind == "notify_down"]
    assert len(notif) == 3
    assert [a.script.command for a in notif if a.script] == ["/bin/down"]
    # no sorry server: losing quorum only runs quorum_down
    assert p.actions[-1].kind == "quorum_down"
    p = pl.plan({}, 2.0)  # health unknown again counts as not-yet-checked: keeps last state?
    p = pl.plan({k: UP for k in down}, 3.0)
    assert weights(p.table) == {"10.0.0.1:80": 5, "10.0.0.2:80": 7, "10.0.0.3:80": 1}
    assert [a.kind for a in p.actions].count("notify_up") == 3
    assert [a.kind for a in p.actions][-1] == "quorum_up"
    # same health again: no action (edge-triggered)
    assert pl.plan({k: UP for k in down}, 4.0).actions == ()


def test_quorum_hysteresis_exactly_as_keepalived() -> None:
    # quorum 10, hysteresis 2: gain at >= 12, lose at < 8 (or 0)
    servers = [rs(f"10.0.0.{i}", 2) for i in range(1, 7)]  # 6 x 2 = 12
    v = vs(*servers, quorum=10, hysteresis=2)
    pl = Planner(cfg(v))
    p = pl.plan({}, 0.0)
    assert p.states[v.ident].quorum_up and p.states[v.ident].live_weight == 12

    def health(n_up: int) -> dict[RealServerId, RealServerHealth]:
        return {rid(v, f"10.0.0.{i}"): UP if i <= n_up else DOWN for i in range(1, 7)}

    seq = []
    for n_up in (5, 4, 3, 4, 5, 6, 5, 4, 3):  # live = 2 * n_up
        p = pl.plan(health(n_up), float(n_up))
        seq.append((2 * n_up, p.states[v.ident].quorum_up,
                    [a.kind for a in p.actions if a.kind.startswith("quorum")]))
    assert seq == [
        (10, True, []), (8, True, []), (6, False, ["quorum_down"]),
        (8, False, []), (10, False, []), (12, True, ["quorum_up"]),
        (10, True, []), (8, True, []), (6, False, ["quorum_down"]),
    ]


def test_quorum_lost_when_live_weight_zero_even_below_threshold() -> None:
    v = vs(rs("10.0.0.1", 1), quorum=1, hysteresis=5)  # threshold down = -4
    pl = Planner(cfg(v))
    # start: 1 < 1+5 -> starts down (no sorry server: no action)
    p = pl.plan({}, 0.0)
    assert not p.states[v.ident].quorum_up and p.actions == ()
    v2 = vs(rs("10.0.0.1", 6), quorum=1, hysteresis=5)
    pl = Planner(cfg(v2))
    assert pl.plan({}, 0.0).states[v2.ident].quorum_up
    p = pl.plan({rid(v2, "10.0.0.1"): DOWN}, 1.0)
    assert not p.states[v2.ident].quorum_up


def test_sorry_server_enters_on_quorum_loss_and_leaves_on_recovery() -> None:
    v = vs(rs("10.0.0.1", 1), rs("10.0.0.2", 1, inhibit_on_failure=True), quorum=2,
           sorry_server=SorryServer("10.0.0.99", 8080),
           quorum_down=Script("/bin/qdown"), quorum_up=Script("/bin/qup"))
    pl = Planner(cfg(v))
    assert weights(pl.plan({}, 0.0).table) == {"10.0.0.1:80": 1, "10.0.0.2:80": 1}
    p = pl.plan({rid(v, "10.0.0.1"): DOWN}, 1.0)
    st = p.states[v.ident]
    assert not st.quorum_up and st.sorry_active and st.live_weight == 1
    # remaining alive server leaves (inhibit: stays at 0), sorry server in at weight 1
    assert weights(p.table) == {"10.0.0.2:80": 0, "10.0.0.99:8080": 1}
    q = [a for a in p.actions if a.kind.startswith("quorum")]
    assert [(a.kind, a.script.command if a.script else None) for a in q] == [
        ("quorum_down", "/bin/qdown")]
    p = pl.plan({rid(v, "10.0.0.1"): UP}, 2.0)
    assert weights(p.table) == {"10.0.0.1:80": 1, "10.0.0.2:80": 1}
    assert not p.states[v.ident].sorry_active
    assert [a.kind for a in p.actions][-1] == "quorum_up"


def test_sorry_server_inhibit_keeps_it_at_zero() -> None:
    v = vs(rs("10.0.0.1", 1), sorry_server=SorryServer("10.0.0.99", 80),
           sorry_server_inhibit=True)
    pl = Planner(cfg(v))
    assert weights(pl.plan({}, 0.0).table) == {"10.0.0.1:80": 1, "10.0.0.99:80": 0}
    p = pl.plan({rid(v, "10.0.0.1"): DOWN}, 1.0)
    assert weights(p.table) == {"10.0.0.99:80": 1}


def test_alpha_with_sorry_server_starts_with_quorum_down() -> None:
    v = vs(rs("10.0.0.1", alpha=True), sorry_server=SorryServer("10.0.0.99", 80))
    p = Planner(cfg(v)).plan({}, 0.0)
    assert weights(p.table) == {"10.0.0.99:80": 1}
    assert [a.kind for a in p.actions] == ["quorum_down"]
    assert "Starting with quorum down" in p.actions[0].message


def board_health(weight: int, *dynamic: tuple[CheckKind, int]) -> RealServerHealth:
    """The health the checks layer publishes (tracker.aggregate, as HealthBoard does) for a
    server of ``weight`` whose checkers are up and report these dynamic weights (MISC_CHECK
    misc_dynamic: exit status - 2; FILE_CHECK: file value x weight)."""
    trackers = []
    for kind, value in dynamic:
        extra = {"misc_dynamic": True} if kind is CheckKind.MISC_CHECK else {}
        t = CheckTracker(Checker(kind, NOPOS, "10.0.0.1", 80, **extra),  # type: ignore[arg-type]
                         0.0, random.Random(0))
        t.on_result(ProbeResult(True, "ok", weight=value), 1.0)
        trackers.append(t)
    h = aggregate(weight, trackers, 1.0, None)
    assert h is not None
    return h


def test_dynamic_weight_misc_replaces_file_adds() -> None:
    r = rs("10.0.0.1", 10)
    misc = (CheckKind.MISC_CHECK, 3)
    file = (CheckKind.FILE_CHECK, 5)
    assert effective_weight(r, board_health(10, misc)) == 3
    assert effective_weight(r, board_health(10, file)) == 15
    assert effective_weight(r, board_health(10, misc, file)) == 8
    neg = (CheckKind.FILE_CHECK, -50)
    assert effective_weight(r, board_health(10, neg)) == 0  # real_weight() clamps
    assert effective_weight(r, RealServerHealth(True, dynamic_weight=2)) == 12
    assert effective_weight(r, board_health(10)) == 10  # no dynamic checker: configured
    v = vs(r)
    p = Planner(cfg(v)).plan({rid(v, "10.0.0.1"): board_health(10, misc)}, 0.0)
    assert weights(p.table) == {"10.0.0.1:80": 3}
    assert p.states[v.ident].live_weight == 3


def test_group_expansion_ranges_and_fwmarks() -> None:
    g = VirtualServerGroup("WEB", ranges=(VsgAddressRange("192.0.2.1", "192.0.2.3", 80),
                                          VsgAddressRange("fd00::1", "fd00::1", 443)),
                           fwmarks=(VsgFwmark(9),))
    v = VirtualServer(NOPOS, group="WEB", protocol=Protocol.TCP, lb_kind=LbKind.DR, lb_algo="sh",
                      sched_flags=frozenset({"sh-port"}), persistence_timeout=300,
                      real_servers=(rs("10.0.0.1", 2, port=8080, lb_kind=LbKind.DR),))
    p = Planner(cfg(v, groups=(g,))).plan({}, 0.0)
    keys = sorted(p.table)
    assert [str(k) for k in keys] == [
        "FWM 9 IPv4", "TCP 192.0.2.1:80", "TCP 192.0.2.2:80", "TCP 192.0.2.3:80",
        "TCP [fd00::1]:443"]
    fw = p.table[ServiceKey.for_fwmark(9)]
    assert list(fw.dests) == [DestKey("10.0.0.1", 0)]  # DR on fwmark: port 0
    six = p.table[ServiceKey.for_addr("fd00::1", 443, Proto.TCP)]
    assert list(six.dests) == [DestKey("10.0.0.1", 443)]  # DR: the group entry's port
    spec = six.spec
    assert (spec.scheduler, spec.flags, spec.persistence_timeout) == (
        "sh", frozenset({"sh-port"}), 300)


def test_fwmark_ipv6_nat_tun_options_and_thresholds() -> None:
    v = VirtualServer(NOPOS, fwmark=5, family=6, real_servers=(
        RealServer("fd00::2", 80, weight=4, uthreshold=100, lthreshold=10),
        RealServer("fd00::3", 0, lb_kind=LbKind.TUN,
                   tunnel=TunnelOptions("gue", 6080, "remcsum")),
    ))
    p = Planner(cfg(v)).plan({}, 0.0)
    entry = p.table[ServiceKey.for_fwmark(5, 6)]
    nat = entry.dests[DestKey("fd00::2", 80)]
    assert (nat.fwd, nat.weight, nat.u_threshold, nat.l_threshold) == (Fwd.MASQ, 4, 100, 10)
    tun = entry.dests[DestKey("fd00::3", 0)]
    assert (tun.fwd, tun.tun_type, tun.tun_port, tun.tun_flags) == (Fwd.TUNNEL, 1, 6080, 2)


def test_udp_service_and_nat_port_default() -> None:
    v = vs(RealServer("10.0.0.1", 0), protocol=Protocol.UDP, port=53)
    p = Planner(cfg(v)).plan({}, 0.0)
    key = ServiceKey.for_addr(VIP, 53, Proto.UDP)
    assert list(p.table[key].dests) == [DestKey("10.0.0.1", 53)]


def test_duplicate_service_reported_not_crashing() -> None:
    a = vs(rs("10.0.0.1"))
    b = vs(rs("10.0.0.2"), lb_algo="rr")
    g = VirtualServerGroup("G", ranges=(VsgAddressRange(VIP, VIP, 80),))
    c = VirtualServer(NOPOS, group="G", protocol=Protocol.TCP, real_servers=(rs("10.0.0.3"),))
    d = VirtualServer(NOPOS, group="MISSING")
    p = Planner(cfg(a, b, c, d, groups=(g,))).plan({}, 0.0)
    assert weights(p.table) == {"10.0.0.1:80": 1}
    assert any("already defined" in x for x in p.problems)
    assert any("MISSING is not defined" in x for x in p.problems)


def test_reload_keeps_state() -> None:
    v = vs(rs("10.0.0.1", 1), rs("10.0.0.2", 1), quorum=2,
           sorry_server=SorryServer("10.0.0.99", 80))
    pl = Planner(cfg(v))
    pl.plan({}, 0.0)
    pl.plan({rid(v, "10.0.0.1"): DOWN}, 1.0)
    v2 = vs(rs("10.0.0.1", 1), rs("10.0.0.2", 1), rs("10.0.0.3", 1), quorum=2,
            sorry_server=SorryServer("10.0.0.99", 80))
    pl.reload(cfg(v2))
    p = pl.plan({rid(v, "10.0.0.1"): DOWN}, 2.0)
    # new server added before its first check -> live 2 -> quorum regained, sorry out
    assert weights(p.table) == {"10.0.0.2:80": 1, "10.0.0.3:80": 1}
    assert [a.kind for a in p.actions] == ["quorum_up"]


def test_refusals_name_the_line() -> None:
    from lvsd.config.model import Pos
    from lvsd.pool.planner import refusals
    from lvsd.pool.table import DestSpec, ServiceSpec

    def refuse(spec: ServiceSpec | DestSpec) -> str | None:
        if isinstance(spec, DestSpec) and spec.fwd is Fwd.DROUTE:
            return "DR refused"
        return None

    v = vs(RealServer("10.0.0.1", 80, pos=Pos("k.conf", 12), lb_kind=LbKind.DR),
           RealServer("10.0.0.2", 80, pos=Pos("k.conf", 14)),
           sorry_server=SorryServer("10.0.0.9", 80, LbKind.DR, Pos("k.conf", 9)))
    assert refusals(cfg(v), refuse) == ["k.conf:12: DR refused", "k.conf:9: DR refused"]


@pytest.mark.parametrize(("written", "planned"), [("24", "255.255.255.0"),
                                                   ("255.255.255.0", "255.255.255.0"),
                                                   ("/16", "255.255.0.0"),
                                                   ("32", None)])
def test_persistence_granularity_is_planned_in_the_form_the_kernel_reads_back(
        written: str, planned: str | None) -> None:
    # The kernel dumps IPv4 granularity as a dotted netmask: planning "24" as written would
    # make every reconcile see a difference and edit the service forever.
    v = vs(rs("198.51.100.11"), persistence_timeout=300, persistence_granularity=written)
    table = Planner(cfg(v)).plan({}, now=0.0).table
    assert table[SVC].spec.persistence_granularity == planned


def test_bad_persistence_granularity_is_refused_at_load_with_its_position() -> None:
    from lvsd.config.model import Pos
    from lvsd.pool.planner import refusals

    v = VirtualServer(Pos("lvs.conf", 7), address=VIP, port=80, protocol=Protocol.TCP,
                      persistence_timeout=300, persistence_granularity="banana",
                      real_servers=(rs("198.51.100.11"),))
    msgs = refusals(cfg(v), lambda spec: None)
    assert any("lvs.conf:7" in m and "banana" in m for m in msgs), msgs
