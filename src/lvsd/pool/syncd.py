"""IPVS connection sync daemons: which ones a director wants, and the minimal change to get them.

Theory of operation
-------------------
The kernel's IPVS sync daemon (``ipvsadm --start-daemon``) multicasts the connection table of a
director running it as MASTER; a director running it as BACKUP inserts what it receives into its
own table. A director that becomes the VRRP master with the old master's connections in its
table forwards their next packets to the same real servers: established connections survive
the failover. Since Linux 2.6.39 one network namespace may run one daemon of each role at once.

This module is the sans-IO core; the reconciler (:mod:`lvsd.pool.reconciler`) reads the kernel's
daemons, asks :func:`sync_ops` for the operations and applies them through the data plane's
optional :class:`~lvsd.dataplane.base.SyncDaemonHolder`. Nothing here does I/O.

1. **Settings** (:func:`settings_from_config`): ``global_defs { lvs_sync_daemon IF [INSTANCE]
   [id N] [maxlen N] [port N] [ttl N] [group ADDR] }`` (and the deprecated per-instance
   ``lvs_sync_daemon_interface IF``, the same thing). The sync id defaults to the named VRRP
   instance's ``virtual_router_id``, or 0 without an instance (keepalived vrrp.c
   vrrp_complete_init "If no syncid configured, use vrid"). A named instance the config does
   not have clears the setting (keepalived: "Unable to find vrrp instance %s for lvs_syncd -
   clearing lvs_syncd config"; reported by the semantic check). maxlen, port, ttl, group left
   unset are the kernel's defaults (224.0.0.81, 8848, ttl 1, maxlen from the MTU).
2. **Desired daemons** (:func:`desired_daemons`) from the state of the named VRRP instance
   (``MASTER``, ``BACKUP``, ``FAULT``; none known yet, or a mode without VRRP: BACKUP):

   * ``both`` (lvsd's default, an extension): a BACKUP daemon always, plus a MASTER daemon while
     the instance is MASTER. State flows both ways: the backup keeps learning what the master
     opens, and the master keeps learning too, so when the old master returns (preemption,
     failback) its table already holds the connections opened on the other director while it
     was away -- including when only its lvsd process died and the kernel went on running the
     backup daemon. keepalived stops the backup daemon of a master (ipvswrapper.c
     ipvs_syncd_master), so a failback loses what was opened during the failover unless the
     old master caught up in the seconds before it preempts (keepalived issues #1966, #1076).
   * ``keepalived`` (``lvs_sync_daemon_mode keepalived``): keepalived's switching exactly:
     MASTER -> only a MASTER daemon, any other state -> only a BACKUP daemon (ipvswrapper.c
     ipvs_syncd_master / ipvs_syncd_backup, called from vrrp.c vrrp_state_become_master /
     vrrp_state_leave_master and vrrp_scheduler.c vrrp_init_state).
   * No instance named (``lvs_sync_daemon eth1``): both roles all the time, in either mode
     (keepalived check_daemon.c start_check: IPVS_MASTER_BACKUP).
3. **Operations** (:func:`sync_ops`): compare the desired daemons with a fresh read of the
   kernel's. A role whose kernel daemon matches (same interface and sync id; maxlen, port,
   ttl and group where configured, maxlen as the kernel clamps it) is left alone: a restart
   of lvsd adopts running daemons, and a VRRP transition touches only the role that changes.
   A role whose daemon differs, or whose parameters a reload changed (``changed``: keepalived
   ipvswrapper.c ipvs_syncd_changed, compared by the caller between the old and the new
   desired daemon), is stopped and started again; a missing one is started; a running role
   lvsd owns but does not want is stopped. Starts come first (a new master daemon runs before
   the backup one stops, in keepalived mode too), then the restarts, then the stops.
   Ownership is the caller's: with ``lvs_sync_daemon`` configured lvsd owns both roles of its
   namespace; without it, only the roles it ran since it started (a reload that drops the
   keyword stops them, as keepalived's reload does); daemons started by hand are otherwise
   left alone.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lvsd.config.model import Config

#: kernel defaults (net/netfilter/ipvs/ip_vs_sync.c, include/net/ip_vs.h)
DEFAULT_GROUP = "224.0.0.81"  # IP_VS_SYNC_GROUP
DEFAULT_PORT = 8848  # IP_VS_SYNC_PORT
DEFAULT_TTL = 1
#: lvsd extension: how the daemons follow the VRRP state (``lvs_sync_daemon_mode``)
MODES = ("both", "keepalived")
MASTER_STATE = "MASTER"


class SyncRole(StrEnum):
    """The kernel's IP_VS_STATE_MASTER (1) / IP_VS_STATE_BACKUP (2)."""

    MASTER = "master"
    BACKUP = "backup"

    @property
    def kernel(self) -> int:
        return 1 if self is SyncRole.MASTER else 2


@dataclass(frozen=True, slots=True)
class SyncDaemon:
    """One kernel sync daemon, as ``ipvsadm --start-daemon`` takes it and ``-L --daemon`` shows
    it. Desired: None for a parameter left to the kernel. Read: every field the kernel
    reported (maxlen, port, ttl, group always are)."""

    role: SyncRole
    interface: str
    sync_id: int = 0
    maxlen: int | None = None
    port: int | None = None
    ttl: int | None = None
    group: str | None = None  # IPv4 or IPv6 multicast address

    def describe(self) -> str:
        """ipvsadm-like text: ``master eth1 syncid 51 [maxlen ..] [group ..] ...``."""
        out = f"{self.role.value} {self.interface} syncid {self.sync_id}"
        for name in ("maxlen", "group", "port", "ttl"):
            v = getattr(self, name)
            if v is not None:
                out += f" {name} {v}"
        return out


