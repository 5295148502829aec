"""The BGP mode in the read-only outputs: /status's ``bgp`` section, the metrics, the
``lvsd status`` text, and the service's view turned into it (monotonic -> Unix times)."""

from __future__ import annotations

import pytest

from lvsd.status.client import format_status
from lvsd.status.metrics import make_registry, render
from lvsd.status.model import (
    BgpAnnouncementStatus,
    BgpSessionStatus,
    BgpStatus,
    ConfigStatus,
    ProcessStatus,
    Snapshot,
    to_dict,
)

pytestmark = pytest.mark.unit


def snapshot(bgp: BgpStatus | None) -> Snapshot:
    return Snapshot(process=ProcessStatus(1, "0", 0.0, "full", True),
                    config=ConfigStatus("k.conf", "id", 0.0), generated_at=1.0, bgp=bgp)


BGP = BgpStatus(
    announcements=(
        BgpAnnouncementStatus("WEB", "10.0.0.100/32", "announced", "quorum up", 100.0, True,
                              "quorum up"),
        BgpAnnouncementStatus("DNS", "10.0.0.53/32", "withdrawn", "track_script CHK failing",
                              101.0, False, "track_script CHK failing", 103.0)),
    sessions=(BgpSessionStatus("10.0.1.1", "Established", 99.0),
              BgpSessionStatus("10.0.2.1", "Active", 98.0)),
    bird_pid=42, bird_running=True)


def test_status_json_has_the_bgp_section() -> None:
    assert to_dict(snapshot(None))["bgp"] is None
    d = to_dict(snapshot(BGP))["bgp"]
    assert d["announcements"][1] == {
        "name": "DNS", "address": "10.0.0.53/32", "state": "withdrawn",
        "reason": "track_script CHK failing", "since": 101.0, "healthy": False,
        "health_reason": "track_script CHK failing", "pending_until": 103.0}
    assert d["sessions"][0] == {"neighbor": "10.0.1.1", "state": "Established", "since": 99.0}
    assert (d["bird_pid"], d["bird_running"], d["bird_restarts"]) == (42, True, 0)


def test_metrics() -> None:
    text = render(make_registry(lambda: snapshot(BGP))).decode()
    assert 'lvsd_bgp_announced{address="10.0.0.100/32",name="WEB"} 1.0' in text
    assert 'lvsd_bgp_announced{address="10.0.0.53/32",name="DNS"} 0.0' in text
    assert 'lvsd_bgp_session_up{neighbor="10.0.1.1"} 1.0' in text
    assert 'lvsd_bgp_session_up{neighbor="10.0.2.1"} 0.0' in text
    assert "lvsd_bgp_" not in render(make_registry(lambda: snapshot(None))).decode()


def test_status_text() -> None:
    text = format_status(to_dict(snapshot(BGP)))
    assert "BGP announcements (BIRD pid 42, 0 restarts)" in text
    assert "WEB" in text and "ANNOUNCED" in text and "WITHDRAWN" in text
    assert "session 10.0.1.1" in text and "Established" in text
    assert "BGP" not in format_status(to_dict(snapshot(None)))


def test_service_view_to_status_times() -> None:
    from lvsd.bgp.announce import Announcer
    from lvsd.config.loader import loads
    from lvsd.daemon.bgpservice import BgpService, bgp_status

    cfg = loads("bgp_speaker {\n local_as 1\n}\nbgp_announce A {\n address 192.0.2.1/32\n"
                " rise_delay 1\n}\n")
    clock = [10.0]
    svc = BgpService(cfg, pool_view=lambda: None, publish=lambda e: None,
                     dataplane="memory", clock=lambda: clock[0])
    ann: Announcer = svc._announcer
    ann.health("A", True, "lvsd running", 10.0)
    ann.sessions({"192.0.2.254": "Active"}, 10.5)
    st = bgp_status(svc, lambda t: None if t is None else t + 1000.0)
    assert st is not None
    (a,) = st.announcements
    assert (a.name, a.address, a.state, a.healthy, a.pending_until) == (
        "A", "192.0.2.1/32", "withdrawn", True, 1011.0)
    assert [(s.neighbor, s.state, s.since) for s in st.sessions] == [
        ("192.0.2.254", "Active", 1010.5)]
    assert not st.bird_running and st.bird_pid is None
    assert bgp_status(None, lambda t: t) is None
