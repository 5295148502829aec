"""The status app over real HTTP on loopback, fed by a fake snapshot provider (its only input)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import aiohttp
import pytest
from _status_sample import SECRET, FakeProvider
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from lvsd.status.app import TokenError, create_app, parse_listen, read_token_file
from lvsd.status.event_types import RealServerChange, ReloadRejected, VrrpStateChange
from lvsd.status.events import EventBus

pytestmark = pytest.mark.unit

Client = TestClient[web.Request, web.Application]

TOKEN = "tok-0123456789"


@pytest.fixture
def provider() -> FakeProvider:
    return FakeProvider()


@pytest.fixture
def bus() -> EventBus:
    return EventBus()


@pytest.fixture
async def client(provider: FakeProvider, bus: EventBus) -> AsyncIterator[Client]:
    app = create_app(provider, bus, secrets=provider.secrets)
    async with TestClient(TestServer(app, host="127.0.0.1")) as c:
        yield c


@pytest.fixture
async def authed(provider: FakeProvider, bus: EventBus) -> AsyncIterator[Client]:
    app = create_app(provider, bus, token=TOKEN, secrets=provider.secrets)
    async with TestClient(TestServer(app, host="127.0.0.1")) as c:
        yield c


async def test_status_schema(client: Client) -> None:
    resp = await client.get("/status")
    assert resp.status == 200
    body = await resp.json()
    assert body["schema"] == 1
    assert set(body) >= {"process", "config", "instances", "virtual_servers", "checkers",
                         "reconciler", "generated_at"}
    inst = body["instances"][0]
    assert inst["name"] == "VI_1" and inst["state"] == "MASTER"
    assert (inst["effective_priority"], inst["base_priority"]) == (140, 150)
    assert inst["master"] == "192.0.2.1" and inst["master_priority"] == 140
    assert inst["transitions"][-1]["reason"] == "master down timer expired"
    assert inst["invalid_packets"] == {"checksum": 2, "auth_mismatch": 1}
    vs = body["virtual_servers"][0]
    assert vs["quorum_up"] is True and vs["sorry_active"] is False and vs["live_weight"] == 4
    rs = {f'{r["address"]}:{r["port"]}': r for r in vs["real_servers"]}
    assert rs["10.0.0.12:80"]["alive"] is False
    assert rs["10.0.0.12:80"]["failed_checkers"] == ["TCP_CHECK 10.0.0.12:80"]
    assert rs["10.0.0.12:80"]["dataplane_weight"] is None
    assert rs["fd00::13:8080"]["alive"] is None and rs["fd00::13:8080"]["dynamic_weight"] == 7
    # as ipvsadm -Ln shows them: forwarding method, scheduler flags, persistence; --stats
    assert rs["10.0.0.11:80"]["forward"] == "Masq" and rs["10.0.0.12:80"]["forward"] is None
    assert rs["10.0.0.11:80"]["stats"]["conns"] == 41
    assert rs["10.0.0.11:80"]["stats"]["outbps"] == 40000
    assert rs["10.0.0.12:80"]["stats"] is None
    assert vs["flags"] == ["sh-fallback"] and vs["persistence_timeout"] == 300
    assert vs["persistence_granularity"] == "255.255.255.0"
    assert (vs["active_conns"], vs["inactive_conns"]) == (4, 3)
    assert vs["stats"]["inpkts"] == 900
    ch = body["checkers"][1]
    assert ch["error"] == "connection refused" and ch["latency_seconds"] == pytest.approx(0.0004)
    assert body["reconciler"]["repairs_total"] == 1
    assert body["config"]["last_reload_ok"] is False
    assert body["config"]["router_id"] == "lvs-a" and body["config"]["config_id"] == "lvs1"
    assert body["checkers"][1]["failures"] == {"refused": 3, "timeout": 2}


async def test_status_reads_fresh_snapshot_each_time(client: Client,
                                                     provider: FakeProvider) -> None:
    assert (await (await client.get("/status")).json())["instances"][0]["state"] == "MASTER"
    provider.state = "BACKUP"  # one snapshot answers for 0.5 s (test_status_containment.py)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while (await (await client.get("/status")).json())["instances"][0]["state"] != "BACKUP":
        assert loop.time() < deadline, "the new state never showed"
        await asyncio.sleep(0.1)


async def test_no_secret_anywhere(client: Client, bus: EventBus) -> None:
    bus.publish(ReloadRejected((f"auth_pass {SECRET} too long",), 1))
    status = await (await client.get("/status")).text()
    metrics = await (await client.get("/metrics")).text()
    assert "auth_pass" not in status or SECRET not in status
    assert SECRET not in status and SECRET not in metrics
    assert "<redacted>" in status  # the reload error mentioning it was scrubbed, not dropped
    async with client.get("/events", params={"last_event_id": "0"}) as resp:
        chunk = b""
        while b"\n\n" not in chunk.split(b"lvsd events\n\n", 1)[-1]:
            chunk += await asyncio.wait_for(resp.content.readany(), 5)
    assert SECRET.encode() not in chunk and b"<redacted>" in chunk


async def test_metrics_parse_and_names(client: Client) -> None:
    resp = await client.get("/metrics")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain")
    fams = {f.name: f for f in text_string_to_metric_families(await resp.text())}
    for name in fams:  # lvsd's own, and prometheus-client's standard process collector
        assert name.startswith(("lvsd_", "process_")), name
    assert fams["lvsd_vrrp_adverts_sent"].type == "counter"
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in fams.values() for s in f.samples}
    assert samples[("lvsd_vrrp_state", (("instance", "VI_1"), ("state", "MASTER")))] == 1
    assert samples[("lvsd_vrrp_state", (("instance", "VI_1"), ("state", "BACKUP")))] == 0
    assert samples[("lvsd_vrrp_adverts_sent_total", (("instance", "VI_1"),))] == 120
    assert samples[("lvsd_vrrp_invalid_packets_total",
                    (("instance", "VI_1"), ("reason", "checksum")))] == 2
    rs2 = (("real_server", "10.0.0.12:80"), ("virtual_server", "192.0.2.100:80/TCP"))
    assert samples[("lvsd_real_server_up", rs2)] == 0
    assert samples[("lvsd_real_server_weight", rs2)] == 0
    assert samples[("lvsd_real_server_configured_weight", rs2)] == 2
    # checkers: labelled by kind and target, no composite "checker" string
    ck = (("kind", "TCP_CHECK"), ("real_server", "10.0.0.12:80"), ("target", "10.0.0.12:80"),
          ("virtual_server", "192.0.2.100:80/TCP"))
    assert ("lvsd_checker_latency_seconds", ck) in samples
    assert not any("checker" in dict(lab) for _, lab in samples)
    assert samples[("lvsd_checker_failures_total", (*ck[:2], ("reason", "refused"),
                                                    *ck[2:]))] == 3
    assert samples[("lvsd_checker_failures_total", (*ck[:2], ("reason", "timeout"),
                                                    *ck[2:]))] == 2
    # connections and traffic counters per real server and per virtual server
    rs1 = (("real_server", "10.0.0.11:80"), ("virtual_server", "192.0.2.100:80/TCP"))
    assert samples[("lvsd_real_server_active_connections", rs1)] == 4
    assert samples[("lvsd_real_server_inactive_connections", rs1)] == 1
    assert samples[("lvsd_real_server_connections_total", rs1)] == 41
    assert samples[("lvsd_real_server_bytes_total", (("direction", "out"), *rs1))] == 1200000
    assert ("lvsd_real_server_connections_total", rs2) not in samples  # no counters: no series
    vs = (("virtual_server", "192.0.2.100:80/TCP"),)
    assert samples[("lvsd_virtual_server_inactive_connections", vs)] == 3
    assert samples[("lvsd_virtual_server_connections_total", vs)] == 43
    assert samples[("lvsd_virtual_server_packets_total", (("direction", "in"), *vs))] == 900
    assert fams["lvsd_virtual_server_bytes"].type == "counter"
    info = next(lab for (n, lab) in samples if n == "lvsd_info")
    assert dict(info)["router_id"] == "lvs-a" and dict(info)["config_id"] == "lvs1"
    assert samples[("lvsd_reconciler_repairs_total", ())] == 1
    assert samples[("lvsd_config_last_reload_success", ())] == 0


async def test_metrics_carry_the_process_collector(client: Client) -> None:
    """prometheus-client's standard process_* families, read from this process's /proc."""
    import os
    import time

    text = await (await client.get("/metrics")).text()
    samples = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}
    with open(f"/proc/{os.getpid()}/statm") as fh:
        rss_pages = int(fh.read().split()[1])
    rss = rss_pages * os.sysconf("SC_PAGE_SIZE")
    # the same process measured twice moments apart: within a factor of two
    assert rss / 2 < samples["process_resident_memory_bytes"] < rss * 2
    assert samples["process_open_fds"] == pytest.approx(len(os.listdir("/proc/self/fd")), abs=5)
    boot_to_now = time.time() - samples["process_start_time_seconds"]
    with open("/proc/self/stat") as fh:
        start_ticks = int(fh.read().rsplit(")", 1)[1].split()[19])
    with open("/proc/uptime") as fh:
        uptime = float(fh.read().split()[0])
    expected = uptime - start_ticks / os.sysconf("SC_CLK_TCK")  # this process's age
    assert boot_to_now == pytest.approx(expected, abs=5)
    assert samples["process_cpu_seconds_total"] > 0


async def test_sse_delivers_transitions_as_they_happen(client: Client, bus: EventBus) -> None:
    async with client.get("/events") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        first = await asyncio.wait_for(resp.content.readuntil(b"\n\n"), 5)
        assert first.startswith(b"retry:")
        bus.publish(VrrpStateChange("VI_1", "BACKUP", "MASTER", "master down timer expired"))
        bus.publish(RealServerChange("192.0.2.100:80/TCP", "10.0.0.12:80", False,
                                     "connection refused", ("TCP_CHECK 10.0.0.12:80",)))
        msgs = []
        for _ in range(2):
            msgs.append(await asyncio.wait_for(resp.content.readuntil(b"\n\n"), 5))
    parsed = []
    for m in msgs:
        fields = dict(line.split(": ", 1) for line in m.decode().strip().splitlines())
        parsed.append((fields["event"], json.loads(fields["data"])))
    assert parsed[0][0] == "vrrp" and parsed[0][1]["new"] == "MASTER"
    assert parsed[1] == ("realserver", {
        "id": parsed[0][1]["id"] + 1, "type": "realserver", "at": parsed[1][1]["at"],
        "vs": "192.0.2.100:80/TCP", "rs": "10.0.0.12:80", "alive": False,
        "reason": "connection refused", "failed_checkers": ["TCP_CHECK 10.0.0.12:80"]})
    ids = [int(dict(ln.split(": ", 1) for ln in m.decode().strip().splitlines())["id"])
           for m in msgs]
    assert ids[1] == ids[0] + 1


async def test_sse_resume_with_last_event_id(client: Client, bus: EventBus) -> None:
    e1 = bus.publish(VrrpStateChange("VI_1", "BACKUP", "MASTER", "n1"))
    bus.publish(VrrpStateChange("VI_1", "MASTER", "BACKUP", "n2"))
    async with client.get("/events", headers={"Last-Event-ID": str(e1.id)}) as resp:
        await asyncio.wait_for(resp.content.readuntil(b"\n\n"), 5)  # retry/comment
        m = await asyncio.wait_for(resp.content.readuntil(b"\n\n"), 5)
    assert b'"reason": "n2"' in m


async def test_healthz(client: Client, provider: FakeProvider) -> None:
    resp = await client.get("/healthz")
    assert resp.status == 200 and (await resp.text()).strip() == "ok"
    provider.ready = False
    resp = await client.get("/healthz")
    assert resp.status == 503


async def test_token_auth(authed: Client) -> None:
    for path in ("/status", "/metrics", "/events"):
        resp = await authed.get(path)
        assert resp.status == 401, path
        resp = await authed.get(path, headers={"Authorization": "Bearer wrong-token"})
        assert resp.status == 401, path
    resp = await authed.get("/status", headers={"Authorization": f"Bearer {TOKEN}"})
    assert resp.status == 200
    assert TOKEN not in await resp.text()
    # supervisors and the page itself stay reachable; the page asks for the token
    assert (await authed.get("/healthz")).status == 200
    page = await authed.get("/")
    assert page.status == 200 and "lvsd" in await page.text()


async def test_page_and_static(client: Client) -> None:
    page = await client.get("/")
    assert page.status == 200
    html = await page.text()
    assert "/static/app.js" in html
    js = await client.get("/static/app.js")
    assert js.status == 200 and "fetch(\"/status\"" in await js.text()
    assert (await client.get("/static/../app.py")).status in (403, 404)


async def test_status_is_read_only(client: Client, provider: FakeProvider) -> None:
    for method in ("POST", "PUT", "DELETE"):
        resp = await client.request(method, "/status")
        assert resp.status == 405


def test_parse_listen() -> None:
    assert parse_listen("127.0.0.1:9330") == ("127.0.0.1", 9330)
    assert parse_listen("[::1]:9000") == ("::1", 9000)
    assert parse_listen("0.0.0.0") == ("0.0.0.0", 9330)
    assert parse_listen(":80") == ("127.0.0.1", 80)
    with pytest.raises(ValueError):
        parse_listen("host:99999")
    with pytest.raises(ValueError):
        parse_listen("[::1")


def test_token_file(tmp_path: object) -> None:
    import pathlib

    p = pathlib.Path(str(tmp_path)) / "tok"
    p.write_text("  abcdefghij  \n")
    assert read_token_file(str(p)) == "abcdefghij"
    p.write_text("short\n")
    with pytest.raises(TokenError, match="at least 8"):
        read_token_file(str(p))
    with pytest.raises(TokenError, match="No such file"):
        read_token_file(str(p) + ".missing")


async def test_real_server_shutdown_closes_streams(provider: FakeProvider, bus: EventBus) -> None:
    """StatusServer on an ephemeral loopback port; stop() ends open SSE streams promptly."""
    from lvsd.status.app import StatusServer

    srv = StatusServer(create_app(provider, bus), "127.0.0.1", 0)
    await srv.start()
    assert srv.port > 0
    async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{srv.port}/events") as resp:
        await asyncio.wait_for(resp.content.readuntil(b"\n\n"), 5)
        await asyncio.wait_for(srv.stop(), 10)
        rest = await asyncio.wait_for(resp.content.read(), 5)
        assert rest == b""
