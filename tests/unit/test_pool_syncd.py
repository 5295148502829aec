"""IPVS connection sync daemons: the sans-IO core (lvsd.pool.syncd), the reconciler owning them
over the memory data plane (adopt, transitions, drift repair, reload), and the pool service's
VRRP hook. The kernel side (netlink, real daemons, real failovers) is tests/kernel/guest."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from lvsd.config.loader import loads
from lvsd.config.model import Config
from lvsd.dataplane.memory import MemoryDataPlane
from lvsd.pool.planner import Planner
from lvsd.pool.reconciler import Reconciler
from lvsd.pool.service import PoolService
from lvsd.pool.syncd import (
    StartDaemon,
    StopDaemon,
    SyncDaemon,
    SyncRole,
    SyncSettings,
    changed_roles,
    desired_daemons,
    matches,
    settings_from_config,
    sync_ops,
)
from lvsd.status.event_types import EventPayload

pytestmark = pytest.mark.unit

M, B = SyncRole.MASTER, SyncRole.BACKUP


def cfg(glob: str, *, instance: str = "VI_1", vrid: int = 51) -> Config:
    text = (f"global_defs {{\n{glob}}}\n"
            f"vrrp_instance {instance} {{\n  state BACKUP\n  interface eth0\n"
            f"  virtual_router_id {vrid}\n  priority 100\n"
            "  virtual_ipaddress {\n    192.0.2.10\n  }\n}\n"
            "virtual_server 192.0.2.10 80 {\n  lb_kind NAT\n  protocol TCP\n"
            "  real_server 10.0.0.1 80 {\n    weight 1\n  }\n}\n")
    return loads(text, name="s.conf")


def settings(glob: str, **kw: object) -> SyncSettings:
    s = settings_from_config(cfg(glob, **kw))  # type: ignore[arg-type]
    assert s is not None
    return s


# ------------------------------------------------------------------------------- the core


def test_settings_default_sync_id_is_the_instances_vrid_else_zero() -> None:
    s = settings("  lvs_sync_daemon eth1 VI_1\n")
    assert (s.interface, s.instance, s.sync_id, s.mode) == ("eth1", "VI_1", 51, "both")
    assert settings("  lvs_sync_daemon eth1 VI_1 id 7\n").sync_id == 7
    assert settings("  lvs_sync_daemon eth1\n").sync_id == 0
    # an instance the config does not have: keepalived clears the setting
    assert settings_from_config(cfg("  lvs_sync_daemon eth1 VI_9\n")) is None
    assert settings_from_config(cfg("")) is None


def test_both_mode_runs_a_backup_always_and_a_master_on_the_master() -> None:
    s = settings("  lvs_sync_daemon eth1 VI_1 maxlen 1400\n")
    assert [d.role for d in desired_daemons(s, {})] == [B]  # not reported yet: BACKUP
    assert [d.role for d in desired_daemons(s, {"VI_1": "BACKUP"})] == [B]
    assert [d.role for d in desired_daemons(s, {"VI_1": "FAULT"})] == [B]
    both = desired_daemons(s, {"VI_1": "MASTER"})
    assert [d.role for d in both] == [M, B]
    assert all(d.interface == "eth1" and d.sync_id == 51 and d.maxlen == 1400 for d in both)
    assert [d.role for d in desired_daemons(s, {"VI_2": "MASTER"})] == [B]  # not ours


def test_keepalived_mode_switches_as_keepalived_does() -> None:
    s = settings("  lvs_sync_daemon eth1 VI_1\n  lvs_sync_daemon_mode keepalived\n")
    assert s.mode == "keepalived"
    assert [d.role for d in desired_daemons(s, {"VI_1": "MASTER"})] == [M]
    assert [d.role for d in desired_daemons(s, {"VI_1": "BACKUP"})] == [B]
    assert [d.role for d in desired_daemons(s, {"VI_1": "FAULT"})] == [B]


def test_no_instance_runs_both_roles_in_either_mode() -> None:
    for glob in ("  lvs_sync_daemon eth1\n",
                 "  lvs_sync_daemon eth1\n  lvs_sync_daemon_mode keepalived\n"):
        assert [d.role for d in desired_daemons(settings(glob), {})] == [M, B]


def test_matches_compares_what_is_configured_with_the_kernels_defaults() -> None:
    want = SyncDaemon(B, "eth1", 5)
    kernel = SyncDaemon(B, "eth1", 5, maxlen=1472, port=8848, ttl=1, group="224.0.0.81")
    assert matches(want, kernel)
    assert not matches(SyncDaemon(B, "eth2", 5), kernel)
    assert not matches(SyncDaemon(B, "eth1", 6), kernel)
    assert not matches(SyncDaemon(B, "eth1", 5, port=9000), kernel)
    assert not matches(SyncDaemon(B, "eth1", 5, group="239.0.0.1"), kernel)
    # maxlen as the kernel clamps it: a backup runs with at least 1024
    assert matches(SyncDaemon(B, "eth1", 5, maxlen=900), SyncDaemon(B, "eth1", 5, maxlen=1024))
    assert not matches(SyncDaemon(M, "eth1", 5, maxlen=900),
                       SyncDaemon(M, "eth1", 5, maxlen=1024))


def test_sync_ops_minimal_starts_first_then_restarts_then_stops() -> None:
    m, b = SyncDaemon(M, "eth1", 5), SyncDaemon(B, "eth1", 5)
    assert sync_ops([m, b], [b], owned=set(SyncRole)) == [StartDaemon(m)]
    assert sync_ops([b], [m, b], owned=set(SyncRole)) == [StopDaemon(M)]
    assert sync_ops([m, b], [m, b], owned=set(SyncRole)) == []
    # keepalived's switch to master: the master starts before the backup stops
    assert sync_ops([m], [b], owned=set(SyncRole)) == [StartDaemon(m), StopDaemon(B)]
    # a differing daemon is restarted; so is one whose parameters a reload changed
    b6 = SyncDaemon(B, "eth1", 6)
    assert sync_ops([b6], [b], owned=set(SyncRole)) == [StopDaemon(B), StartDaemon(b6)]
    assert sync_ops([b], [b], owned=set(SyncRole), changed={B}) == [StopDaemon(B),
                                                                      StartDaemon(b)]
    # not owned (no lvs_sync_daemon, never ran it): a daemon started by hand stays
    assert sync_ops([], [m], owned=()) == []


def test_changed_roles_only_parameter_changes_of_a_role_wanted_before_and_after() -> None:
    m, b = SyncDaemon(M, "eth1", 5), SyncDaemon(B, "eth1", 5)
    assert changed_roles([b], [m, b]) == set()  # a VRRP transition adds a role
    assert changed_roles([m, b], [b]) == set()
    assert changed_roles([b], [SyncDaemon(B, "eth1", 5, maxlen=1400)]) == {B}


# ------------------------------------------------------------------------ the reconciler


def rec(dp: MemoryDataPlane, **kw: object) -> Reconciler:
    return Reconciler(dp, retry_attempts=1, **kw)  # type: ignore[arg-type]


async def test_reconciler_starts_adopts_and_repairs_drift() -> None:
    dp = MemoryDataPlane()
    r = rec(dp)
    m, b = SyncDaemon(M, "eth1", 5), SyncDaemon(B, "eth1", 5)
    r.set_sync_daemons([m, b], configured=True)
    res = await r.start()
    assert set(dp.sync_daemons) == {M, B}
    assert [op.describe() for op in res.sync] == ["start sync daemon master eth1 syncid 5",
                                                  "start sync daemon backup eth1 syncid 5"]
    assert r.status.in_sync and r.status.repairs == 0
    assert r.status.sync_kernel is not None and len(r.status.sync_kernel) == 2
    # a restart of lvsd adopts: a new reconciler over the same kernel does nothing
    r2 = rec(dp)
    r2.set_sync_daemons([m, b], configured=True)
    assert (await r2.start()).sync == ()
    calls = len(dp.sync_calls)
    # a change that wants nothing new reads nothing
    assert (await r2.reconcile("change")).sync == () and dp.sync_calls[calls:] == []
    # stopped by hand: the sweep starts it again, a repair
    dp.drift_stop_daemon(B)
    res = await r2.reconcile("sweep")
    assert [op.describe() for op in res.sync] == ["start sync daemon backup eth1 syncid 5"]
    assert res.repairs == 1 and r2.status.repairs == 1 and B in dp.sync_daemons


async def test_reconciler_transitions_touch_only_the_role_that_changes() -> None:
    dp = MemoryDataPlane()
    r = rec(dp)
    s = settings("  lvs_sync_daemon eth1 VI_1\n")
    r.set_sync_daemons(desired_daemons(s, {}), configured=True)
    await r.start()
    assert dp.sync_calls == ["start backup eth1 syncid 51"]
    r.set_sync_daemons(desired_daemons(s, {"VI_1": "MASTER"}), configured=True)
    await r.reconcile("vrrp")
    r.set_sync_daemons(desired_daemons(s, {"VI_1": "BACKUP"}), configured=True)
    await r.reconcile("vrrp")
    assert dp.sync_calls == ["start backup eth1 syncid 51", "start master eth1 syncid 51",
                             "stop master"]
    assert r.status.repairs == 0


async def test_reload_restarts_only_on_a_parameter_change_and_stops_when_dropped() -> None:
    dp = MemoryDataPlane()
    r = rec(dp)
    b = SyncDaemon(B, "eth1", 5, maxlen=1400)
    r.set_sync_daemons([b], configured=True)
    await r.start()
    r.set_sync_daemons([SyncDaemon(B, "eth1", 5, maxlen=1400)], configured=True)  # same
    assert (await r.reconcile("change")).sync == ()
    # maxlen dropped: the kernel's 1400 would "match" a daemon without maxlen, but the
    # parameters changed, so it restarts (keepalived ipvs_syncd_changed)
    r.set_sync_daemons([SyncDaemon(B, "eth1", 5)], configured=True)
    res = await r.reconcile("change")
    assert [op.describe() for op in res.sync] == ["stop sync daemon backup",
                                                  "start sync daemon backup eth1 syncid 5"]
    assert dp.sync_daemons[B].maxlen == 1472  # the kernel's default again
    # lvs_sync_daemon removed by a reload: what lvsd ran is stopped, then left alone
    r.set_sync_daemons([], configured=False)
    res = await r.reconcile("change")
    assert [op.describe() for op in res.sync] == ["stop sync daemon backup"]
    await dp.start_sync_daemon(SyncDaemon(M, "eth9", 1))  # an operator's own
    assert (await r.reconcile("sweep")).sync == ()
    assert M in dp.sync_daemons


async def test_a_failure_is_an_alarm_and_the_next_reconcile_retries() -> None:
    dp = MemoryDataPlane()
    r = rec(dp)
    r.set_sync_daemons([SyncDaemon(B, "eth1", 5)], configured=True)
    dp.fail_sync(2)  # the read and then ... the read again (each reconcile reads first)
    res = await r.start()
    assert not res.ok and "get sync daemons" in res.failed[0].op
    assert not r.status.in_sync
    res = await r.reconcile("change")
    assert not res.ok
    res = await r.reconcile("change")
    assert res.ok and B in dp.sync_daemons and r.status.in_sync and not r.status.alarms


async def test_stop_leaves_them_running_unless_the_table_is_flushed_too() -> None:
    dp = MemoryDataPlane()
    r = rec(dp)
    r.set_sync_daemons([SyncDaemon(B, "eth1", 5)], configured=True)
    await r.start()
    await r.stop()
    assert B in dp.sync_daemons
    r2 = rec(dp, flush_on_stop="all")
    r2.set_sync_daemons([SyncDaemon(B, "eth1", 5)], configured=True)
    await r2.start()
    await r2.stop()
    assert dp.sync_daemons == {}


async def test_a_data_plane_without_sync_daemons_ignores_them_with_a_status_note() -> None:
    class NoSync:  # the DataPlane protocol without SyncDaemonHolder (as nftables)
        name = "nosync"

        def __init__(self) -> None:
            self.inner = MemoryDataPlane()
            self.dump = self.inner.dump
            self.apply = self.inner.apply
            self.apply_many = self.inner.apply_many
            self.stats = self.inner.stats
            self.close = self.inner.close
            self.refuse = self.inner.refuse

    r = Reconciler(NoSync())  # type: ignore[arg-type]
    r.set_sync_daemons([SyncDaemon(B, "eth1", 5)], configured=True)
    assert (await r.start()).ok
    assert "no IPVS connection sync daemon" in r.status.sync_ignored


# ------------------------------------------------------------------------- the pool hook


class Checks:
    """A health source with no servers to check (the pool's HealthSource interface)."""

    def __init__(self) -> None:
        self.health: dict[object, object] = {}

    def add_callback(self, cb: Callable[..., None]) -> None:
        pass

    async def start(self) -> None:
        pass

    def update(self, config: Config) -> None:
        pass

    async def close(self) -> None:
        pass


async def until(cond: Callable[[], bool], what: str) -> None:
    for _ in range(1000):  # a bound for a hang, not a timing assertion
        if cond():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never: {what}")


async def test_pool_follows_the_named_instances_vrrp_state() -> None:
    dp = MemoryDataPlane()
    events: list[EventPayload] = []
    c = cfg("  lvs_sync_daemon eth1 VI_1\n")
    pool = PoolService(Checks(), Planner(c), Reconciler(dp),  # type: ignore[arg-type]
                       sweep_interval=3600.0, publish=events.append)
    await pool.start()
    try:
        assert set(dp.sync_daemons) == {B}  # never reported (or --check-only): BACKUP
        v = pool.view()
        assert (v.sync_instance, v.sync_vrrp_state) == ("VI_1", "BACKUP")
        pool.vrrp_state("VI_2", "MASTER")  # not the instance named: nothing
        pool.vrrp_state("VI_1", "MASTER")
        await until(lambda: set(dp.sync_daemons) == {M, B}, "master daemon")
        assert pool.view().sync_vrrp_state == "MASTER"
        assert any(getattr(e, "reason", None) == "vrrp" for e in events)
        pool.vrrp_state("VI_1", "FAULT")
        await until(lambda: set(dp.sync_daemons) == {B}, "master daemon stopped")
        # a reload into keepalived's mode: the backup daemon alone, untouched
        calls = len(dp.sync_calls)
        pool.reload(cfg("  lvs_sync_daemon eth1 VI_1\n  lvs_sync_daemon_mode keepalived\n"))
        pool.vrrp_state("VI_1", "MASTER")
        await until(lambda: set(dp.sync_daemons) == {M}, "keepalived mode: master only")
        assert dp.sync_calls[calls:] == ["start master eth1 syncid 51", "stop backup"]
    finally:
        await pool.stop(script_timeout=1)


# ---------------------------------------------------------------------- the netlink codec


def test_daemon_codec_reads_back_what_it_writes_with_a_host_order_port() -> None:
    import struct
    import sys

    from lvsd.dataplane import ipvs as m

    d = SyncDaemon(M, "eth1", 51, maxlen=1400, port=8850, ttl=2, group="239.1.2.3")
    attrs = m.daemon_attrs(d)
    # the kernel reads the port as a host-order u16 (ip_vs_ctl.c nla_get_u16), unlike a
    # service's port: 8848 written big-endian would run the daemon on port 36898
    inner = m.parse_attrs(m.parse_attrs(attrs)[m.ATTR_DAEMON])
    assert int.from_bytes(inner[m.DAEMON_MCAST_PORT], sys.byteorder) == 8850
    msg = b"\0" * (m._NLMSGHDR.size + m._GENLHDR.size) + attrs  # a GET_DAEMON answer's shape
    assert m.decode_daemon(msg) == d
    v6 = SyncDaemon(B, "eth1", 7, group="ff15::81")
    assert m.decode_daemon(b"\0" * 20 + m.daemon_attrs(v6)) == v6
    # a minimal start: state, interface and sync id only (the kernel fills its defaults)
    bare = m.parse_attrs(m.parse_attrs(m.daemon_attrs(SyncDaemon(B, "eth1", 7)))[m.ATTR_DAEMON])
    assert sorted(bare) == [m.DAEMON_STATE, m.DAEMON_MCAST_IFN, m.DAEMON_SYNC_ID]
    assert struct.unpack("=I", bytes(bare[m.DAEMON_STATE]))[0] == 2
