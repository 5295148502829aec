"""The live status page rendered by a real headless Chromium against a real status server."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest
from _status_sample import SECRET, FakeProvider

from conftest import require
from lvsd.status.app import StatusServer, create_app
from lvsd.status.event_types import VrrpStateChange
from lvsd.status.events import EventBus
from lvsd.status.model import RealServerStatus

pytestmark = pytest.mark.unit

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class _Cells(HTMLParser):
    """Collects the text of every <tr> carrying a data-instance / data-rs attribute."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, list[str]] = {}
        self._key: str | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "tr" and (a.get("data-instance") or a.get("data-rs")):
            self._key = a.get("data-instance") or a.get("data-rs")
            assert self._key is not None
            self.rows[self._key] = []
        elif tag == "td" and self._key is not None:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._key is not None and self._cell is not None:
            self.rows[self._key].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr":
            self._key = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


async def _dump_dom(url: str, shot: Path | None = None) -> str:
    assert CHROMIUM is not None
    with tempfile.TemporaryDirectory(prefix="lvsd-chromium-") as profile:
        argv = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                f"--user-data-dir={profile}", "--virtual-time-budget=4000"]
        argv += [f"--screenshot={shot}", "--window-size=1280,900"] if shot else ["--dump-dom"]
        proc = await asyncio.create_subprocess_exec(
            *argv, url, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            out, err = await asyncio.wait_for(proc.communicate(), 90)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise
    assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
    return out.decode()


async def test_page_shows_live_state_in_chromium(tmp_path: Path) -> None:
    require(None if CHROMIUM else "needs Debian chromium (scripts/bootstrap.sh installs it)")
    provider = FakeProvider()
    bus = EventBus()
    srv = StatusServer(create_app(provider, bus, secrets=provider.secrets), "127.0.0.1", 0)
    await srv.start()
    try:
        url = f"http://127.0.0.1:{srv.port}/"
        dom = await _dump_dom(url)
        cells = _Cells()
        cells.feed(dom)
        assert "VI_1" in cells.rows, dom[-3000:]
        vi = cells.rows["VI_1"]
        assert vi[3] == "MASTER"
        assert vi[4] == "140/150"
        assert "192.0.2.1 (140)" in vi[5]
        assert "master down timer expired" in vi[9]
        assert cells.rows["10.0.0.11:80"][1] == "UP"
        assert cells.rows["10.0.0.12:80"][1] == "DOWN"
        assert "connection refused" in cells.rows["10.0.0.12:80"][5]
        assert cells.rows["[fd00::13]:8080"][1] == "pending"
        assert "REJECTED" in dom and SECRET not in dom
        assert "TCP_CHECK 10.0.0.12:80" in dom and "0.4 ms" in dom  # checkers table
        # ipvsadm -Ln's settings on the service, forwarding, connections and traffic per server
        assert "TCP 192.0.2.100:80 wlc (sh-fallback) persistent 300 mask 255.255.255.0" in dom
        rs1 = cells.rows["10.0.0.11:80"]
        assert rs1[6:8] == ["Masq", "4/1"], rs1
        assert rs1[8].startswith("41 conns · pkts 900/800 · bytes 64000/1200000"), rs1
        assert cells.rows["10.0.0.12:80"][6:9] == ["–", "–", "–"]
        assert "lvs-a (config id lvs1)" in dom  # the router_id heads the page
        assert "refused=3 timeout=2" in dom  # failed checks by reason

        # the page follows changes: a new state shows up on the next load/poll
        provider.state = "BACKUP"
        provider.rs2_alive = True
        provider.draining = (RealServerStatus(
            "10.0.0.14", 80, None, True, 0, 0, reason="removed by reload: draining at weight 0",
            draining=True, draining_until=time.time() + 300),)
        cells = _Cells()
        cells.feed(await _dump_dom(url))
        assert cells.rows["VI_1"][3] == "BACKUP"
        assert cells.rows["10.0.0.12:80"][1] == "UP"
        assert cells.rows["10.0.0.14:80"][1] == "draining"
        assert "removed by reload: draining at weight 0 until " in cells.rows["10.0.0.14:80"][5]
        assert provider.calls >= 2

        # transitions published while the page is open appear in its event list (/events)
        async def publish() -> None:
            for n in range(100):
                bus.publish(VrrpStateChange("VI_1", "MASTER", "BACKUP",
                                            f"higher priority advert #{n}"))
                await asyncio.sleep(0.1)

        pub = asyncio.create_task(publish())
        try:
            dom = await _dump_dom(url)
        finally:
            pub.cancel()
        assert "higher priority advert #" in dom, dom[-2000:]

        shot = tmp_path / "status.png"
        await _dump_dom(url, shot)
        assert shot.stat().st_size > 1000
    finally:
        await srv.stop()