@dataclass(frozen=True, slots=True)
class StartDaemon:
    daemon: SyncDaemon

    def describe(self) -> str:
        return f"start sync daemon {self.daemon.describe()}"


@dataclass(frozen=True, slots=True)
class StopDaemon:
    role: SyncRole

    def describe(self) -> str:
        return f"stop sync daemon {self.role.value}"


SyncOp = StartDaemon | StopDaemon


@dataclass(frozen=True, slots=True)
class SyncSettings:
    """``lvs_sync_daemon`` resolved against the config (see the module docstring, step 1)."""

    interface: str
    instance: str | None
    sync_id: int
    maxlen: int | None = None
    port: int | None = None
    ttl: int | None = None
    group: str | None = None
    mode: str = "both"

    def daemon(self, role: SyncRole) -> SyncDaemon:
        return SyncDaemon(role, self.interface, self.sync_id, self.maxlen, self.port,
                          self.ttl, self.group)


def settings_from_config(cfg: Config) -> SyncSettings | None:
    """The sync daemon settings of ``cfg``; None when it has none (or names an instance it does
    not have: keepalived vrrp.c clears the config then)."""
    g = cfg.global_defs
    sd = g.lvs_sync_daemon
    if sd is None:
        return None
    sync_id = sd.id
    if sd.instance is not None:
        inst = next((i for i in cfg.vrrp_instances if i.name == sd.instance), None)
        if inst is None:
            return None
        if sync_id is None:
            sync_id = inst.virtual_router_id
    return SyncSettings(interface=sd.interface, instance=sd.instance, sync_id=sync_id or 0,
                        maxlen=sd.maxlen, port=sd.port, ttl=sd.ttl,
                        group=str(ipaddress.ip_address(sd.group)) if sd.group else None,
                        mode=g.lvs_sync_daemon_mode)


def desired_daemons(settings: SyncSettings | None,
                    states: Mapping[str, str]) -> tuple[SyncDaemon, ...]:
    """The daemons wanted now, given the VRRP state of each instance (``states``: instance ->
    ``MASTER``/``BACKUP``/``FAULT``; an instance not in it is BACKUP). Master first."""
    if settings is None:
        return ()
    if settings.instance is None:
        return settings.daemon(SyncRole.MASTER), settings.daemon(SyncRole.BACKUP)
    master = states.get(settings.instance) == MASTER_STATE
    if settings.mode == "keepalived":
        return (settings.daemon(SyncRole.MASTER if master else SyncRole.BACKUP),)
    if master:
        return settings.daemon(SyncRole.MASTER), settings.daemon(SyncRole.BACKUP)
    return (settings.daemon(SyncRole.BACKUP),)


def kernel_maxlen(role: SyncRole, maxlen: int, group: str | None) -> int:
    """The maxlen the kernel runs a daemon with when given ``maxlen`` (ip_vs_sync.c
    start_sync_thread: clamped to 1024.. for a backup, 1.. for a master, ..65535 - headers)."""
    v6 = group is not None and ":" in group
    hlen = (40 if v6 else 20) + 8
    low = 1024 if role is SyncRole.BACKUP else 1
    return max(low, min(maxlen, 65535 - hlen))


def matches(want: SyncDaemon, have: SyncDaemon) -> bool:
    """``have`` (read from the kernel) is the daemon ``want`` asks for."""
    if (want.role, want.interface, want.sync_id) != (have.role, have.interface, have.sync_id):
        return False
    if want.maxlen is not None and have.maxlen is not None and \
            kernel_maxlen(want.role, want.maxlen, want.group) != have.maxlen:
        return False
    if have.port is not None and (want.port or DEFAULT_PORT) != have.port:
        return False
    if have.ttl is not None and (want.ttl or DEFAULT_TTL) != have.ttl:
        return False
    return have.group is None or (want.group or DEFAULT_GROUP) == have.group


def changed_roles(before: Iterable[SyncDaemon], after: Iterable[SyncDaemon]) -> set[SyncRole]:
    """Roles wanted both before and after whose parameters differ (keepalived ipvswrapper.c
    ipvs_syncd_changed): they are restarted even where the kernel's values would match."""
    old = {d.role: d for d in before}
    return {d.role for d in after if d.role in old and old[d.role] != d}


def sync_ops(want: Iterable[SyncDaemon], have: Iterable[SyncDaemon],
             owned: Collection[SyncRole], changed: Collection[SyncRole] = ()
             ) -> list[SyncOp]:
    """The minimal operations turning the kernel's daemons ``have`` into ``want`` (see the
    module docstring, step 3). Roles neither wanted nor ``owned`` are left alone."""
    wanted = {d.role: d for d in want}
    running = {d.role: d for d in have}
    starts: list[SyncOp] = []
    restarts: list[SyncOp] = []
    stops: list[SyncOp] = []
    for role in (SyncRole.MASTER, SyncRole.BACKUP):
        w, h = wanted.get(role), running.get(role)
        if w is not None and h is None:
            starts.append(StartDaemon(w))
        elif w is not None and h is not None:
            if role in changed or not matches(w, h):
                restarts += [StopDaemon(role), StartDaemon(w)]
        elif h is not None and role in owned:
            stops.append(StopDaemon(role))
    return starts + restarts + stops


def apply_sync_ops(have: Iterable[SyncDaemon], ops: Iterable[SyncOp]) -> tuple[SyncDaemon, ...]:
    """What the kernel runs after ``ops`` (pure; the reconciler's view after a write)."""
    running = {d.role: d for d in have}
    for op in ops:
        if isinstance(op, StartDaemon):
            running[op.daemon.role] = op.daemon
        else:
            running.pop(op.role, None)
    return tuple(running[r] for r in (SyncRole.MASTER, SyncRole.BACKUP) if r in running)
