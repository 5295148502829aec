"""BIRD as lvsd's BGP speaker: the generated bird.conf, the control-socket reply parser, and a
real BIRD 2 driven through lvsd.bgp.bird (no peer: the static protocols and the routing table
are checked over BIRD's own control socket)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from conftest import require
from lvsd.bgp.bird import BirdError, BirdProcess, bird_conf, neighbor_protocol, protocol_name
from lvsd.bgp.birdctl import ReplyParser, parse_protocols
from lvsd.config.model import BgpAnnounce, BgpNeighbor, BgpSpeaker

pytestmark = pytest.mark.unit

BIRD = Path(__file__).resolve().parents[2] / ".lab" / "bird2" / "usr" / "sbin" / "bird"

SPEAKER = BgpSpeaker(local_as=65001, router_id="10.0.1.11", hold_time=6, bfd=True,
                     bfd_interval=200,
                     neighbors=(BgpNeighbor("10.0.1.1", 65000, "10.0.1.11"),
                                BgpNeighbor("fd00::1", 65000)))
WEB = BgpAnnounce("WEB", "10.0.0.100", 32)
V6 = BgpAnnounce("V6", "fd00:100::", 64)


def block(conf: str, head: str) -> str:
    start = conf.index(head)
    return conf[start:conf.index("\n}\n", start) + 2]


def test_conf_has_one_static_per_announcement_disabled_unless_announced() -> None:
    conf = bird_conf(SPEAKER, [WEB, V6], enabled={"V6"})
    assert "router id 10.0.1.11;" in conf
    assert 'timeformat protocol "%s";' in conf
    assert "protocol kernel" not in conf  # BIRD never touches the host's routes
    web = block(conf, "protocol static lvsd_WEB {")
    assert "disabled;" in web and "ipv4;" in web and "route 10.0.0.100/32 blackhole;" in web
    v6 = block(conf, "protocol static lvsd_V6 {")
    assert "disabled" not in v6 and "ipv6;" in v6 and "route fd00:100::/64 blackhole;" in v6


def test_conf_bgp_and_bfd() -> None:
    conf = bird_conf(SPEAKER, [WEB])
    bgp = block(conf, "protocol bgp lvsd_bgp_10_0_1_1 {")
    for line in ("local 10.0.1.11 as 65001;", "neighbor 10.0.1.1 as 65000;", "hold time 6;",
                 "keepalive time 2;", "bfd on;", "ipv4 {", "import none;",
                 "export where source = RTS_STATIC;", "next hop self;"):
        assert line in bgp, line
    v6 = block(conf, "protocol bgp lvsd_bgp_fd00__1 {")
    assert "local as 65001;" in v6 and "ipv6 {" in v6
    assert "interval 200 ms; multiplier 3;" in block(conf, "protocol bfd lvsd_bfd {")
    nobfd = bird_conf(BgpSpeaker(local_as=65001), [WEB])
    assert "bfd" not in nobfd and "router id" not in nobfd


def test_names() -> None:
    assert protocol_name("WEB_1") == "lvsd_WEB_1"
    assert neighbor_protocol("10.0.1.1") == "lvsd_bgp_10_0_1_1"
    assert neighbor_protocol("fd00::1") == "lvsd_bgp_fd00__1"


def test_reply_parser_codes_and_continuations() -> None:
    p = ReplyParser()
    assert p.feed("0001 BIRD 2.0.12 ready.") is not None
    lines = ["2002-Name       Proto      Table      State  Since         Info",
             "1002-lvsd_device Device     ---        up     1796331879    ",
             " lvsd_WEB   Static     master4    down   1796331879    ",
             " lvsd_bgp_10_0_1_1 BGP        ---        start  1796331879    Active        "
             "Socket: Connection refused",
             "0000 "]
    got = [p.feed(ln) for ln in lines]
    assert got[:-1] == [None] * 4
    reply = got[-1]
    assert reply is not None and reply.ok and reply.code == 0
    rows = parse_protocols(reply)
    assert [(r.name, r.proto, r.state) for r in rows] == [
        ("lvsd_device", "Device", "up"), ("lvsd_WEB", "Static", "down"),
        ("lvsd_bgp_10_0_1_1", "BGP", "start")]
    assert rows[2].bgp_state == "Active"
    assert rows[2].info.endswith("Socket: Connection refused")
    assert rows[1].bgp_state == "down"
    enabled = [p.feed("0011-lvsd_WEB: enabled"), p.feed("0000 ")]
    assert enabled[0] is None and enabled[1] is not None and 11 in enabled[1].codes
    err = p.feed("8003 No protocols match")
    assert err is not None and not err.ok


# ------------------------------------------------------------------ a real BIRD


@pytest.fixture
def bird_binary() -> str:
    require(None if BIRD.exists() else f"BIRD 2 not unpacked at {BIRD} "
            "(sudo bash scripts/bootstrap.sh test)")
    require(None if os.geteuid() == 0 else "BIRD needs root (netlink, its socket)")
    return str(BIRD)


async def _route(bird: BirdProcess, cidr: str) -> bool:
    reply = await bird.ctl.command(f"show route {cidr}")
    return any(cidr in text for _, text in reply.lines)


async def test_real_bird_enable_disable_configure_stop(bird_binary: str) -> None:
    sp = BgpSpeaker(local_as=65001, router_id="192.0.2.11", bird_binary=bird_binary,
                    neighbors=(BgpNeighbor("192.0.2.1", 65000),))
    bird = BirdProcess(bird_binary)
    try:
        await bird.start(bird_conf(sp, [WEB]))
        assert bird.running
        rows = {r.name: r for r in await bird.protocols()}
        assert rows["lvsd_WEB"].state == "down"  # created disabled
        assert rows["lvsd_bgp_192_0_2_1"].proto == "BGP"
        assert not await _route(bird, "10.0.0.100/32")

        await bird.enable("lvsd_WEB")
        await bird.enable("lvsd_WEB")  # "already enabled" is fine
        rows = {r.name: r for r in await bird.protocols()}
        assert rows["lvsd_WEB"].state == "up"
        assert await _route(bird, "10.0.0.100/32")

        # a reload adding an announcement, with WEB written as announced: WEB is not restarted
        since = rows["lvsd_WEB"].since
        extra = BgpAnnounce("X", "10.0.0.101", 32)
        await asyncio.sleep(1.1)  # `since` has a 1 s resolution: a restart would change it
        await bird.configure(bird_conf(sp, [WEB, extra], enabled={"WEB"}))
        rows = {r.name: r for r in await bird.protocols()}
        assert rows["lvsd_WEB"].state == "up" and rows["lvsd_WEB"].since == since
        assert rows["lvsd_X"].state == "down"

        await bird.disable("lvsd_WEB")
        assert not await _route(bird, "10.0.0.100/32")
        with pytest.raises(BirdError):
            await bird.enable("lvsd_NOPE")
        with pytest.raises(BirdError):
            await bird.configure("this is not a bird config;")
        assert bird.running  # a refused config leaves BIRD as it was

        await bird.stop()
        assert bird.returncode == 0 and not bird.running
    finally:
        await bird.kill()
        bird.cleanup()
    assert not os.path.exists(bird.run_dir)


async def test_real_bird_missing_binary_is_an_error() -> None:
    bird = BirdProcess("/nonexistent/bird")
    try:
        with pytest.raises(BirdError, match="not found"):
            await bird.start(bird_conf(BgpSpeaker(local_as=1), [WEB]))
    finally:
        bird.cleanup()
