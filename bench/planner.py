"""Planner + diff time alone, at keepalived's large-config scale (no data plane, no I/O).

2,300 virtual servers / 37,000 real servers (16-17 per virtual server, a few with a sorry
server and quorum). Measures, best of N runs each:

  cold plan      Planner(config).plan({}) -> the whole desired table
  cold diff      diff(desired, {}) -> the ops to program an empty kernel
  1% health      370 real servers fail: plan + diff against the previous table
  1% reload      23 virtual servers change (weights, scheduler, one new real server):
                 reload + plan + diff against the previous table
  no change      plan + diff when nothing changed (the periodic sweep's CPU cost)
  1 health event one real server flips on a running planner: plan + diff (the daemon's
                 per-event cost; only its virtual server is evaluated again)

Run: .venv/bin/python bench/planner.py [--repeat N]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import TypeVar

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
)
from lvsd.pool.planner import Plan, Planner
from lvsd.pool.reconciler import apply_ops, diff

T = TypeVar("T")
N_VS, N_RS = 2300, 37000


def build(weight_bump: set[int] | None = None) -> Config:
    weight_bump = weight_bump or set()
    vss = []
    per, extra = divmod(N_RS, N_VS)
    n = 0
    for i in range(N_VS):
        count = per + (1 if i < extra else 0)
        rss = []
        for j in range(count):
            addr = f"10.{64 + n // 65536}.{(n // 256) % 256}.{n % 256}"
            n += 1
            w = 1 + j % 5 + (10 if i in weight_bump else 0)
            rss.append(RealServer(addr, 8080, weight=w, checkers=(
                Checker(CheckKind.TCP_CHECK, NOPOS, addr, 8080),)))
        if i in weight_bump:
            rss.append(RealServer(f"10.200.{i // 256}.{i % 256}", 8080, weight=3))
        vip = f"10.{i // 65536}.{(i // 256) % 256}.{i % 256}"
        vss.append(VirtualServer(
            NOPOS, address=vip, port=80, protocol=Protocol.TCP,
            lb_algo="wrr" if i in weight_bump else "wlc",
            quorum=4 if i % 10 == 0 else 1, hysteresis=1 if i % 10 == 0 else 0,
            sorry_server=SorryServer("10.250.0.1", 8080) if i % 10 == 0 else None,
            inhibit_on_failure=i % 3 == 0, real_servers=tuple(rss)))
    return Config("bench.conf", "bench", virtual_servers=tuple(vss))


def best(fn: Callable[[], T], repeat: int) -> tuple[float, T]:
    times = []
    result: T | None = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    assert result is not None
    return min(times), result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    cfg = build()
    n_rs = sum(len(v.real_servers) for v in cfg.virtual_servers)
    print(f"config: {len(cfg.virtual_servers)} virtual servers, {n_rs} real servers")

    t_cold, plan = best(lambda: Planner(cfg).plan({}, 0.0), args.repeat)
    table = plan.table
    t_cdiff, ops = best(lambda: diff(table, {}), args.repeat)
    print(f"cold plan            {t_cold * 1000:8.1f} ms")
    print(f"cold diff            {t_cdiff * 1000:8.1f} ms  {len(ops)} ops")
    actual = apply_ops({}, ops)

    # 1% of the real servers fail
    planner = Planner(cfg)
    planner.plan({}, 0.0)
    health: dict[RealServerId, RealServerHealth] = {}
    step = 100
    for i, vs in enumerate(cfg.virtual_servers):
        for j, rs in enumerate(vs.real_servers):
            if (i * 17 + j) % step == 0:
                health[Planner.rs_id(vs, rs)] = RealServerHealth(False, reason="bench")
    failing = len(health)

    def one_pct_health() -> tuple[int, int]:
        p = Planner(cfg)
        p.plan({}, 0.0)
        t0 = time.perf_counter()
        new = p.plan(health, 1.0)
        d = diff(new.table, actual)
        return int((time.perf_counter() - t0) * 1e9), len(d)

    samples = [one_pct_health() for _ in range(args.repeat)]
    ns, n_ops = min(samples)
    print(f"1% health ({failing} rs down) plan+diff {ns / 1e6:8.1f} ms  {n_ops} ops")

    # 1% of the virtual servers change in a reload
    changed = set(range(0, N_VS, 100))
    cfg2 = build(changed)

    def one_pct_reload() -> tuple[int, int]:
        p = Planner(cfg)
        p.plan({}, 0.0)
        t0 = time.perf_counter()
        p.reload(cfg2)
        new = p.plan({}, 1.0)
        d = diff(new.table, actual)
        return int((time.perf_counter() - t0) * 1e9), len(d)

    samples = [one_pct_reload() for _ in range(args.repeat)]
    ns, n_ops = min(samples)
    print(f"1% reload ({len(changed)} vs changed) plan+diff {ns / 1e6:8.1f} ms  {n_ops} ops")

    t_steady, _ = best(lambda: diff(planner.plan({}, 2.0).table, actual), args.repeat)
    print(f"no change plan+diff  {t_steady * 1000:8.1f} ms  0 ops (periodic sweep CPU)")

    vs0 = cfg.virtual_servers[N_VS // 2]
    flip = Planner.rs_id(vs0, vs0.real_servers[0])
    live: dict[RealServerId, RealServerHealth] = {}  # updated in place, as the checks' board
    clock = [3.0]

    def one_event() -> Plan:
        live[flip] = RealServerHealth(not live[flip].alive if flip in live else False, "bench")
        clock[0] += 1.0
        return planner.plan(live, clock[0])

    t_event, _ = best(one_event, max(args.repeat, 10))
    live[flip] = RealServerHealth(False, "bench")
    t_ediff, ops = best(lambda: diff(planner.plan(live, clock[0] + 1).table, actual), 1)
    print(f"1 health event plan  {t_event * 1000:8.1f} ms  (plan+full diff "
          f"{t_ediff * 1000:.1f} ms, {len(ops)} ops)")

if __name__ == "__main__":
    main()
