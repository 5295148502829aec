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
    ch = body["checkers"][1]
    assert ch["error"] == "connection refused" and ch["latency_seconds"] == pytest.approx(0.0004)
    assert body["reconciler"]["repairs_total"] == 1
    assert body["config"]["last_reload_ok"] is False


async def test_status_reads_fresh_snapshot_each_time(client: Client,
                                                     provider: FakeProvider) -> None:
    assert (await (await client.get("/status")).json())["instances"][0]["state"] == "MASTER"
    provider.state = "BACKUP"
    assert (await (await client.get("/status")).json())["instances"][0]["state"] == "BACKUP"


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
    for name in fams:
        assert name.startswith("lvsd_"), name
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
    assert ("lvsd_checker_latency_seconds",
            (("checker", "TCP_CHECK 10.0.0.12:80"), ("real_server", "10.0.0.12:80"),
             ("virtual_server", "192.0.2.100:80/TCP"))) in samples
    assert samples[("lvsd_reconciler_repairs_total", ())] == 1
    assert samples[("lvsd_config_last_reload_success", ())] == 0


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
