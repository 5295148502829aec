"""Checker keywords end to end: config text -> lvsd.config.loader.loads -> the checker's
behaviour (tracker, probe or scheduler against real servers on loopback)."""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import ssl
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from checkservers import HttpServer, UdpResponder, make_cert

from lvsd.checks import http, udp
from lvsd.checks.health import RealServerHealth, RealServerId
from lvsd.checks.result import ProbeResult
from lvsd.checks.scheduler import HealthEvent, Scheduler
from lvsd.checks.tracker import CheckTracker
from lvsd.config.loader import loads
from lvsd.config.model import Checker, Config, Severity
from lvsd.pool.planner import Planner

pytestmark = pytest.mark.realserver


def one_vs(body: str, head: str = "") -> str:
    return f"""{head}
virtual_server 10.0.0.1 80 {{
    protocol TCP
    lb_algo rr
    lb_kind NAT
    delay_loop 0.2
{body}
}}
"""


def checkers(cfg: Config) -> list[Checker]:
    return [ck for vs in cfg.virtual_servers for rs in vs.real_servers for ck in rs.checkers]


def errors(cfg: Config) -> list[str]:
    return [f"{d.pos.line if d.pos else '-'}: {d.message}" for d in cfg.diagnostics
            if d.severity is not Severity.WARNING]


async def wait_for(q: asyncio.Queue[HealthEvent], pred: object, timeout: float = 5.0
                   ) -> HealthEvent:
    async with asyncio.timeout(timeout):
        while True:
            ev = await q.get()
            if callable(pred) and pred(ev):
                return ev


# ------------------------------------------------------------------------------ rise


def test_rise_keyword_reaches_the_tracker() -> None:
    cfg = loads(one_vs("""
    real_server 192.0.2.1 80 {
        TCP_CHECK {
            retry 0
            rise 3
        }
        HTTP_GET {
            url { path / }
        }
    }"""))
    assert cfg.ok, cfg.diagnostics
    ck, http_ck = checkers(cfg)
    assert ck.rise == 3 and http_ck.rise == 1  # keepalived's behaviour unless rise is given
    assert not cfg.unsupported  # an lvsd extension, not an ignored keepalived keyword
    tr = CheckTracker(ck, 0.0, random.Random(0))
    assert tr.on_result(ProbeResult(False, "refused"), 1.0) is not None and not tr.up
    assert tr.on_result(ProbeResult(True, "connected"), 2.0) is None
    assert tr.on_result(ProbeResult(True, "connected"), 3.0) is None
    tr.on_result(ProbeResult(False, "refused"), 4.0)  # a failure restarts the count
    assert tr.on_result(ProbeResult(True, "connected"), 5.0) is None
    assert tr.on_result(ProbeResult(True, "connected"), 6.0) is None
    t = tr.on_result(ProbeResult(True, "connected"), 7.0)
    assert t is not None and t.up and t.reason == "connected (3 successes in a row)"


def test_rise_errors_name_the_line() -> None:
    cfg = loads(one_vs("""
    real_server 192.0.2.1 80 {
        TCP_CHECK {
            rise 0
        }
        FILE_CHECK {
            rise 2
        }
    }"""))
    errs = errors(cfg)
    assert any(e.startswith("10: ") and "rise" in e for e in errs), errs
    # FILE_CHECK has no retries or rise (the file's value is the state): unknown there
    assert any(e.startswith("13: ") and "rise" in e for e in errs), errs
    assert [ck.rise for ck in checkers(cfg)] == [1]


