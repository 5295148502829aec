"""From a loaded keepalived.conf to what a ``VrrpRunner`` runs: the one typed path.

Theory of operation
-------------------
A ``vrrp_instance`` becomes an ``InstanceSpec`` (``InstanceSpec.from_config``: its
``VrrpParams`` from ``params.params_from_instance``, its VIPs placed on the vmac if any, its
``vrrp_script`` checks with keepalived's default ``script_user``, its tracked processes and its
notify scripts / FIFOs); a runner's whole input is a ``RunnerSpec``: one per
``vrrp_sync_group`` (with the group's own ``Notifier``) and one per instance outside any group
(``runner_specs``: keepalived puts an instance in at most one group, vrrp_sync.c). The daemon,
the preflight and the test tools build runners through here only.

Also here, because the runner and the pure reload planner (``reload_plan``) both need them:
``identity`` (what makes a spec the same instance across a reload), ``transport_key`` (what
makes its transport the same) and ``vips_of`` / ``tracked_interfaces``. Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lvsd.vrrp.notify import Notifier, ScriptSpec
from lvsd.vrrp.params import VrrpParams, params_from_instance
from lvsd.vrrp.process_track import ProcessSpec, spec_from_model
from lvsd.vrrp.transport import UDP_PORT, Transport
from lvsd.vrrp.vips import Vip, vip_from_model
from lvsd.vrrp.vmac import VmacPlan

if TYPE_CHECKING:
    from lvsd.config.model import Config, VrrpInstance, VrrpSyncGroup

__all__ = ["CheckScript", "InstanceSpec", "RunnerSpec", "identity", "notifier_from_config",
           "place", "runner_specs", "tracked_interfaces", "transport_key", "vips_of"]


@dataclass(frozen=True, slots=True)
class CheckScript:
    """A ``vrrp_script`` as the runner runs it."""

    name: str
    script: ScriptSpec
    interval: float = 1.0
    timeout: float | None = None  # None: interval (keepalived)


@dataclass
class InstanceSpec:
    """Everything the runner needs for one instance besides its ``VrrpParams``.

    ``vips`` None: the params' addresses as host routes (/32, /128) on ``interface``.
    ``transport`` is "raw" (default), "udp" (lvsd extension) or a ready ``Transport``.
    """

    params: VrrpParams
    interface: str
    transport: str | Transport = "raw"
    peers: tuple[str, ...] = ()
    src_ip: str | None = None
    check_unicast_src: bool = False
    mcast_group: str | None = None
    udp_port: int = UDP_PORT
    vips: tuple[Vip, ...] | None = None
    excluded: tuple[Vip, ...] = ()
    notifier: Notifier | None = None
    scripts: tuple[CheckScript, ...] = ()
    garp_interval: float = 0.0
    processes: tuple[ProcessSpec, ...] = ()  # vrrp_track_process definitions it tracks
    dynamic_interfaces: bool = False  # global dynamic_interfaces: the interface may not exist
    vmac: VmacPlan | None = None  # use_vmac: the instance runs on this macvlan (vmac.py)

    @property
    def io_interface(self) -> str:
        """Where adverts are sent and received: the vmac, or ``interface``."""
        return self.vmac.io_interface if self.vmac is not None else self.interface

    @property
    def garp_interface(self) -> str:
        """Where GARP/NA go out: the vmac (the VIPs are on it), or ``interface``."""
        return self.vmac.name if self.vmac is not None else self.interface

    @classmethod
    def from_config(cls, inst: VrrpInstance, cfg: Config, *,
                    transport: str = "raw") -> InstanceSpec:
        """The one path from a loaded ``vrrp_instance`` (and its ``Config``) to what the runner
        runs. Raises ``ValueError`` naming the instance for what lvsd cannot run.
        """
        g = cfg.global_defs
        where = f"vrrp_instance {inst.name}"
        if not inst.interface:
            raise ValueError(f"{where}: no interface")
        scripts_by_name = {s.name: s for s in cfg.vrrp_scripts}
        sg = next((s for s in cfg.vrrp_sync_groups if inst.name in s.group), None)
        params = params_from_instance(inst, g, scripts=scripts_by_name, sync_group=sg)
        procs: dict[str, ProcessSpec] = {}
        for pref in (*inst.track_processes, *(sg.track_processes if sg is not None else ())):
            procs.setdefault(pref.name, spec_from_model(pref.process))
        checks: list[CheckScript] = []
        for ref in inst.track_scripts:
            vs = scripts_by_name[ref.name]
            user = vs.user or vs.script.user
            # keepalived: a script without its own user runs as script_user [script_group]
            spec = (ScriptSpec(vs.script.command, user, vs.script.group) if user
                    else ScriptSpec(vs.script.command, g.script_user, g.script_group))
            checks.append(CheckScript(ref.name, spec, vs.interval, vs.timeout))
        notifier = notifier_from_config("INSTANCE", inst, cfg)
        fam = params.family
        vmac = VmacPlan.for_instance(inst)
        return cls(
            params=params,
            interface=inst.interface,
            transport=transport,
            peers=tuple(p.address for p in inst.unicast_peers),
            src_ip=inst.unicast_src_ip or inst.mcast_src_ip,
            check_unicast_src=inst.check_unicast_src or g.vrrp_check_unicast_src,
            mcast_group=inst.mcast_group or (
                g.vrrp_mcast_group4 if fam == 4 else g.vrrp_mcast_group6),
            vips=tuple(place(vmac, vip_from_model(v)) for v in inst.virtual_ipaddresses),
            excluded=tuple(place(vmac, vip_from_model(v))
                           for v in inst.virtual_ipaddresses_excluded),
            notifier=notifier,
            scripts=tuple(checks),
            garp_interval=g.vrrp_garp_interval if fam == 4 else g.vrrp_gna_interval,
            processes=tuple(procs.values()),
            dynamic_interfaces=g.dynamic_interfaces,
            vmac=vmac,
        )


_NOTIFY_KEYWORDS = (("MASTER", "notify_master"), ("BACKUP", "notify_backup"),
                    ("FAULT", "notify_fault"), ("STOP", "notify_stop"), ("notify", "notify"),
                    ("MASTER_RX_LOWER_PRI", "notify_master_rx_lower_pri"))


def notifier_from_config(kind: str, owner: VrrpInstance | VrrpSyncGroup,
                         cfg: Config) -> Notifier:
    """The ``Notifier`` of a ``VrrpInstance`` (kind "INSTANCE") or ``VrrpSyncGroup`` ("GROUP")
    of ``Config`` ``cfg``: its notify scripts, the global notify FIFOs, and the
    global ``script_user``/``script_group`` for scripts without their own user (keepalived).
    """
    g = cfg.global_defs
    scripts = {state: ScriptSpec(sc.command, sc.user, sc.group)
               for state, attr in _NOTIFY_KEYWORDS
               if (sc := getattr(owner, attr, None)) is not None}
    fifos = tuple(f for f in (g.notify_fifo, g.vrrp_notify_fifo) if f)
    return Notifier(kind, owner.name, scripts, fifos,
                    default_user=g.script_user, default_group=g.script_group,
                    security=g.enable_script_security)


def identity(spec: InstanceSpec) -> tuple[Any, ...]:
    """What makes two specs the same VRRP instance across a reload (runner docstring); a
    changed ``use_vmac`` (name, MAC, xmit_base) too, as keepalived recreates the vmac."""
    p = spec.params
    return (spec.interface, p.vrid, p.version, p.family, spec.vmac)


def place(vmac: VmacPlan | None, vip: Vip) -> Vip:
    """The VIP on the vmac if it belongs there (``VmacPlan.place_vip``)."""
    return vmac.place_vip(vip) if vmac is not None else vip


def transport_key(spec: InstanceSpec) -> tuple[Any, ...]:
    """What a reload compares to decide whether the transport must be re-opened."""
    tr: Any = spec.transport if isinstance(spec.transport, str) else id(spec.transport)
    return (tr, spec.peers, spec.src_ip, spec.check_unicast_src, spec.mcast_group,
            spec.udp_port, spec.params.ah_key)


def vips_of(spec: InstanceSpec) -> tuple[Vip, ...]:
    """The ``Vip`` entries of ``spec`` (``vips`` None: its addresses as /32, /128)."""
    p = spec.params
    return spec.vips if spec.vips is not None else tuple(
        place(spec.vmac, Vip(str(a), 32 if a.version == 4 else 128)) for a in p.addresses)


def tracked_interfaces(specs: Iterable[InstanceSpec]) -> set[str]:
    """Interfaces whose link state the runner reads and watches: every tracked interface, and
    the instance's own with ``dynamic_interfaces`` (it may come and go)."""
    specs = list(specs)
    names = {t.name for s in specs for t in s.params.track_interfaces}
    return names | {s.interface for s in specs if s.dynamic_interfaces}


