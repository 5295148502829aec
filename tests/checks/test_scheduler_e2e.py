"""End to end through the scheduler: config text -> real probes -> health events."""

from __future__ import annotations

import asyncio
import random
import socket
from pathlib import Path

import pytest
from checkservers import Blackhole, HttpServer

from lvsd.checks.health import RealServerId
from lvsd.checks.scheduler import HealthEvent, Scheduler
from lvsd.config.loader import loads
from lvsd.config.model import Config

pytestmark = pytest.mark.realserver


class Listener:
    """A real TCP server that counts accepted connections; can be killed and restarted."""

    def __init__(self) -> None:
        self.accepted = 0
        self.server: asyncio.Server | None = None
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port: int = probe.getsockname()[1]
        probe.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        writer.close()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port,
                                                 reuse_address=True)

    async def kill(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()
        self.server = None


def config(port: int, *, vs_count: int = 1, extra: str = "", alpha: str = "") -> Config:
    blocks = []
    for i in range(vs_count):
        blocks.append(f"""
virtual_server 10.0.0.{i + 1} 80 {{
    protocol TCP
    lb_algo rr
    lb_kind NAT
    delay_loop 0.3
    real_server 127.0.0.1 {port} {{
        TCP_CHECK {{
            connect_timeout 0.3
            retry 1
            delay_before_retry 0.1
            warmup 0
            {alpha}
        }}
        {extra}
    }}
}}
""")
    cfg = loads("\n".join(blocks))
    assert not cfg.fatal, cfg.diagnostics
    return cfg


async def next_event(q: asyncio.Queue[HealthEvent], timeout: float = 5.0) -> HealthEvent:
    return await asyncio.wait_for(q.get(), timeout)


async def test_listener_killed_gives_down_then_up_with_reasons() -> None:
    lis = Listener()
    await lis.start()
    q: asyncio.Queue[HealthEvent] = asyncio.Queue()
    sched = Scheduler(config(lis.port), rng=random.Random(1), on_change=q.put_nowait)
    rsid = RealServerId("10.0.0.1:80/TCP", "127.0.0.1", lis.port)
    async with sched:
        ev = await next_event(q)
        assert ev.rsid == rsid and ev.health is not None and ev.health.alive
        assert sched.health[rsid].alive
        await lis.kill()
        ev = await next_event(q)
        assert ev.health is not None and not ev.health.alive
        assert "refused (after 1 retry)" in ev.health.reason
        assert ev.health.verdicts[0].reason == "refused (after 1 retry)"
        await lis.start()
        ev = await next_event(q)
        assert ev.health is not None and ev.health.alive and ev.health.reason == "connected"
        st = sched.status()
        assert len(st) == 1 and st[0].up is True and st[0].last_reason == "connected"
        assert st[0].attempts >= 4 and st[0].servers == (rsid,)
    await lis.kill()


async def test_identical_probe_in_two_virtual_servers_runs_once() -> None:
    lis = Listener()
    await lis.start()
    events: list[HealthEvent] = []
    sched = Scheduler(config(lis.port, vs_count=2), rng=random.Random(1),
                      on_change=events.append)
    async with sched:
        await asyncio.sleep(2.0)
        st = sched.status()
        assert len(st) == 1 and len(st[0].servers) == 2
        assert {e.rsid.vs for e in events} == {"10.0.0.1:80/TCP", "10.0.0.2:80/TCP"}
        attempts = st[0].attempts
    await asyncio.sleep(0.1)  # let the server's accept handlers run
    assert attempts >= 3
    # one connection per attempt, not one per virtual server (+1: one may have been in flight)
    assert attempts <= lis.accepted <= attempts + 1
    await lis.kill()


async def test_events_iterator_and_reload_keeps_state(tmp_path: Path) -> None:
    lis = Listener()
    await lis.start()
    sched = Scheduler(config(lis.port), rng=random.Random(1))
    await sched.start()
    it = sched.events()
    try:
        ev = await asyncio.wait_for(anext(it), 5)
        assert ev.health is not None and ev.health.alive
        before = sched.status()[0]
        # same checkers (positions shift: a comment line on top): no event, state kept
        sched.update(loads("# reloaded\n" + _text(lis.port)))
        after = sched.status()[0]
        assert after.since == before.since and after.attempts >= before.attempts
        # a second real server with an alpha checker on a dead port: down at once
        dead = socket.socket()
        dead.bind(("127.0.0.1", 0))
        dport = dead.getsockname()[1]
        sched.update(loads(_text(lis.port) + _text(dport, vs="10.0.0.9", alpha="alpha")))
        ev = await asyncio.wait_for(anext(it), 5)
        assert ev.rsid.port == dport and ev.health is not None and not ev.health.alive
        assert "alpha" in ev.health.reason
        # remove the first server: its health is withdrawn
        sched.update(loads(_text(dport, vs="10.0.0.9", alpha="alpha")))
        ev = await asyncio.wait_for(anext(it), 5)
        assert ev.rsid.port == lis.port and ev.health is None
        assert len(sched.status()) == 1
        dead.close()
    finally:
        await sched.close()
        await it.aclose()
    await lis.kill()


async def test_timing_change_inherits_state() -> None:
    lis = Listener()
    await lis.start()
    events: list[HealthEvent] = []
    sched = Scheduler(config(lis.port), rng=random.Random(1), on_change=events.append)
    async with sched:
        for _ in range(50):
            if events:
                break
            await asyncio.sleep(0.1)
        assert events and events[-1].health is not None and events[-1].health.alive
        n = len(events)
        sched.update(loads(_text(lis.port, delay_loop="0.5")))
        await asyncio.sleep(0.2)
        st = sched.status()
        assert len(st) == 1 and st[0].up is True  # no undecided gap, no new event
        assert len(events) == n
    await lis.kill()


async def test_close_cancels_in_flight_probes() -> None:
    hole = Blackhole()  # connects hang until their 30 s timeout
    port = hole.port
    cfg = loads(_text(port, timeout="30"))
    sched = Scheduler(cfg, rng=random.Random(1))
    await sched.start()
    for _ in range(40):
        if any(s.in_flight for s in sched.status()):
            break
        await asyncio.sleep(0.05)
    assert any(s.in_flight for s in sched.status())
    await asyncio.wait_for(sched.close(), 2)
    assert not any(t for t in asyncio.all_tasks() if "Scheduler._run" in repr(t))
    hole.close()


def _text(port: int, vs: str = "10.0.0.1", alpha: str = "", delay_loop: str = "0.3",
          timeout: str = "0.3") -> str:
    return f"""
virtual_server {vs} 80 {{
    protocol TCP
    lb_algo rr
    lb_kind NAT
    delay_loop {delay_loop}
    real_server 127.0.0.1 {port} {{
        TCP_CHECK {{
            connect_timeout {timeout}
            retry 1
            delay_before_retry 0.1
            warmup 0
            {alpha}
        }}
    }}
}}
"""


async def test_http_multi_url_sequence_through_the_scheduler() -> None:
    web = await HttpServer().start()
    text = f"""
virtual_server 10.0.0.5 80 {{
    protocol TCP
    lb_algo rr
    lb_kind NAT
    delay_loop 0.2
    real_server 127.0.0.1 {web.port} {{
        HTTP_GET {{
            url {{
                path /ok
            }}
            url {{
                path /toggle
            }}
            connect_timeout 0.5
            retry 1
            delay_before_retry 0.1
            warmup 0
        }}
    }}
}}
"""
    q: asyncio.Queue[HealthEvent] = asyncio.Queue()
    sched = Scheduler(loads(text), rng=random.Random(1), on_change=q.put_nowait)
    try:
        async with sched:
            ev = await next_event(q)
            assert ev.health is not None and ev.health.alive
            web.toggle_ok = False
            ev = await next_event(q)
            assert ev.health is not None and not ev.health.alive
            assert ev.health.verdicts[0].reason == "/toggle: HTTP 503 (after 1 retry)"
            web.toggle_ok = True
            ev = await next_event(q)
            assert ev.health is not None and ev.health.alive
            # back up only after the failed URL passed and then a whole clean pass
            paths = [r.split(b" ")[1] for r in web.requests]
            assert paths[-3:] == [b"/toggle", b"/ok", b"/toggle"], paths
    finally:
        await web.stop()


async def test_misc_dynamic_weight_reaches_the_health(tmp_path: Path) -> None:
    code = tmp_path / "code"
    code.write_text("12")
    script = tmp_path / "chk.sh"
    script.write_text(f"#!/bin/sh\nexit $(cat {code})\n")
    script.chmod(0o755)
    text = f"""
virtual_server 10.0.0.6 80 {{
    protocol TCP
    lb_algo rr
    lb_kind NAT
    delay_loop 0.2
    real_server 127.0.0.1 8080 {{
        weight 3
        MISC_CHECK {{
            misc_path "{script}"
            misc_timeout 2
            misc_dynamic
            warmup 0
            retry 0
        }}
    }}
}}
"""
    cfg = loads(text)
    q: asyncio.Queue[HealthEvent] = asyncio.Queue()
    async with Scheduler(cfg, rng=random.Random(1), on_change=q.put_nowait):
        ev = await next_event(q)
        # weight 3, exit 12: keepalived sets weight 10, i.e. 3 + 7
        assert ev.health is not None and ev.health.alive and ev.health.dynamic_weight == 7
        assert ev.health.verdicts[0].dynamic_weight == 10
        code.write_text("0")  # back to the configured weight
        ev = await next_event(q)
        assert ev.health is not None and ev.health.alive and ev.health.dynamic_weight is None
        code.write_text("1")
        ev = await next_event(q)
        assert ev.health is not None and not ev.health.alive
        assert ev.health.reason.endswith("script exit 1")


async def test_concurrency_bound_still_checks_everyone() -> None:
    lis = Listener()
    await lis.start()
    # the listener is on 127.0.0.1 only; 127.0.0.2..5 refuse
    text = "".join(_text(lis.port, vs=f"10.0.1.{i}").replace(
        f"real_server 127.0.0.1 {lis.port}", f"real_server 127.0.0.{i} {lis.port}")
        for i in range(1, 6))
    cfg = loads(text)
    events: list[HealthEvent] = []
    sched = Scheduler(cfg, rng=random.Random(1), concurrency=1, on_change=events.append)
    async with sched:
        for _ in range(60):
            if len(sched.health) == 5:
                break
            await asyncio.sleep(0.1)
        assert sched.stats.max_in_flight == 1
        assert len(sched.health) == 5  # 127.0.0.1 answers; the others refuse: all decided
        assert sched.health[RealServerId("10.0.1.1:80/TCP", "127.0.0.1", lis.port)].alive
        assert not sched.health[RealServerId("10.0.1.2:80/TCP", "127.0.0.2", lis.port)].alive
    await lis.kill()


async def test_reload_removing_an_in_flight_probe_frees_its_slot(tmp_path: Path) -> None:
    hang = tmp_path / "hang.sh"
    hang.write_text("#!/bin/sh\nsleep 30\n")
    hang.chmod(0o755)
    misc = f"""
virtual_server 10.0.2.1 80 {{
    protocol TCP
    lb_algo rr
    lb_kind NAT
    delay_loop 0.2
    real_server 127.0.0.1 9 {{
        MISC_CHECK {{
            misc_path "{hang}"
            misc_timeout 30
            warmup 0
        }}
    }}
}}
"""
    lis = Listener()
    await lis.start()
    sched = Scheduler(loads(misc), rng=random.Random(1), concurrency=1)
    async with sched:
        for _ in range(40):
            if any(s.in_flight for s in sched.status()):
                break
            await asyncio.sleep(0.05)
        assert any(s.in_flight for s in sched.status())
        sched.update(loads(_text(lis.port)))  # the hanging script's checker goes away
        rsid = RealServerId("10.0.0.1:80/TCP", "127.0.0.1", lis.port)
        for _ in range(40):
            if rsid in sched.health:
                break
            await asyncio.sleep(0.1)
        assert sched.health[rsid].alive  # the single slot was released and reused
    await lis.kill()
