"""A real server removed by a reload and draining (``lvs_drain_on_remove``) shows in /status.

The daemon runs in this process on the in-memory data plane (check-only, no status socket): a
reload removes one of two real servers, and the snapshot, ``lvsd status`` text, metrics and the
``/status`` JSON must show it under its virtual server as draining, with the end of the drain.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from lvsd.daemon import Daemon, Options
from lvsd.status.client import format_status
from lvsd.status.metrics import make_registry, render
from lvsd.status.model import to_dict

pytestmark = pytest.mark.unit

DRAIN = 300


def conf(servers: list[str]) -> str:
    rss = "".join(f"  real_server {ip} 80 {{\n    weight 3\n  }}\n" for ip in servers)
    return (f"global_defs {{\n  lvs_drain_on_remove {DRAIN}\n}}\n"
            "virtual_server 192.0.2.10 80 {\n  protocol TCP\n  lb_algo rr\n  lb_kind NAT\n"
            + rss + "}\n")


async def _until(cond: Callable[[], bool], what: str) -> None:
    for _ in range(500):  # a bound for a hang, not a timing assertion
        if cond():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never: {what}")


async def _with_daemon(path: Path, body: Callable[[Daemon], Awaitable[None]]) -> None:
    d = Daemon(Options(config_file=str(path), dataplane="memory", status_listen=None,
                       mode="check-only", sweep_interval=3600))
    run = asyncio.create_task(d.run())
    try:
        await _until(lambda: d.ready or run.done(), "daemon ready")
        assert d.ready, run.result()
        await body(d)
    finally:
        d._stop.set()  # what SIGTERM does (a real signal would hit the test runner too)
        assert await asyncio.wait_for(run, 30) == 0


def test_draining_server_listed_under_its_virtual_server(tmp_path: Path) -> None:
    path = tmp_path / "lvsd.conf"
    path.write_text(conf(["10.0.0.1", "10.0.0.2"]))

    async def body(d: Daemon) -> None:
        before = d.snapshot().virtual_servers[0].real_servers
        assert [(r.address, r.draining) for r in before] == [("10.0.0.1", False),
                                                             ("10.0.0.2", False)]
        path.write_text(conf(["10.0.0.2"]))
        t0 = time.time()
        assert await d.reload()
        await _until(lambda: d.plan is not None and bool(d.plan.draining), "drain started")
        await _until(lambda: any(r.dataplane_weight == 0 for r in
                                 d.snapshot().virtual_servers[0].real_servers), "weight 0")
        snap = d.snapshot()
        vs = snap.virtual_servers[0]
        rss = {r.address: r for r in vs.real_servers}
        assert set(rss) == {"10.0.0.1", "10.0.0.2"}
        gone, kept = rss["10.0.0.1"], rss["10.0.0.2"]
        assert gone.draining and not kept.draining
        assert gone.in_dataplane and gone.dataplane_weight == 0
        assert gone.draining_until is not None
        assert t0 + DRAIN - 5 <= gone.draining_until <= time.time() + DRAIN + 5
        assert kept.dataplane_weight == 3 and kept.draining_until is None

        doc = to_dict(snap)
        rs_doc = {r["address"]: r for r in doc["virtual_servers"][0]["real_servers"]}
        assert rs_doc["10.0.0.1"]["draining"] is True
        assert rs_doc["10.0.0.1"]["draining_until"] == gone.draining_until

        line = next(x for x in format_status(doc).splitlines() if "10.0.0.1:80" in x)
        until = time.strftime("%H:%M:%S", time.localtime(gone.draining_until))
        assert "draining" in line and f"until {until}" in line, line

        text = render(make_registry(lambda: snap)).decode()
        assert ('lvsd_real_server_draining_until_timestamp_seconds{real_server="10.0.0.1:80",'
                'virtual_server="192.0.2.10:80/TCP"}') in text
        assert 'lvsd_real_server_up{real_server="10.0.0.1:80"' not in text

        # put back during the drain: configured again, not draining
        path.write_text(conf(["10.0.0.1", "10.0.0.2"]))
        assert await d.reload()
        await _until(lambda: d.plan is not None and not d.plan.draining, "drain cancelled")
        back = d.snapshot().virtual_servers[0].real_servers
        assert [(r.address, r.draining) for r in back] == [("10.0.0.1", False),
                                                           ("10.0.0.2", False)]

    asyncio.run(_with_daemon(path, body))
