"""Parameters of one VRRP instance, as the sans-IO machine needs them.

API summary
-----------
``VrrpParams``        frozen; validated in ``__post_init__`` (``ValueError`` naming the field).
``TrackedInterface``  ``track_interface`` entry (weight 0 => FAULT while down).
``TrackedScript``     ``track_script`` entry with the script's rise/fall/init_fail.
``TrackedProcess``    ``track_process`` entry (weight 0 => FAULT while the quorum is lost).
``params.expect()``   the ``codec.Expect`` a receiver should decode this instance's adverts with.
``params.ah_key``     the IPsec-AH key with ``auth_type AH`` (else None), for the transport.
``params.skew_time(priority, master_adver_int)`` / ``master_down_interval(...)``: RFC timers.
``params_from_instance(inst, globals, *, primary_address=None) -> VrrpParams``
                      from the keepalived.conf model (``lvsd.config.model.VrrpInstance``).

Theory of operation
-------------------
Timers, RFC 5798 §6.1 with keepalived's choices:

* v2 ``Skew_Time = (256 - Priority) / 256`` seconds (RFC 3768 §6.1);
* v3 ``Skew_Time = ((256 - Priority) * Master_Adver_Interval) / 256`` (RFC 5798 §6.1);
* ``Master_Down_Interval = down_timer_adverts * Master_Adver_Interval + Skew_Time``;
  ``down_timer_adverts`` is keepalived's knob, default 3 as both RFCs say.

keepalived computes the skew from the *effective* priority (tracking weights included), except
that an address owner (configured priority 255) always uses 255.

Authentication (VRRPv2 only, keepalived ``vrrp_complete_instance``): ``PASS`` (the password in
the advert) or ``AH`` (IPsec-AH sealed by the transport, ``lvsd.vrrp.ah``); an authentication
block without a password means none. The password is at most 8 bytes.

Tracking (keepalived ``vrrp_track.c``): a tracker with weight 0 puts the instance in FAULT while
it is down (or, with ``reverse``, while it is up). A non-zero weight W changes the effective
priority: W > 0 adds W while the tracker is up, W < 0 adds W while it is down; ``reverse``
negates that. The result is clipped to 1..254; an address owner's priority never changes.
The instance's own interface is tracked with weight 0 unless ``dont_track_primary``
(``params_from_instance`` adds it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import TYPE_CHECKING

from lvsd.vrrp.codec import AuthType, Expect, IPAddress

if TYPE_CHECKING:  # the config model is a sibling contract; only its types are used here
    from lvsd.config.model import GlobalDefs, TrackRef, VrrpInstance, VrrpScript, VrrpSyncGroup

__all__ = [
    "TrackedInterface",
    "TrackedProcess",
    "TrackedScript",
    "VrrpParams",
    "params_from_instance",
]

PRIO_OWNER = 255


@dataclass(frozen=True, slots=True)
class TrackedInterface:
    """``track_interface { NAME [weight W [reverse]] }``; weight 0 => FAULT while down."""

    name: str
    weight: int = 0
    reverse: bool = False

    def __post_init__(self) -> None:
        if not -253 <= self.weight <= 253:
            raise ValueError(f"track_interface {self.name}: weight {self.weight} not in -253..253")


@dataclass(frozen=True, slots=True)
class TrackedScript:
    """``track_script`` entry plus the ``vrrp_script``'s rise/fall/init_fail.

    The machine applies rise/fall to raw results exactly as keepalived does: the script starts
    in an "init" state where one result decides (``init_fail``: starts failed instead, so
    ``rise`` successes are needed); afterwards ``rise`` consecutive successes make it OK and
    ``fall`` consecutive failures make it KO.
    """

    name: str
    weight: int = 0
    reverse: bool = False
    rise: int = 1
    fall: int = 1
    init_fail: bool = False

    def __post_init__(self) -> None:
        if not -253 <= self.weight <= 253:
            raise ValueError(f"track_script {self.name}: weight {self.weight} not in -253..253")
        if self.rise < 1 or self.fall < 1:
            raise ValueError(f"vrrp_script {self.name}: rise and fall must be >= 1")


@dataclass(frozen=True, slots=True)
class TrackedProcess:
    """``track_process`` entry: weight (-254..254, keepalived) and reverse; the quorum itself
    is decided by ``process_track`` in the shell."""

    name: str
    weight: int = 0
    reverse: bool = False

    def __post_init__(self) -> None:
        if not -254 <= self.weight <= 254:
            raise ValueError(f"track_process {self.name}: weight {self.weight} not in -254..254")


@dataclass(frozen=True, slots=True)
class VrrpParams:
    """Everything a ``VrrpMachine`` needs. Times are float seconds."""

    name: str
    vrid: int
    priority: int = 100
    advert_int: float = 1.0
    version: int = 2
    addresses: tuple[IPAddress, ...] = ()
    # Our source (primary) address: used for the equal-priority tie-break (RFC 5798 §6.4.3)
    # and for decode/encode. May be None until the transport learns it
    # (``VrrpMachine.set_primary_address``).
    primary_address: IPAddress | None = None
    initial_state: str | None = None  # keepalived `state MASTER|BACKUP`; None = from priority
    preempt: bool = True
    preempt_delay: float = 0.0
    auth_type: AuthType = AuthType.NONE
    auth_pass: bytes = field(default=b"", repr=False)
    down_timer_adverts: int = 3
    garp_master_delay: float = 5.0
    garp_master_repeat: int = 5
    garp_master_refresh: float = 0.0
    garp_master_refresh_repeat: int = 1
    garp_lower_prio_delay: float | None = None  # None: garp_master_delay (keepalived man page)
    garp_lower_prio_repeat: int | None = None  # None: garp_master_repeat
    lower_prio_no_advert: bool = False
    higher_prio_send_advert: bool = False
    track_interfaces: tuple[TrackedInterface, ...] = ()
    track_scripts: tuple[TrackedScript, ...] = ()
    track_processes: tuple[TrackedProcess, ...] = ()
    notify_priority_changes: bool = False
    strict: bool = False
    unicast: bool = False  # no TTL=255 check (keepalived)
    unicast_ttl_range: tuple[int, int] | None = None
    v3_checksum_as_v2: bool = False
    old_unicast_checksum: bool = False
    transitions_kept: int = 32  # how many transitions the status page sees

    def __post_init__(self) -> None:
        where = f"vrrp_instance {self.name}"
        if self.version not in (2, 3):
            raise ValueError(f"{where}: version must be 2 or 3, not {self.version}")
        if not 1 <= self.vrid <= 255:
            raise ValueError(f"{where}: virtual_router_id must be 1..255, not {self.vrid}")
        if not 1 <= self.priority <= 255:
            raise ValueError(f"{where}: priority must be 1..255, not {self.priority}")
        if self.version == 2:
            if self.advert_int != int(self.advert_int) or not 1 <= self.advert_int <= 255:
                raise ValueError(
                    f"{where}: VRRPv2 advert_int must be whole seconds 1..255, "
                    f"not {self.advert_int}"
                )
        else:
            centis = self.advert_int * 100
            if abs(centis - round(centis)) > 1e-6 or not 1 <= round(centis) <= 4095:
                raise ValueError(
                    f"{where}: VRRPv3 advert_int must be a multiple of 0.01 in 0.01..40.95, "
                    f"not {self.advert_int}"
                )
        fams = {a.version for a in self.addresses}
        if self.primary_address is not None:
            fams.add(self.primary_address.version)
        if len(fams) > 1:
            raise ValueError(f"{where}: addresses and primary address mix IPv4 and IPv6")
        if self.version == 2 and 6 in fams:
            raise ValueError(f"{where}: IPv6 needs VRRP version 3 (RFC 5798)")
        if len(self.addresses) > 255:
            raise ValueError(f"{where}: at most 255 virtual addresses fit an advert")
        if self.initial_state not in (None, "MASTER", "BACKUP"):
            raise ValueError(f"{where}: state must be MASTER or BACKUP, not {self.initial_state}")
        if self.preempt_delay < 0 or not math.isfinite(self.preempt_delay):
            raise ValueError(f"{where}: preempt_delay must be >= 0")
        if self.down_timer_adverts < 1:
            raise ValueError(f"{where}: down_timer_adverts must be >= 1")
        if self.auth_type != AuthType.NONE and self.version != 2:
            raise ValueError(f"{where}: authentication exists only in VRRPv2")
        for v, n in (
            (self.garp_master_delay, "garp_master_delay"),
            (self.garp_master_refresh, "garp_master_refresh"),
        ):
            if v < 0 or not math.isfinite(v):
                raise ValueError(f"{where}: {n} must be >= 0")
        if self.transitions_kept < 1:
            raise ValueError(f"{where}: transitions_kept must be >= 1")

    # ----------------------------------------------------------------- derived values
    @property
    def family(self) -> int:
        if self.addresses:
            return self.addresses[0].version
        if self.primary_address is not None:
            return self.primary_address.version
        return 4

    @property
    def is_owner(self) -> bool:
        return self.priority == PRIO_OWNER

    @property
    def lower_prio_delay(self) -> float:
        d = self.garp_lower_prio_delay
        return self.garp_master_delay if d is None else d

    @property
    def lower_prio_repeat(self) -> int:
        r = self.garp_lower_prio_repeat
        return self.garp_master_repeat if r is None else r

    def skew_time(self, priority: int, master_adver_int: float) -> float:
        """RFC 3768 §6.1 (v2) / RFC 5798 §6.1 (v3) Skew_Time for ``priority``."""
        if self.is_owner:
            priority = PRIO_OWNER
        if self.version == 2:
            return (256 - priority) / 256
        return ((256 - priority) * master_adver_int) / 256

    def master_down_interval(self, priority: int, master_adver_int: float) -> float:
        """``down_timer_adverts × Master_Adver_Interval + Skew_Time`` (RFC 5798 §6.1)."""
        return self.down_timer_adverts * master_adver_int + self.skew_time(
            priority, master_adver_int
        )

    @property
    def ah_key(self) -> bytes | None:
        """The IPsec-AH key (the password as keepalived pads it) with ``auth_type AH``, else
        None. The transport seals and verifies AH packets with it (``lvsd.vrrp.ah``)."""
        if self.auth_type != AuthType.AH:
            return None
        return self.auth_pass[:8].ljust(8, b"\x00")

    def expect(self) -> Expect:
        """How to decode adverts addressed to this instance."""
        return Expect(
            version=self.version,
            vrid=self.vrid,
            auth_type=self.auth_type,
            auth_pass=self.auth_pass,
            advert_int=self.advert_int if self.version == 2 else None,
            addresses=self.addresses,
            strict=self.strict,
            check_ttl=not self.unicast,
            ttl_range=self.unicast_ttl_range,
            v3_checksum_as_v2=self.v3_checksum_as_v2,
            old_unicast_checksum=self.old_unicast_checksum,
            # an AH packet's ICV covers every byte: keepalived allows no trailing padding
            allow_padding=self.auth_type != AuthType.AH,
        )


# --------------------------------------------------------------------- from the config model


def params_from_instance(
    inst: VrrpInstance,
    globals_: GlobalDefs | None = None,
    *,
    scripts: dict[str, VrrpScript] | None = None,
    primary_address: IPAddress | str | None = None,
    sync_group: VrrpSyncGroup | None = None,
) -> VrrpParams:
    """Build ``VrrpParams`` from a resolved ``lvsd.config.model.VrrpInstance``.

    ``scripts`` maps vrrp_script names to their definitions (for weight/rise/fall/init_fail;
    an unknown name raises ``ValueError`` naming the instance and position). The instance's own
    interface is tracked with weight 0 unless ``dont_track_primary`` (keepalived). The primary
    address is ``primary_address`` if given, else ``unicast_src_ip``/``mcast_src_ip``, else
    None (the transport sets it once it knows the interface address).

    ``sync_group`` (the group this instance belongs to, if any): its track_interface /
    track_script entries apply to every member, and — as keepalived does unless the group sets
    ``sync_group_tracking_weight`` — weights are not used inside a sync group: a weighted
    tracked interface becomes weight 0 (FAULT when down) and a weighted script is ignored.
    """
    where = f"vrrp_instance {inst.name} ({inst.pos})"
    try:
        addresses = tuple(ip_address(v.address) for v in inst.virtual_ipaddresses)
        prim: IPAddress | None
        src = primary_address or inst.unicast_src_ip or inst.mcast_src_ip
        prim = (
            src if isinstance(src, IPv4Address | IPv6Address) else ip_address(src) if src else None
        )
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    ifaces: list[TrackedInterface] = []
    if inst.interface and not inst.dont_track_primary:
        ifaces.append(TrackedInterface(inst.interface, 0))
    if_refs: list[TrackRef] = list(inst.track_interfaces)
    sc_refs: list[TrackRef] = list(inst.track_scripts)
    no_weights = False
    if sync_group is not None:
        if_refs += sync_group.track_interfaces
        sc_refs += sync_group.track_scripts
        no_weights = not (sync_group.sync_group_tracking_weight or sync_group.global_tracking)
    for ref in if_refs:
        if any(t.name == ref.name for t in ifaces):
            continue
        weight = 0 if no_weights else (ref.weight or 0)
        ifaces.append(TrackedInterface(ref.name, weight, ref.reverse))
    tscripts: list[TrackedScript] = []
    for ref in sc_refs:
        vs = (scripts or {}).get(ref.name)
        if vs is None and sync_group is not None and ref in sync_group.track_scripts:
            continue  # keepalived: "track script %s not found, ignoring..." (reported at load)
        if vs is None:
            raise ValueError(f"{where}: track_script {ref.name} has no vrrp_script definition")
        weight = vs.weight if ref.weight is None else ref.weight
        if weight and no_weights:
            continue  # keepalived: "ignoring tracked script with weights due to SYNC group"
        reverse = ref.reverse or (ref.weight is None and vs.weight_reverse)
        tscripts.append(
            TrackedScript(ref.name, weight, reverse, vs.rise, vs.fall, vs.init_fail)
        )
    auth_type = {"PASS": AuthType.PASS, "AH": AuthType.AH}.get(inst.auth_type or "",
                                                              AuthType.NONE)
    if inst.version == 3:
        auth_type = AuthType.NONE  # keepalived: "VRRP version 3 does not support authentication"
    if not inst.auth_pass:
        # keepalived vrrp.c vrrp_complete_instance: "Authentication specified but no password
        # given. Ignoring"
        auth_type = AuthType.NONE
    tprocs: list[TrackedProcess] = []
    for pref in (*inst.track_processes,
                 *(sync_group.track_processes if sync_group is not None else ())):
        # keepalived vrrp.c add_vrrp_to_track_process: on both instance and group, the group's
        # weight is used unless the instance's is 0
        prev = next((i for i, t in enumerate(tprocs) if t.name == pref.name), None)
        if prev is not None:
            if tprocs[prev].weight:
                tprocs[prev] = TrackedProcess(pref.name, pref.weight, tprocs[prev].reverse)
            continue
        tprocs.append(TrackedProcess(pref.name, pref.weight, pref.reverse))
    # keepalived vrrp.c: the instance's setting, else its sync group's, else the global one
    npc = inst.notify_priority_changes
    if npc is None and sync_group is not None:
        npc = sync_group.notify_priority_changes
    if npc is None:
        npc = bool(globals_ and globals_.vrrp_notify_priority_changes)
    strict = bool(inst.strict_mode) or bool(globals_ and globals_.vrrp_strict)
    initial = inst.state.value if inst.state is not None else None
    # keepalived clears nopreempt and preempt_delay when the initial state is MASTER
    # ("nopreempt will not work with initial state MASTER - clearing").
    preempt = not inst.nopreempt or initial == "MASTER"
    preempt_delay = 0.0 if initial == "MASTER" else inst.preempt_delay
    try:
        return VrrpParams(
            name=inst.name,
            vrid=inst.virtual_router_id,
            priority=inst.priority,
            advert_int=inst.advert_int,
            version=inst.version,
            addresses=addresses,
            primary_address=prim,
            initial_state=initial,
            preempt=preempt,
            preempt_delay=preempt_delay,
            auth_type=auth_type,
            auth_pass=(inst.auth_pass or "").encode()[:8],
            down_timer_adverts=inst.down_timer_adverts,
            garp_master_delay=inst.garp_master_delay,
            garp_master_repeat=inst.garp_master_repeat,
            garp_master_refresh=inst.garp_master_refresh,
            garp_master_refresh_repeat=inst.garp_master_refresh_repeat,
            garp_lower_prio_delay=inst.garp_lower_prio_delay,
            garp_lower_prio_repeat=inst.garp_lower_prio_repeat,
            lower_prio_no_advert=inst.lower_prio_no_advert or strict,
            higher_prio_send_advert=inst.higher_prio_send_advert and not strict,
            track_interfaces=tuple(ifaces),
            track_scripts=tuple(tscripts),
            track_processes=tuple(tprocs),
            notify_priority_changes=npc,
            strict=strict,
            unicast=bool(inst.unicast_peers),
        )
    except ValueError as exc:
        raise ValueError(f"{exc} ({inst.pos})") from None
