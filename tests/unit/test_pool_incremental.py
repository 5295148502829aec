"""The planner evaluates again only the virtual servers whose inputs changed.

A planner fed one health mapping updated in place (as the checks layer's board is: an entry is
replaced only when it changes) must give, plan after plan, exactly what a planner gives that
re-evaluates every virtual server (fed equal but new health objects each time, so every entry
looks changed): same table, same states, same actions, across quorum/hysteresis, sorry servers,
inhibit_on_failure, alpha, dynamic weights, a group, servers appearing in the mapping, and a
reload.
"""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from lvsd.checks.health import RealServerHealth, RealServerId
from lvsd.config.model import (
    NOPOS,
    Checker,
    CheckKind,
    Config,
    Protocol,
    RealServer,
    SorryServer,
    VirtualServer,
    VirtualServerGroup,
    VsgAddressRange,
)
from lvsd.pool.planner import Plan, Planner

pytestmark = pytest.mark.unit


def rs(ip: str, weight: int = 1, **kw: object) -> RealServer:
    chk = (Checker(CheckKind.TCP_CHECK, NOPOS, ip, 80),)
    return RealServer(ip, 80, weight=weight, checkers=chk, **kw)  # type: ignore[arg-type]


def config(extra_rs: bool = False) -> Config:
    group = VirtualServerGroup("G", ranges=(
        VsgAddressRange("192.0.2.20", "192.0.2.22", 80, NOPOS),))
    vss = (
        VirtualServer(NOPOS, address="192.0.2.10", port=80, protocol=Protocol.TCP,
                      quorum=3, hysteresis=1, sorry_server=SorryServer("10.9.0.1", 80),
                      real_servers=(rs("10.0.0.1", 2), rs("10.0.0.2", 1), rs("10.0.0.3", 1))),
        VirtualServer(NOPOS, address="192.0.2.11", port=80, protocol=Protocol.TCP,
                      inhibit_on_failure=True, quorum=2,
                      real_servers=(rs("10.0.1.1", alpha=True), rs("10.0.1.2", 3),
                                    *((rs("10.0.1.3"),) if extra_rs else ()))),
        VirtualServer(NOPOS, address="192.0.2.12", port=80, protocol=Protocol.TCP,
                      sorry_server=SorryServer("10.9.0.2", 80), sorry_server_inhibit=True,
                      alpha=True, real_servers=(rs("10.0.2.1", alpha=True),)),
        VirtualServer(NOPOS, group="G", protocol=Protocol.TCP,
                      real_servers=(rs("10.0.3.1", 5), rs("10.0.3.2", 5))),
    )
    return Config("t.conf", "t", virtual_servers=vss, virtual_server_groups=(group,))


def ids(c: Config) -> list[RealServerId]:
    return [Planner.rs_id(v, r) for v in c.virtual_servers for r in v.real_servers]


def same(a: Plan, b: Plan) -> None:
    assert a.table == b.table
    assert a.states == b.states
    assert a.actions == b.actions
    assert a.problems == b.problems


@pytest.mark.parametrize("seed", range(8))
def test_incremental_plans_equal_full_evaluation(seed: int) -> None:
    rnd = random.Random(seed)
    c1, c2 = config(), config(extra_rs=True)
    inc, full = Planner(c1), Planner(c1)
    health: dict[RealServerId, RealServerHealth] = {}  # updated in place, like the board

    def step(now: float) -> None:
        a = inc.plan(health, now)
        b = full.plan({k: replace(h) for k, h in health.items()}, now)  # all new objects
        same(a, b)

    step(0.0)
    servers = ids(c1)
    for n in range(1, 120):
        if n == 60:
            inc.reload(c2)
            full.reload(c2)
            servers = ids(c2)
        r = rnd.choice(servers)
        health[r] = RealServerHealth(alive=rnd.random() < 0.5, reason=f"event {n}",
                                     dynamic_weight=rnd.choice((None, 0, 2, -1)))
        if rnd.random() < 0.2:
            step(float(n))  # an unchanged mapping too: a no-op plan
        step(n + 0.5)


def test_a_health_event_evaluates_only_its_virtual_server() -> None:
    c = config()
    p = Planner(c)
    v0, v1 = c.virtual_servers[0], c.virtual_servers[1]
    health: dict[RealServerId, RealServerHealth] = {}
    first = p.plan(health, 0.0)
    # a server seen for the first time (the mapping gains a key)
    health[Planner.rs_id(v0, v0.real_servers[0])] = RealServerHealth(False, reason="refused")
    second = p.plan(health, 1.0)
    assert second.states[v1.ident] is first.states[v1.ident]  # not evaluated again
    assert second.states[v0.ident] is not first.states[v0.ident]
    assert second.states[v0.ident].alive == 2
    # a value replaced in place (same keys, same order)
    health[Planner.rs_id(v0, v0.real_servers[0])] = RealServerHealth(True, reason="ok")
    third = p.plan(health, 2.0)
    assert third.states[v1.ident] is first.states[v1.ident]
    assert third.states[v0.ident].alive == 3
    assert [a.kind for a in third.actions] == ["notify_up"]
    # a key removed (a server unbound by a reload of the checks): its virtual server again
    del health[Planner.rs_id(v0, v0.real_servers[0])]
    fourth = p.plan(health, 3.0)
    assert fourth.states[v1.ident] is first.states[v1.ident]
    assert fourth.states[v0.ident] is not third.states[v0.ident]
    assert fourth.actions == ()