@dataclass(frozen=True, slots=True)
class RunnerSpec:
    """Everything one ``VrrpRunner`` runs: its instances and, for a ``vrrp_sync_group``, the
    group's name and notifier."""

    instances: tuple[InstanceSpec, ...]
    sync_group: str | None = None
    group_notifier: Notifier | None = None

    @classmethod
    def from_config(cls, cfg: Config, group: str | None, members: Iterable[VrrpInstance], *,
                    transport: str = "raw") -> RunnerSpec:
        """``members`` of sync group ``group`` (None: one instance outside any group)."""
        specs = tuple(InstanceSpec.from_config(i, cfg, transport=transport) for i in members)
        gnotifier = None
        if group is not None:
            sg = next(s for s in cfg.vrrp_sync_groups if s.name == group)
            gnotifier = notifier_from_config("GROUP", sg, cfg)
        return cls(specs, group, gnotifier)


def runner_groups(cfg: Config) -> dict[str, tuple[str | None, list[VrrpInstance]]]:
    """Runner key (``"group NAME"`` or the instance's name) -> (sync group or None, members),
    in file order; a group without a defined member is left out (keepalived vrrp_sync.c
    "no matching virtual router found in group declaration - removing")."""
    by_name = {i.name: i for i in cfg.vrrp_instances}
    out: dict[str, tuple[str | None, list[VrrpInstance]]] = {}
    grouped: set[str] = set()
    for sg in cfg.vrrp_sync_groups:
        members = [by_name[n] for n in sg.group if n in by_name]
        grouped.update(sg.group)
        if members:
            out[f"group {sg.name}"] = (sg.name, members)
    for inst in cfg.vrrp_instances:
        if inst.name not in grouped:
            out[inst.name] = (None, [inst])
    return out


def runner_specs(cfg: Config, *, transport: str = "raw") -> dict[str, RunnerSpec]:
    """Runner key -> ``RunnerSpec`` for every runner ``cfg`` needs (see ``runner_groups``)."""
    return {k: RunnerSpec.from_config(cfg, g, mem, transport=transport)
            for k, (g, mem) in runner_groups(cfg).items()}
