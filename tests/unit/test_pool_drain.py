"""lvsd extension ``lvs_drain_on_remove``: a real server removed by a reload drains at weight 0.

Configs go through the real loader (the keyword is parsed as an operator writes it); time is
the planner's injected ``now``. The reconciler runs against the in-memory data plane where a
test checks what a data plane is actually told to do.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping
from pathlib import Path

import pytest

from lvsd.checks.health import RealServerHealth, RealServerId
from lvsd.config.loader import loads
from lvsd.config.model import Config
from lvsd.dataplane.memory import MemoryDataPlane
from lvsd.pool.planner import Planner
from lvsd.pool.reconciler import Reconciler
from lvsd.pool.table import DestKey, DestStats, Proto, ServiceEntry, ServiceKey

pytestmark = pytest.mark.unit

SVC = ServiceKey.for_addr("192.0.2.10", 80, Proto.TCP)
SVC2 = ServiceKey.for_addr("192.0.2.11", 80, Proto.TCP)
VS1 = "192.0.2.10:80/TCP"
UP = RealServerHealth(alive=True, reason="ok")
DOWN = RealServerHealth(alive=False, reason="refused")


def conf(servers: list[str], *, global_drain: float | None = None,
         vs_drain: float | None = None, second_vs: bool = False,
         check: bool = False) -> Config:
    g = f"global_defs {{\n  lvs_drain_on_remove {global_drain:g}\n}}\n" \
        if global_drain is not None else ""
    chk = "    TCP_CHECK { connect_timeout 1 }\n" if check else ""
    rss = "".join(f"  real_server {ip} 80 {{\n    weight 3\n{chk}  }}\n" for ip in servers)
    d = f"  lvs_drain_on_remove {vs_drain:g}\n" if vs_drain is not None else ""
    text = (g + "virtual_server 192.0.2.10 80 {\n  protocol TCP\n  lb_algo rr\n  lb_kind NAT\n"
            + d + rss + "}\n")
    if second_vs:
        text += ("virtual_server 192.0.2.11 80 {\n  protocol TCP\n  lb_algo rr\n"
                 "  lb_kind NAT\n  real_server 10.0.0.9 80 { weight 1 }\n}\n")
    cfg = loads(text, name="drain.conf")
    assert cfg.ok, cfg.diagnostics
    return cfg


def weights(table: Mapping[ServiceKey, ServiceEntry], key: ServiceKey = SVC) -> dict[str, int]:
    return {str(k): d.weight for k, d in table[key].dests.items()}


def rid(ip: str, vs: str = VS1) -> RealServerId:
    return RealServerId(vs, ip, 80)


def test_keyword_parsed_global_and_per_virtual_server() -> None:
    c = conf(["10.0.0.1"], global_drain=30, vs_drain=5.5)
    assert c.global_defs.lvs_drain_on_remove == 30.0
    assert c.virtual_servers[0].lvs_drain_on_remove == 5.5
    c = conf(["10.0.0.1"])
    assert c.global_defs.lvs_drain_on_remove == 0.0
    assert c.virtual_servers[0].lvs_drain_on_remove is None
    bad = loads("global_defs {\n lvs_drain_on_remove soon\n}\n", name="bad.conf")
    assert [(d.pos and d.pos.line, d.message) for d in bad.diagnostics] == [
        (2, "lvs_drain_on_remove 'soon' invalid - ignoring")]
    assert bad.global_defs.lvs_drain_on_remove == 0.0


def test_drain_zero_removes_at_once_like_keepalived() -> None:
    pl = Planner(conf(["10.0.0.1", "10.0.0.2"]))
    pl.plan({}, 0.0)
    pl.reload(conf(["10.0.0.2"]))
    p = pl.plan({}, 1.0)
    assert weights(p.table) == {"10.0.0.2:80": 3}
    assert p.next_deadline is None and not p.draining


def test_drain_n_weight_zero_then_leaves_exactly_at_n() -> None:
    pl = Planner(conf(["10.0.0.1", "10.0.0.2"], global_drain=30))
    pl.plan({}, 0.0)
    pl.reload(conf(["10.0.0.2"], global_drain=30))
    p = pl.plan({}, 100.0)  # the drain starts at the first plan after the reload
    assert weights(p.table) == {"10.0.0.1:80": 0, "10.0.0.2:80": 3}
    assert p.next_deadline == 130.0
    assert dict(p.draining) == {rid("10.0.0.1"): 130.0}
    p = pl.plan({}, 129.999)
    assert weights(p.table) == {"10.0.0.1:80": 0, "10.0.0.2:80": 3}
    assert p.next_deadline == 130.0
    p = pl.plan({}, 130.0)
    assert weights(p.table) == {"10.0.0.2:80": 3}
    assert p.next_deadline is None and not p.draining


def test_virtual_server_value_overrides_global() -> None:
    pl = Planner(conf(["10.0.0.1", "10.0.0.2"], global_drain=30, vs_drain=0))
    pl.plan({}, 0.0)
    pl.reload(conf(["10.0.0.2"], global_drain=30, vs_drain=0))
    assert weights(pl.plan({}, 1.0).table) == {"10.0.0.2:80": 3}  # vs says 0: at once

    pl = Planner(conf(["10.0.0.1", "10.0.0.2"], vs_drain=10))
    pl.plan({}, 0.0)
    pl.reload(conf(["10.0.0.2"], vs_drain=10))
    p = pl.plan({}, 1.0)
    assert weights(p.table) == {"10.0.0.1:80": 0, "10.0.0.2:80": 3}
    assert p.next_deadline == 11.0


def test_readd_during_drain_returns_to_normal_at_once() -> None:
    # with checkers and a verdict seen: it comes back alive at its weight, no notify
    pl = Planner(conf(["10.0.0.1", "10.0.0.2"], global_drain=30, check=True))
    pl.plan({rid("10.0.0.1"): UP, rid("10.0.0.2"): UP}, 0.0)
    pl.reload(conf(["10.0.0.2"], global_drain=30, check=True))
    assert weights(pl.plan({rid("10.0.0.2"): UP}, 1.0).table) == {
        "10.0.0.1:80": 0, "10.0.0.2:80": 3}
    pl.reload(conf(["10.0.0.1", "10.0.0.2"], global_drain=30, check=True))
    # its checker restarts: no verdict yet, the server is normal again at once
    p = pl.plan({rid("10.0.0.2"): UP}, 2.0)
    assert weights(p.table) == {"10.0.0.1:80": 3, "10.0.0.2:80": 3}
    assert p.actions == () and p.next_deadline is None and not p.draining
    # and it is not dropped at the old drain end
    assert weights(pl.plan({rid("10.0.0.2"): UP}, 31.0).table) == {
        "10.0.0.1:80": 3, "10.0.0.2:80": 3}


def test_failed_server_is_not_drained() -> None:
    pl = Planner(conf(["10.0.0.1", "10.0.0.2"], global_drain=30, check=True))
    pl.plan({rid("10.0.0.1"): DOWN, rid("10.0.0.2"): UP}, 0.0)
    pl.reload(conf(["10.0.0.2"], global_drain=30, check=True))
    p = pl.plan({rid("10.0.0.2"): UP}, 1.0)
    assert weights(p.table) == {"10.0.0.2:80": 3}
    assert p.next_deadline is None


def test_virtual_server_removed_drains_then_service_leaves() -> None:
    pl = Planner(conf(["10.0.0.1", "10.0.0.2"], global_drain=20, second_vs=True))
    pl.plan({}, 0.0)
    # the first virtual server disappears; the second one stays
    only2 = loads("global_defs {\n lvs_drain_on_remove 20\n}\n"
                  "virtual_server 192.0.2.11 80 {\n  protocol TCP\n  lb_algo rr\n"
                  "  lb_kind NAT\n  real_server 10.0.0.9 80 { weight 1 }\n}\n", name="d.conf")
    pl.reload(only2)
    p = pl.plan({}, 5.0)
    assert weights(p.table) == {"10.0.0.1:80": 0, "10.0.0.2:80": 0}
    assert p.table[SVC].spec.scheduler == "rr"  # the service keeps its settings
    assert weights(p.table, SVC2) == {"10.0.0.9:80": 1}
    assert VS1 not in p.states and p.next_deadline == 25.0
    p = pl.plan({}, 25.0)
    assert SVC not in p.table and set(p.table) == {SVC2}
    assert p.next_deadline is None


def test_next_deadline_is_the_earliest_drain_end() -> None:
    pl = Planner(conf(["10.0.0.1", "10.0.0.2", "10.0.0.3"], global_drain=10))
    pl.plan({}, 0.0)
    pl.reload(conf(["10.0.0.2", "10.0.0.3"], global_drain=10))
    assert pl.plan({}, 1.0).next_deadline == 11.0
    pl.reload(conf(["10.0.0.3"], global_drain=10))
    p = pl.plan({}, 4.0)
    assert dict(p.draining) == {rid("10.0.0.1"): 11.0, rid("10.0.0.2"): 14.0}
    assert p.next_deadline == 11.0
    p = pl.plan({}, 11.0)
    assert dict(p.draining) == {rid("10.0.0.2"): 14.0} and p.next_deadline == 14.0
    assert weights(p.table) == {"10.0.0.2:80": 0, "10.0.0.3:80": 3}
    p = pl.plan({}, 14.0)
    assert weights(p.table) == {"10.0.0.3:80": 3} and p.next_deadline is None


def test_zero_connections_end_the_drain_early_only_with_fresh_stats() -> None:
    pl = Planner(conf(["10.0.0.1", "10.0.0.2"], global_drain=60))
    pl.plan({}, 0.0)
    pl.reload(conf(["10.0.0.2"], global_drain=60))
    assert pl.plan({}, 10.0).next_deadline == 70.0
    d1 = (SVC, DestKey("10.0.0.1", 80))
    busy = {d1: DestStats(active_conns=2, inactive_conns=1)}
    idle = {d1: DestStats(active_conns=0, inactive_conns=3)}  # TCP: closing ones do not count
    # read before the drain started (weight 0 maybe not programmed yet): ignored
    assert "10.0.0.1:80" in weights(pl.plan({}, 11.0, idle, 9.0).table)
    assert "10.0.0.1:80" in weights(pl.plan({}, 12.0, busy, 11.5).table)
    p = pl.plan({}, 13.0, idle, 12.5)
    assert weights(p.table) == {"10.0.0.2:80": 3} and p.next_deadline is None


def test_reconciler_programs_weight_zero_then_deletes() -> None:
    async def run() -> list[dict[ServiceKey, dict[str, int]]]:
        dp = MemoryDataPlane()
        rec = Reconciler(dp)
        pl = Planner(conf(["10.0.0.1", "10.0.0.2"], global_drain=30))
        seen = []
        for step, c in ((0.0, None), (1.0, conf(["10.0.0.2"], global_drain=30)),
                        (31.0, None)):
            if c is not None:
                pl.reload(c)
            rec.set_desired(pl.plan({}, step).table)
            res = await rec.reconcile("change")
            assert res.ok, res.failed
            seen.append({k: {str(d): s.weight for d, s in e.dests.items()}
                         for k, e in dp.table.items()})
        return seen

    before, during, after = asyncio.run(run())
    assert before == {SVC: {"10.0.0.1:80": 3, "10.0.0.2:80": 3}}
    assert during == {SVC: {"10.0.0.1:80": 0, "10.0.0.2:80": 3}}
    assert after == {SVC: {"10.0.0.2:80": 3}}


def test_daemon_replans_at_the_drain_end_not_at_the_next_sweep(tmp_path: Path) -> None:
    """``lvsd run`` (check-only, memory data plane) with a 60 s sweep: after a reload that
    removes a server with a 1 s drain, the server is deleted at the drain end, which only the
    plan's ``next_deadline`` can trigger (no health change, no sweep within the wait)."""
    from test_status_daemon import Proc  # the daemon-as-a-process harness of the daemon owner

    vport = 18080 + os.getpid() % 1000
    rs2 = "  real_server 127.0.0.2 8080 { weight 1 }\n"
    rs3 = "  real_server 127.0.0.3 8080 { weight 1 }\n"
    head = (f"global_defs {{\n  lvs_drain_on_remove 1\n}}\nvirtual_server 127.0.0.1 {vport} {{\n"
            "  protocol TCP\n  lb_algo rr\n  lb_kind NAT\n")
    both = head + rs2 + rs3 + "}\n"
    p = Proc(tmp_path, both, "--sweep", "60")
    try:
        p.messages("READY=1")
        p.conf.write_text(head + rs3 + "}\n")
        out = p.cli("reload", "--pid-file", str(p.pidfile), "-s", f"127.0.0.1:{p.port}")
        assert out.returncode == 0, out.stdout + out.stderr
        deadline = time.monotonic() + 20  # bounded wait, far below the 60 s sweep
        while "127.0.0.2" not in _drained(p.log.read_text()) and time.monotonic() < deadline:
            time.sleep(0.1)
        log = p.log.read_text()
        assert "removed by reload: draining at weight 0" in log, log
        assert "127.0.0.2" in _drained(log), log
    finally:
        p.close()


def _drained(log: str) -> str:
    return "\n".join(ln for ln in log.splitlines() if "drained: removed" in ln)