async def test_rise_through_the_scheduler_against_a_real_listener() -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()

    async def accept(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.close()

    server = await asyncio.start_server(accept, "127.0.0.1", port, reuse_address=True)
    cfg = loads(one_vs(f"""
    real_server 127.0.0.1 {port} {{
        TCP_CHECK {{
            connect_timeout 0.3
            retry 0
            warmup 0
            rise 2
        }}
    }}"""))
    assert cfg.ok, cfg.diagnostics
    q: asyncio.Queue[HealthEvent] = asyncio.Queue()
    try:
        async with Scheduler(cfg, rng=random.Random(1), on_change=q.put_nowait):
            ev = await wait_for(q, lambda e: e.health is not None)
            assert ev.health is not None and ev.health.alive  # first decision: rise not needed
            server.close()
            await server.wait_closed()
            ev = await wait_for(q, lambda e: e.health is not None and not e.health.alive)
            server = await asyncio.start_server(accept, "127.0.0.1", port, reuse_address=True)
            ev = await wait_for(q, lambda e: e.health is not None and e.health.alive)
            assert ev.health is not None
            assert ev.health.reason == "connected (2 successes in a row)"
    finally:
        server.close()


# ------------------------------------------------------------------------------ SSL_GET


@pytest.fixture
async def tls_web(tmp_path: Path) -> AsyncIterator[HttpServer]:
    cert, key = make_cert(tmp_path, ["svc.example.test", "www.example.test"])
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    srv = HttpServer()

    def on_sni(_obj: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
        srv.sni.append(name)

    ctx.sni_callback = on_sni
    await srv.start(ssl_ctx=ctx)
    yield srv
    await srv.stop()


def ssl_get(port: int, extra: str, head: str = "") -> str:
    return one_vs(f"""
    virtualhost www.example.test
    real_server 127.0.0.1 {port} {{
        SSL_GET {{
            url {{ path /ok }}
            connect_timeout 2
            warmup 0
{extra}
        }}
    }}""", head)


async def test_sni_name_is_sent_through_the_scheduler(tls_web: HttpServer) -> None:
    cfg = loads(ssl_get(tls_web.port, "            sni_name svc.example.test"))
    assert cfg.ok, cfg.diagnostics
    (ck,) = checkers(cfg)
    assert ck.sni_name == "svc.example.test" and ck.enable_sni
    q: asyncio.Queue[HealthEvent] = asyncio.Queue()
    async with Scheduler(cfg, rng=random.Random(1), on_change=q.put_nowait):
        ev = await wait_for(q, lambda e: e.health is not None)
        assert ev.health is not None and ev.health.alive, ev.health
    # keepalived check_ssl.c: sni_name first; the Host header keeps the virtual host
    assert tls_web.sni and set(tls_web.sni) == {"svc.example.test"}
    assert b"Host: www.example.test\r\n" in tls_web.requests[-1]


async def test_reload_applies_a_new_ssl_client_certificate(tmp_path: Path) -> None:
    # a server that accepts only client certificates issued by "good"
    srv_cert, srv_key = make_cert(tmp_path, ["www.example.test"])
    good, good_key = make_cert(tmp_path, ["good.client.test"])
    bad, bad_key = make_cert(tmp_path, ["bad.client.test"])
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(srv_cert, srv_key)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cafile=str(good))
    srv = HttpServer()
    await srv.start(ssl_ctx=ctx)

    def cfg(cert: Path, key: Path) -> Config:
        return loads(ssl_get(srv.port, "            retry 0\n            delay_before_retry 0",
                             head=f"SSL {{\n    certificate {cert}\n    key {key}\n}}"))

    q: asyncio.Queue[HealthEvent] = asyncio.Queue()
    try:
        first = cfg(bad, bad_key)
        assert first.ok and first.global_defs.ssl is not None, first.diagnostics
        async with Scheduler(first, rng=random.Random(1), on_change=q.put_nowait) as sched:
            ev = await wait_for(q, lambda e: e.health is not None)
            assert ev.health is not None and not ev.health.alive, ev.health
            # same checker (its tracker is kept), new SSL block: the new certificate is used
            sched.update(cfg(good, good_key))
            ev = await wait_for(q, lambda e: e.health is not None and e.health.alive)
    finally:
        await srv.stop()


async def test_bare_sni_name_and_enable_sni_use_the_virtual_host(tls_web: HttpServer) -> None:
    for extra in ("            sni_name", "            enable_sni"):
        cfg = loads(ssl_get(tls_web.port, extra))
        assert cfg.ok, cfg.diagnostics
        (ck,) = checkers(cfg)
        assert ck.enable_sni and ck.sni_name is None
        r = await http.probe(ck, 0, cfg.virtual_servers[0].virtualhost)
        assert r.ok, r.reason
        assert tls_web.sni[-1] == "www.example.test"
    cfg = loads(ssl_get(tls_web.port, ""))  # no SNI unless asked (keepalived)
    r = await http.probe(checkers(cfg)[0], 0, "www.example.test")
    assert r.ok and tls_web.sni[-1] is None
    # a second bare sni_name does not clear an explicit one (keepalived's message)
    cfg = loads(ssl_get(tls_web.port, "            sni_name a.test\n            sni_name"))
    assert checkers(cfg)[0].sni_name == "a.test"
    assert any("sni_name already specified as a.test" in e for e in errors(cfg))


@contextlib.contextmanager
def strict_tls_server(tmp_path: Path, connections: int) -> Iterator[tuple[int, list[str]]]:
    """A blocking TLS server that answers one request per connection and then records how the
    client closed: "close_notify" or "no close_notify" (ragged EOFs are not suppressed)."""
    cert, key = make_cert(tmp_path, ["www.example.test"])
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen()
    ls.settimeout(10)
    seen: list[str] = []

    def serve() -> None:
        for _ in range(connections):
            try:
                conn, _ = ls.accept()
            except OSError:
                return
            conn.settimeout(5)
            try:
                s = ctx.wrap_socket(conn, server_side=True, suppress_ragged_eofs=False)
                s.recv(4096)
                s.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
                seen.append("close_notify" if s.recv(16) == b"" else "data")
            except ssl.SSLEOFError:
                seen.append("no close_notify")
            except OSError as e:
                seen.append(f"error {e}")
            finally:
                conn.close()

    th = threading.Thread(target=serve, daemon=True)
    th.start()
    try:
        yield ls.getsockname()[1], seen
    finally:
        ls.close()
        th.join(10)


async def test_tls_compliant_sends_close_notify(tmp_path: Path) -> None:
    with strict_tls_server(tmp_path, 3) as (port, seen):
        for extra in ("", "            tls_compliant",
                      "            url {\n path /ok\n tls_compliant on\n }"):
            cfg = loads(ssl_get(port, extra))
            assert cfg.ok and not cfg.unsupported, cfg.diagnostics
            ck = checkers(cfg)[-1]
            url_index = len(ck.urls) - 1
            r = await http.probe(ck, url_index, "www.example.test")
            assert r.ok, r.reason
            for _ in range(100):
                if len(seen) == (1 if not extra else 2 if "url" not in extra else 3):
                    break
                await asyncio.sleep(0.02)
    # keepalived: quiet shutdown unless tls_compliant (checker or url)
    assert seen == ["no close_notify", "close_notify", "close_notify"]


# ------------------------------------------------------------------------------ FILE_CHECK


def file_cfg(path: Path, checks: str) -> Config:
    return loads(f"""
track_file tf_web {{
    file {path}
    weight 3
}}
""" + one_vs(checks))


async def test_file_check_resolves_track_file_and_weights_reach_the_pool(tmp_path: Path) -> None:
    f = tmp_path / "state"
    f.write_text("4\n")
    cfg = file_cfg(f, """
    real_server 127.0.0.1 8001 {
        weight 10
        FILE_CHECK {
            track_file tf_web
        }
    }
    real_server 127.0.0.2 8001 {
        weight 10
        FILE_CHECK {
            track_file tf_web
            weight 2 reverse
        }
    }""")
    assert cfg.ok, cfg.diagnostics
    a, b = checkers(cfg)
    assert (a.track_file, a.file_weight, a.file_reverse, a.track_file_name) == \
        (str(f), 3, False, "tf_web")
    assert (b.track_file, b.file_weight, b.file_reverse) == (str(f), 2, True)
    q: asyncio.Queue[HealthEvent] = asyncio.Queue()
    async with Scheduler(cfg, rng=random.Random(1), on_change=q.put_nowait) as sched:
        async with asyncio.timeout(5):
            while len(sched.health) < 2:
                await q.get()
        health: dict[RealServerId, RealServerHealth] = dict(sched.health)
    ha = health[RealServerId("10.0.0.1:80/TCP", "127.0.0.1", 8001)]
    hb = health[RealServerId("10.0.0.1:80/TCP", "127.0.0.2", 8001)]
    assert ha.alive and ha.dynamic_weight == 12  # 4 x 3
    assert hb.alive and hb.dynamic_weight == -8  # 4 x 2, reversed
    plan = Planner(cfg).plan(health, 0.0)
    weights = {d.key.addr: d.weight for e in plan.table.values() for d in e.dests.values()}
    assert weights == {"127.0.0.1": 22, "127.0.0.2": 2}


def test_file_check_unknown_name_and_bad_weight_are_reported(tmp_path: Path) -> None:
    cfg = file_cfg(tmp_path / "f", """
    real_server 127.0.0.1 8001 {
        FILE_CHECK {
            track_file nosuch
        }
        FILE_CHECK {
            track_file tf_web
            weight 70000
        }
        FILE_CHECK {
            track_file tf_web
            weight 5 sideways
        }
    }""")
    errs = errors(cfg)
    # the track_file line (15) and the FILE_CHECK block (14) are named
    assert "15: track_file nosuch not found" in errs, errs
    assert "14: FILE_CHECK has no track_file specified - ignoring" in errs, errs
    assert "19: number '70000' outside range [-65535, 65535]" in errs, errs
    assert "23: unknown track file weight option sideways - ignoring" in errs, errs
    # the bad weights are ignored: the block's weight applies
    assert [(c.file_weight, c.file_reverse) for c in checkers(cfg)] == [(3, False), (3, False)]


def test_track_file_block_reverse_is_inherited(tmp_path: Path) -> None:
    cfg = loads(f"""
vrrp_track_file tf {{
    file {tmp_path / "f"}
    weight -5 reverse
}}
""" + one_vs("""
    real_server 127.0.0.1 8001 {
        FILE_CHECK {
            track_file tf
        }
    }"""))
    assert cfg.ok, cfg.diagnostics
    assert cfg.vrrp_track_files[0].weight_reverse
    (ck,) = checkers(cfg)
    assert (ck.file_weight, ck.file_reverse) == (-5, True)


# ------------------------------------------------------------------------------ UDP_CHECK


def udp_cfg(port: int, extra: str) -> Config:
    return loads(one_vs(f"""
    real_server 127.0.0.1 {port} {{
        UDP_CHECK {{
            connect_timeout 0.3
{extra}
        }}
    }}"""))


@pytest.fixture
async def responder() -> AsyncIterator[tuple[UdpResponder, int]]:
    loop = asyncio.get_running_loop()
    proto = UdpResponder()
    transport, _ = await loop.create_datagram_endpoint(lambda: proto,
                                                       local_addr=("127.0.0.1", 0))
    yield proto, transport.get_extra_info("sockname")[1]
    transport.close()


async def test_udp_keywords_from_config_drive_the_probe(
        responder: tuple[UdpResponder, int]) -> None:
    proto, port = responder

    async def run(extra: str) -> tuple[Checker, ProbeResult]:
        cfg = udp_cfg(port, extra)
        assert cfg.ok, cfg.diagnostics
        (ck,) = checkers(cfg)
        return ck, await udp.probe(ck)

    # keepalived's free hex format: groups of two digits, a lone digit is one octet
    ck, r = await run("payload 70 69 6e67\nrequire_reply 50 4F 4e 47 3a")
    assert (ck.payload, ck.require_reply, ck.require_reply_mask) == (b"ping", b"PONG:", None)
    assert r.ok and proto.seen[-1] == b"ping"
    ck, r = await run("payload 70696e67\nrequire_reply 4e4f")  # "NO"
    assert not r.ok and r.reason == "reply mismatch"
    # bare require_reply: any reply, lengths not applied (keepalived check_udp.c)
    ck, r = await run("payload 70696e67\nrequire_reply\nmin_reply_length 100")
    assert ck.require_reply == b"" and r.ok
    # wildcard nibbles: 5x matches 'P' (0x50)
    ck, r = await run("payload 70696e67\nrequire_reply 5x 4F")
    assert ck.require_reply == b"\x50\x4f" and ck.require_reply_mask == b"\x0f\x00" and r.ok
    ck, r = await run("payload 70696e67\nrequire_reply 50\nmax_reply_length 5")
    assert not r.ok and r.reason == "reply length 9 not in 0..5"
    # no payload: keepalived's 32-byte filler
    ck, r = await run("require_reply")
    assert ck.payload is None and r.ok
    assert proto.seen[-1] == b"keepalived check - keepalived ch"  # 32 bytes
    # no require_reply: silence or a reply is success
    ck, r = await run("payload 01")
    assert ck.require_reply is None and r.ok


def test_udp_hex_parsing_and_errors() -> None:
    cfg = udp_cfg(9, "payload Ab12f 3 456 546443123")  # keepalived.conf(5)'s example
    assert checkers(cfg)[0].payload == bytes.fromhex("AB120F03450654644312 03".replace(" ", ""))
    cfg = udp_cfg(9, "payload\nrequire_reply zz\nmin_reply_length 10\nmax_reply_length 5")
    errs = errors(cfg)
    assert errs == ["11: UDP_CHECK payload requires a payload",
                    "12: Invalid hex string for UDP_CHECK reply",
                    "13: UDP_CHECK min_reply length 10 > max_reply_length 5 - will always fail"]
    cfg = udp_cfg(9, "payload 5x")  # wildcards only in require_reply
    assert errors(cfg) == ["11: Invalid hex string for UDP_CHECK payload"]


# ------------------------------------------------------------------------------ HTTP_GET regex


async def test_regex_options_from_config_change_the_match() -> None:
    web = await HttpServer().start()  # /ok body: "<html>lvsd health page</html>\n"
    try:
        def cfg_for(url_extra: str) -> Config:
            return loads(one_vs(f"""
    real_server 127.0.0.1 {web.port} {{
        HTTP_GET {{
            connect_timeout 2
            url {{
                path /ok
{url_extra}
            }}
        }}
    }}"""))

        plain = cfg_for("regex \"LVSD HEALTH\"")
        caseless = cfg_for("regex \"LVSD HEALTH\"\nregex_options caseless no_auto_possess")
        assert plain.ok and caseless.ok, caseless.diagnostics
        assert checkers(caseless)[0].urls[0].regex_options == ("caseless",)
        assert not (await http.probe(checkers(plain)[0])).ok
        assert (await http.probe(checkers(caseless)[0])).ok
        # the body ends "</html>\n": "." matches that newline only with dotall
        assert not (await http.probe(checkers(cfg_for("regex \"</html>.\""))[0])).ok
        dotall = cfg_for("regex \"</html>.\"\nregex_options dotall")
        assert (await http.probe(checkers(dotall)[0])).ok
        multi = cfg_for("regex \"^<html>lvsd\"\nregex_options multiline")
        assert (await http.probe(checkers(multi)[0])).ok
    finally:
        await web.stop()


def test_regex_errors_and_unsupported_options_are_reported() -> None:
    cfg = loads(one_vs("""
    real_server 127.0.0.1 80 {
        HTTP_GET {
            url {
                path /
                regex "a("
                regex_options ungreedy bogus
            }
        }
    }"""))
    diags = [(d.pos.line if d.pos else None, d.severity, d.message) for d in cfg.diagnostics]
    assert (12, Severity.ERROR, "Invalid regex: 'a(' at offset 1: missing ), unterminated "
            "subpattern") in diags, diags
    assert (13, Severity.WARNING, "regex option 'ungreedy' is not supported by lvsd - "
            "ignored") in diags, diags
    assert (13, Severity.WARNING, "unknown regex option 'bogus' - ignored") in diags, diags
    assert checkers(cfg)[0].urls[0].regex is None


# ------------------------------------------------------------------------------ log_all_failures


@pytest.mark.parametrize("where", ["checker", "global_defs"])
async def test_log_all_failures_logs_each_failed_attempt_while_up(
        where: str, caplog: pytest.LogCaptureFixture) -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()

    async def accept(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.close()

    server = await asyncio.start_server(accept, "127.0.0.1", port, reuse_address=True)

    def rs(addr: str, flag: str) -> str:
        return f"""
    real_server {addr} 80 {{
        TCP_CHECK {{
            connect_ip 127.0.0.1
            connect_port {port}
            connect_timeout 0.3
            retry 2
            delay_before_retry 0.05
            warmup 0
            {flag}
        }}
    }}"""

    if where == "checker":
        text = one_vs(rs("127.0.0.2", "log_all_failures") + rs("127.0.0.3", ""))
        expected = 3  # only the flagged checker: retry 2 -> 3 failed attempts while up
    else:
        text = one_vs(rs("127.0.0.2", ""), head="global_defs {\n checker_log_all_failures\n}")
        expected = 3
    cfg = loads(text)
    assert cfg.ok and not cfg.unsupported, cfg.diagnostics
    assert cfg.global_defs.checker_log_all_failures is (where == "global_defs")
    q: asyncio.Queue[HealthEvent] = asyncio.Queue()
    caplog.set_level("INFO", logger="lvsd.checks")
    try:
        async with Scheduler(cfg, rng=random.Random(1), on_change=q.put_nowait) as sched:
            n = len(cfg.virtual_servers[0].real_servers)
            async with asyncio.timeout(5):
                while sum(1 for h in sched.health.values() if h.alive) < n:
                    await q.get()
            server.close()
            await server.wait_closed()
            async with asyncio.timeout(5):
                while any(h.alive for h in sched.health.values()):
                    await q.get()
    finally:
        server.close()
    failed = [r.getMessage() for r in caplog.records if "check failed" in r.getMessage()]
    assert len(failed) == expected, failed
    assert failed[0] == f"TCP_CHECK 127.0.0.1:{port}: check failed: refused (attempt 1 of 3)"
    assert failed[-1].endswith("(attempt 3 of 3)")
