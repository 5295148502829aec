"""The sans-IO parts of the VRRP child process: the loop watchdog's tracker, the respawn
back-off (keepalived calc_restart_delay), the process-priority plan, the channel's framing."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from lvsd.config.model import Config, GlobalDefs
from lvsd.daemon import procprio
from lvsd.daemon import vrrpwire as w
from lvsd.daemon.loopwatch import DEFAULT_THRESHOLD, StallTracker, threshold_for
from lvsd.daemon.respawn import RespawnPolicy


def test_threshold_is_a_quarter_of_the_shortest_master_down_interval() -> None:
    assert threshold_for([1.0, 0.1, 3.0]) == pytest.approx(0.075)
    assert threshold_for([]) == DEFAULT_THRESHOLD
    assert threshold_for([0.0]) == DEFAULT_THRESHOLD


def test_stall_tracker_keeps_the_longest_and_rate_limits_its_log() -> None:
    t = StallTracker(threshold=0.1, log_every=10.0)
    assert t.tick(due=1.0, now=1.01) is False  # 10 ms: under the threshold
    assert t.tick(due=2.0, now=2.5) is True  # 500 ms: logged
    assert t.tick(due=3.0, now=3.3) is False  # counted, not logged again within 10 s
    assert (t.max_stall, t.over_threshold) == (pytest.approx(0.5), 2)
    assert t.last_stall == pytest.approx(0.3)
    assert t.tick(due=20.0, now=20.2) is True  # 10 s later: logged again
    assert t.tick(due=21.0, now=20.9) is False and t.last_stall == 0.0  # early: no stall


def test_respawn_backoff_is_keepaliveds() -> None:
    p = RespawnPolicy()
    # early deaths: 0 (at once), then 1, 2, 4, ... up to 60
    delays = [p.delay(started_at=100.0, died_at=101.0) for _ in range(9)]
    assert delays == [0, 1, 2, 4, 8, 16, 32, 60, 60]
    # a child that ran a minute restarts at once, and the back-off starts over
    assert p.delay(started_at=0.0, died_at=60.0) == 0
    assert p.delay(started_at=100.0, died_at=101.0) == 0
    assert p.delay(started_at=100.0, died_at=101.0) == 1


def test_priority_plan_follows_keepalived() -> None:
    gd = GlobalDefs()
    assert procprio.plan(gd).empty
    # rt priority wins over the nice value; lvsd's default RT limit unless one is given
    rt = procprio.plan(dataclasses.replace(gd, vrrp_rt_priority=50, vrrp_priority=-5))
    assert (rt.rt_priority, rt.nice, rt.rlimit_rttime) == (50, None,
                                                           procprio.DEFAULT_RLIMIT_RTTIME)
    given = procprio.plan(dataclasses.replace(gd, vrrp_rt_priority=1, vrrp_rlimit_rttime=30000))
    assert given.rlimit_rttime == 30000
    nice = procprio.plan(dataclasses.replace(gd, vrrp_priority=-5, vrrp_no_swap=True))
    assert (nice.rt_priority, nice.nice, nice.no_swap) == (None, -5, True)


async def test_frames_round_trip_and_garbage_closes_the_channel() -> None:
    cfg = Config(source="x.conf", config_id="x")
    msgs: list[w.Message] = [w.Apply(1, cfg, "raw", ("s",), 1.5), w.Stop(2, 3.0),
                             w.Reply(1, False, "boom"), w.Event("VI_1", "state", {"a": 1}),
                             w.Report((), w.LoopHealth(0.1, 0.0, 1, 0.075))]
    r = asyncio.StreamReader()
    for m in msgs:
        r.feed_data(w.encode(m))
    r.feed_data(b"\x00\x00\x00\x03abc")  # not a pickle
    for m in msgs:
        assert await w.read_message(r) == m
    with pytest.raises(w.ChannelClosed, match="undecodable"):
        await w.read_message(r)
    big = asyncio.StreamReader()
    big.feed_data((w.MAX_FRAME + 1).to_bytes(4, "big"))
    with pytest.raises(w.ChannelClosed, match="frame of"):
        await w.read_message(big)
    eof = asyncio.StreamReader()
    eof.feed_data(b"\x00\x00")
    eof.feed_eof()
    with pytest.raises(w.ChannelClosed):
        await w.read_message(eof)


def test_every_corpus_config_crosses_to_the_child() -> None:
    """What the parent sends the child (the VRRP side of a config) pickles and comes back equal
    for every real keepalived.conf of the corpus."""
    import glob
    import pickle
    from pathlib import Path

    from lvsd.config.loader import load

    root = Path(__file__).resolve().parents[3] / "shared" / "corpus" / "keepalived"
    files = sorted(glob.glob(str(root / "**" / "*.conf"), recursive=True))
    assert files, f"no corpus under {root}"
    for f in files:
        cfg = load(f)
        v = dataclasses.replace(cfg, virtual_servers=(), virtual_server_groups=(), diagnostics=())
        msg = w.Apply(1, v, "raw")
        assert pickle.loads(w.encode(msg)[4:]) == msg, f


def test_watchdog_ticks_a_third_of_its_threshold_within_bounds() -> None:
    from lvsd.daemon.loopwatch import TICK_MAX, TICK_MIN, tick_for

    assert tick_for(0.075) == pytest.approx(0.025)  # advert_int 0.1 s
    assert tick_for(DEFAULT_THRESHOLD) == pytest.approx(0.25 / 3)
    assert tick_for(0.75) == TICK_MAX and tick_for(0.001) == TICK_MIN
