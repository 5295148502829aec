"""keepalived's VRRP virtual MAC interfaces: ``use_vmac`` and ``vmac_xmit_base``.

Theory of operation
-------------------
With ``use_vmac [NAME] [MAC]`` an instance runs on a macvlan interface it creates on its
``interface`` (the *base*): default name ``vrrp.VRID``, MAC ``00:00:5e:00:01:VRID`` (IPv4) or
``00:00:5e:00:02:VRID`` (IPv6), RFC 5798 §7.3's virtual router MAC, mode *private*. The VIPs
go on the vmac, so neighbours learn the virtual MAC for them and keep it across a failover:
the new master's vmac has the same MAC, its gratuitous ARPs only move the switch's FDB entry.
Everything here follows keepalived 2.2.7 (files named beside each rule).

The decisions are pure data (this module's sans-IO part, tested without a kernel):

* ``vmac_address`` / ``parse_vmac_mac``: the MAC, or a configured one (vrrp_parser.c
  vrrp_vmac_handler: at most 6 octets, not multicast, not an RFC 5798 address; 5 octets end
  with the VRID).
* ``vmac_name``: the default name (vrrp.c create_vmac_name: ``vrrp.VRID``, then ``vrrp1.VRID``,
  ``vrrp2.VRID`` ... when in use; IPv6 tries ``vrrp6.VRID`` first), ``dev_name_valid`` the
  kernel's rule for a configured one.
* ``VmacPlan``: one instance's vmac. ``io_interface`` is where adverts are sent and received
  (the vmac; the base with ``vmac_xmit_base``: vrrp_scheduler.c vrrp_open_sockets picks
  ``configured_ifp`` then); the advert's source address is the base's (keepalived builds the
  IPv4 header from ``IF_ADDR(configured_ifp)``, vrrp.h VRRP_PKT_SADDR; IPv6 sends from a
  link-local address added to the vmac, vrrp_vmac.c set_link_local_address). ``place_vip``:
  a VIP of the instance's family with no ``dev`` or ``dev`` = base goes on the vmac (vrrp.c
  vrrp_complete_instance), the others stay. GARP/NA go out on the vmac (the VIPs' interface:
  vrrp.c vrrp_send_link_update), so they carry the virtual MAC.
* the sysctls (vrrp_if_config.c): on an IPv4 vmac ``arp_ignore=1 accept_local=1 rp_filter=0
  promote_secondaries=1``; on its base ``arp_ignore=1 arp_filter=1`` (the VIP must be answered
  by the vmac only), restored when the last vmac on that base goes (``SysctlLedger``,
  reference counted as keepalived's ``reset_arp_config``). ``rp_filter=0`` on the vmac works
  only with ``net.ipv4.conf.all.rp_filter=0``: if it is not, keepalived raises
  ``default.rp_filter`` and each interface's to the ``all`` value and then sets ``all`` to 0
  (clear_rp_filter), and puts everything back at shutdown (restore_rp_filter; lvsd: when the
  last vmac of the process goes, which at a daemon stop is the same moment). IPv6 is disabled
  on an IPv4 vmac unless the instance has excluded VIPs of the other family, and
  ``addr_gen_mode`` is "none" (no EUI-64 link-local from the virtual MAC, RFC 5798 §7.4).

The vmac is created and brought up when the instance starts, in every state (vrrp.c
vrrp_complete_instance calls netlink_link_add_vmac, which always sets IFF_UP; a BACKUP's vmac
is up with no address), an existing one with the right base, MAC and mode is adopted, one with
a wrong MAC or mode is updated, a macvlan on another base is replaced, any other interface of
that name is an error (vrrp_vmac.c netlink_link_add_vmac). It is deleted when the instance
stops or is removed by a reload, unless another instance still uses it (vrrp.c
shutdown_vrrp_instances, clear_diff_vrrp).

``VmacLink`` is the thin shell: netlink (pyroute2) for the link and the link-local address,
``/proc/sys`` for the sysctls of the current network namespace.

Not done: ``use_vmac_addr`` (extra vmacs for VIPs on other interfaces), ``use_ipvlan``,
``vmac_prefix``/``vmac_addr_prefix``, ``vrrp_garp_extra_if``/``garp_extra_if``; lvsd does not
recreate a vmac deleted by hand while it runs (keepalived does when the link comes back).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from ipaddress import IPv6Address, ip_address
from typing import Any, TypeVar

__all__ = [
    "BASE_SYSCTLS",
    "ParsedMac",
    "SysctlLedger",
    "VmacError",
    "VmacLink",
    "VmacPlan",
    "dev_name_valid",
    "link_local_from_mac",
    "parse_vmac_mac",
    "vmac_address",
    "vmac_name",
]

log = logging.getLogger(__name__)

IFNAMSIZ = 16  # linux/if.h, the terminating NUL included
ETH_ALEN = 6
RFC5798_PREFIX = bytes((0x00, 0x00, 0x5E, 0x00))  # vrrp_vmac.c ll_addr
MACVLAN_MODE_PRIVATE = 1  # linux/if_link.h
IFA_F_NODAD = 0x02
IFF_UP = 0x1

# vrrp_if_config.c vmac_sysctl / parent_sysctl (net.ipv4.conf.IF.*)
VMAC_SYSCTLS: tuple[tuple[str, int], ...] = (
    ("arp_ignore", 1), ("accept_local", 1), ("rp_filter", 0), ("promote_secondaries", 1))
BASE_SYSCTLS: tuple[tuple[str, int], ...] = (("arp_ignore", 1), ("arp_filter", 1))

_V = TypeVar("_V")


class VmacError(RuntimeError):
    """The vmac interface cannot be set up; the message is keepalived's."""


# ---------------------------------------------------------------------------- pure decisions


def dev_name_valid(name: str) -> bool:
    """The kernel's interface-name rule (net/core/dev.c dev_valid_name, as vrrp_parser.c
    copies it): 1..15 bytes, not "." or "..", no "/", ":" or white space."""
    if not name or len(name.encode()) >= IFNAMSIZ or name in (".", ".."):
        return False
    return not any(ch in "/:" or ch.isspace() for ch in name)


def vmac_address(vrid: int, family: int) -> str:
    """RFC 5798 §7.3 virtual router MAC: 00:00:5e:00:01:VRID (IPv4), 00:00:5e:00:02:VRID."""
    return (RFC5798_PREFIX + bytes((0x02 if family == 6 else 0x01, vrid & 0xFF))).hex(":")


@dataclass(frozen=True, slots=True)
class ParsedMac:
    """A ``use_vmac`` MAC argument: the octets, or ``error`` (keepalived's message)."""

    mac: bytes = b""
    use_vrid: bool = False  # 5 octets given: the sixth is the VRID
    error: str | None = None

    def with_vrid(self, vrid: int) -> str:
        return (self.mac[:5] + bytes((vrid & 0xFF,)) if self.use_vrid else self.mac).hex(":")


def parse_vmac_mac(text: str) -> ParsedMac:
    """Parse a MAC given to ``use_vmac`` (vrrp_parser.c vrrp_vmac_handler)."""
    if text.strip("0123456789ABCDEFabcdef:"):
        return ParsedMac(error=f"VMAC invalid MAC address {text}")
    ignored = ParsedMac(error=f"VMAC invalid MAC address {text} - ignored")
    parts = text.split(":")
    use_vrid = False
    octets: list[int] = []
    for j in range(ETH_ALEN):  # the strtoul loop: 1-2 hex digits per octet
        if j >= len(parts) or not 1 <= len(parts[j]) <= 2:
            return ignored
        octets.append(int(parts[j], 16))
        rest = parts[j + 1:]
        if j == ETH_ALEN - 2 and rest in ([], [""]):
            use_vrid = True  # "a:b:c:d:e" or "a:b:c:d:e:": the sixth octet is the VRID
            octets.append(0)
            break
        if j < ETH_ALEN - 2 and not rest:
            return ignored
    mac = bytes(octets)
    if mac[0] & 0x01:
        return ParsedMac(error=f"VMAC MAC address is multicast {text} - ignoring")
    if mac[:4] == RFC5798_PREFIX and mac[4] in (0x01, 0x02):
        return ParsedMac(error=f"VMAC MAC address not allowed to be RFC5798 address ({text}) "
                               "- ignoring")
    return ParsedMac(mac, use_vrid)


def vmac_name(vrid: int, family: int, taken: Sequence[str] | set[str] = (),
              prefix: str = "vrrp") -> str:
    """A free default vmac name (vrrp.c create_vmac_name): ``PREFIX.VRID``, then
    ``PREFIXn.VRID`` for n = 1, 2, ... (IPv6: 6 first, then 1..5, 7, ...), the prefix cut so
    the name fits IFNAMSIZ."""
    def fit(num: str) -> str:
        name = f"{prefix}{num}.{vrid}"
        if len(name) >= IFNAMSIZ:
            cut = len(prefix) - (len(name) - IFNAMSIZ) - 1
            name = f"{prefix[:max(cut, 0)]}{num}.{vrid}"
        return name

    used = set(taken)
    name = fit("")
    num = 0
    while name in used:
        if family == 6:
            if num == 0:
                num = 6
            elif num == 6:
                num = 1
            else:
                num += 1
                if num == 6:
                    num += 1
        else:
            num += 1
        name = fit(str(num))
    return name


def link_local_from_mac(mac: bytes) -> IPv6Address:
    """fe80::/64 EUI-64 address of ``mac`` (vrrp_vmac.c make_link_local_address)."""
    eui = bytes((mac[0] ^ 0x02, mac[1], mac[2], 0xFF, 0xFE, mac[3], mac[4], mac[5]))
    return IPv6Address(bytes.fromhex("fe80000000000000") + eui)


@dataclass(frozen=True, slots=True)
class VmacPlan:
    """One instance's vmac, as data. ``mac`` is "aa:bb:..."; ``instance`` names it in log
    lines only (a renamed instance keeps its vmac on reload)."""

    instance: str = field(compare=False)
    name: str
    base: str
    mac: str
    family: int
    vrid: int
    xmit_base: bool = False
    other_family_vips: bool = False  # eVIPs of the other family (keep IPv6 on an IPv4 vmac)
    source: str | None = None  # a configured IPv6 source (mcast_src_ip / unicast_src_ip)

    @classmethod
    def for_instance(cls, inst: Any) -> VmacPlan | None:
        """From ``lvsd.config.model.VrrpInstance`` (duck-typed); None without ``use_vmac``."""
        if not inst.use_vmac or not inst.interface:
            return None
        fam = inst.family
        other = any(v.family != fam for v in inst.virtual_ipaddresses_excluded)
        mac = getattr(inst, "vmac_mac", None) or vmac_address(inst.virtual_router_id, fam)
        src = inst.unicast_src_ip or inst.mcast_src_ip
        return cls(inst.name, inst.use_vmac, inst.interface, mac.lower(), fam,
                   inst.virtual_router_id, bool(getattr(inst, "vmac_xmit_base", False)),
                   other, src if src and ip_address(src).version == 6 else None)

    @property
    def io_interface(self) -> str:
        """Where adverts are sent and received (vrrp_scheduler.c vrrp_open_sockets)."""
        return self.base if self.xmit_base else self.name

    @property
    def mac_bytes(self) -> bytes:
        return bytes.fromhex(self.mac.replace(":", ""))

    def place_vip(self, vip: _V) -> _V:
        """The VIP with the device it goes on (vrrp.c vrrp_complete_instance: same family and
        no dev / dev = base -> the vmac; anything else unchanged)."""
        dev = getattr(vip, "dev", None)
        if getattr(vip, "family", None) == self.family and dev in (None, self.base):
            return replace(vip, dev=self.name)  # type: ignore[type-var]
        return vip

    def vmac_sysctls(self) -> tuple[tuple[str, int], ...]:
        """net.ipv4.conf.<vmac>.* to set (IPv4 instances only: vrrp_vmac.c)."""
        return VMAC_SYSCTLS if self.family == 4 else ()

    @property
    def ipv6_enabled(self) -> bool:
        """vrrp_vmac.c: IPv6 off on an IPv4 vmac unless eVIPs of the other family."""
        return self.family == 6 or self.other_family_vips

    @property
    def wants_link_local(self) -> bool:
        """An IPv6 vmac that sends adverts gets a link-local address (set_link_local_address)."""
        return self.family == 6 and not self.xmit_base

    def link_local(self, base_link_local: IPv6Address | None, base_mac: bytes) -> IPv6Address:
        """The configured IPv6 source, else the base's link-local, else the EUI-64 of the
        base's MAC (vrrp_vmac.c set_link_local_address)."""
        if self.source:
            return IPv6Address(self.source)
        if base_link_local is not None:
            return base_link_local
        return link_local_from_mac(base_mac)


@dataclass
class SysctlLedger:
    """What lvsd changed in net.ipv4.conf and must put back (keepalived keeps the same per
    base interface and globally: vrrp_if_config.c). Pure: fed the values read, returns the
    (path, value) writes; paths are relative to /proc/sys/net/ipv4/conf."""

    base_refs: dict[str, int] = field(default_factory=dict)
    base_saved: dict[str, dict[str, int]] = field(default_factory=dict)
    users: int = 0  # vmacs set up by this process (rp_filter is restored when none is left)
    all_rp_filter: int | None = None  # saved net.ipv4.conf.all.rp_filter when we cleared it
    default_rp_filter: int | None = None
    if_rp_filter: dict[str, int] = field(default_factory=dict)  # interfaces we raised

    def clear_rp_filter(self, all_value: int | None, default_value: int | None,
                        interfaces: Mapping[str, int]) -> list[tuple[str, int, str | None]]:
        """vrrp_if_config.c clear_rp_filter: (path, value, log message) writes."""
        self.users += 1
        if self.all_rp_filter is not None or not all_value:
            return []
        self.all_rp_filter = all_value
        out: list[tuple[str, int, str | None]] = []
        if default_value is not None and default_value < all_value:
            out.append(("default/rp_filter", all_value,
                        f"NOTICE: setting sysctl net.ipv4.conf.default.rp_filter from "
                        f"{default_value} to {all_value}"))
            self.default_rp_filter = default_value
        for name, val in sorted(interfaces.items()):
            if name in ("all", "default"):
                continue
            if val < all_value:
                out.append((f"{name}/rp_filter", all_value, None))
                self.if_rp_filter[name] = val
        out.append(("all/rp_filter", 0, f"NOTICE: setting sysctl net.ipv4.conf.all.rp_filter "
                                        f"from {all_value} to 0"))
        return out

    def restore_rp_filter(self, read: Mapping[str, int | None]
                          ) -> list[tuple[str, int, str | None]]:
        """vrrp_if_config.c restore_rp_filter, once the last vmac is gone: puts back what we
        changed, but only where the value is still what we set. ``read``: path -> value."""
        self.users = max(0, self.users - 1)
        if self.users or self.all_rp_filter is None:
            return []
        saved = self.all_rp_filter
        out: list[tuple[str, int, str | None]] = []
        if read.get("all/rp_filter") == 0:
            out.append(("all/rp_filter", saved,
                        f"NOTICE: resetting sysctl net.ipv4.conf.all.rp_filter to {saved}"))
        if self.default_rp_filter is not None and read.get("default/rp_filter") == saved:
            out.append(("default/rp_filter", self.default_rp_filter,
                        f"NOTICE: resetting sysctl net.ipv4.conf.default.rp_filter to "
                        f"{self.default_rp_filter}"))
        for name, val in sorted(self.if_rp_filter.items()):
            if read.get(f"{name}/rp_filter") == saved:
                out.append((f"{name}/rp_filter", val, None))
        self.all_rp_filter = self.default_rp_filter = None
        self.if_rp_filter = {}
        return out

    def rp_filter_paths(self) -> list[str]:
        """What ``restore_rp_filter`` needs read."""
        return ["all/rp_filter", "default/rp_filter",
                *(f"{n}/rp_filter" for n in sorted(self.if_rp_filter))]

    def set_base(self, base: str, current: Mapping[str, int | None]
                 ) -> list[tuple[str, int, str | None]]:
        """vrrp_if_config.c set_interface_parameters, the base part: arp_ignore=1 and
        arp_filter=1 unless already so; the old values are saved once per base."""
        if self.base_refs.get(base):
            self.base_refs[base] += 1
            return []
        if all(current.get(k) == v for k, v in BASE_SYSCTLS):
            return []  # nothing to change, nothing to restore (reset_arp_config stays 0)
        self.base_saved[base] = {k: int(current.get(k) or 0) for k, _ in BASE_SYSCTLS}
        self.base_refs[base] = 1
        return [(f"{base}/{k}", v, None) for k, v in BASE_SYSCTLS if current.get(k) != v]

    def reset_base(self, base: str) -> list[tuple[str, int, str | None]]:
        """reset_interface_parameters: the saved values back when the last vmac goes."""
        n = self.base_refs.get(base, 0)
        if not n:
            return []
        if n > 1:
            self.base_refs[base] = n - 1
            return []
        del self.base_refs[base]
        saved = self.base_saved.pop(base, {})
        return [(f"{base}/{k}", v, None) for k, v in saved.items()]


LEDGER = SysctlLedger()  # one per process: every runner's vmacs share the base interfaces


# ---------------------------------------------------------------------------- the I/O shell

_SYSCTL_ROOT = "/proc/sys/net"


def read_sysctl(path: str, root: str = f"{_SYSCTL_ROOT}/ipv4/conf") -> int | None:
    try:
        with open(f"{root}/{path}") as fh:
            return int(fh.read().strip() or "0")
    except (OSError, ValueError):
        return None


def write_sysctl(path: str, value: int, root: str = f"{_SYSCTL_ROOT}/ipv4/conf") -> bool:
    try:
        with open(f"{root}/{path}", "w") as fh:
            fh.write(str(value))
    except OSError as exc:
        log.info("Unable to set sysctl %s/%s to %d: %s", root, path, value, exc.strerror)
        return False
    return True


def _apply(writes: Sequence[tuple[str, int, str | None]]) -> None:
    for path, value, message in writes:
        if message:
            log.info("%s", message)
        write_sysctl(path, value)


def _link_kind(msg: Any) -> tuple[str | None, int | None]:
    info = msg.get_attr("IFLA_LINKINFO")
    if info is None:
        return None, None
    kind = info.get_attr("IFLA_INFO_KIND")
    mode: Any = None
    data = info.get_attr("IFLA_INFO_DATA")
    if kind == "macvlan" and data is not None and hasattr(data, "get_attr"):
        mode = data.get_attr("IFLA_MACVLAN_MODE")
    if isinstance(mode, str):
        mode = MACVLAN_MODE_PRIVATE if mode == "private" else -1
    return kind, mode


class VmacLink:
    """Creates, adopts and deletes one instance's vmac in the current network namespace."""

    def __init__(self, plan: VmacPlan, ledger: SysctlLedger | None = None) -> None:
        self.plan = plan
        self.ledger = ledger if ledger is not None else LEDGER
        self.ifindex = 0
        self.ours = False  # created or adopted by us: ``down`` deletes it
        self._sysctls_set = False

    async def up(self) -> int:
        """Create (or adopt / update) the vmac, set its sysctls, bring it up; its ifindex.

        Raises ``VmacError`` (keepalived's message) when it cannot."""
        from pyroute2 import AsyncIPRoute
        from pyroute2.netlink.exceptions import NetlinkError

        p = self.plan
        iname = p.instance
        async with AsyncIPRoute() as ipr:
            base_idx = await ipr.link_lookup(ifname=p.base)
            if not base_idx:
                raise VmacError(f"({iname}) interface {p.base} for VMAC {p.name} does not exist")
            base = base_idx[0]
            create, update = True, False
            existing = await ipr.link_lookup(ifname=p.name)
            try:
                if existing:
                    idx = existing[0]
                    msg = (await ipr.link("get", index=idx))[0]
                    kind, mode = _link_kind(msg)
                    if kind != "macvlan":
                        raise VmacError(f"VMAC {p.name} conflicts with existing interface")
                    if msg.get_attr("IFLA_LINK") != base:
                        # vrrp_vmac.c netlink_link_add_vmac
                        log.info("(%s) Removing old VMAC interface %s due to conflicting "
                                 "interface", iname, p.name)
                        await ipr.link("del", index=idx)
                    elif (str(msg.get_attr("IFLA_ADDRESS")).lower() != p.mac
                          or mode != MACVLAN_MODE_PRIVATE):
                        log.info("(%s) Update old VMAC interface %s due to wrong MAC/mode ",
                                 iname, p.name)
                        update = True
                    else:
                        create = False
                if create and not update:
                    await ipr.link("add", ifname=p.name, kind="macvlan", link=base,
                                   macvlan_mode="private", address=p.mac)
                elif update:
                    await ipr.link("set", index=existing[0], address=p.mac)
                    await ipr.link("set", index=existing[0], kind="macvlan",
                                   macvlan_mode="private")
            except NetlinkError as exc:
                raise VmacError(f"({iname}): Unable to create VMAC interface {p.name}: "
                                f"{exc.args[-1]}") from None
            if create:
                log.info("(%s): Success %s VMAC interface %s", iname,
                         "updating" if update else "creating", p.name)
            found = await ipr.link_lookup(ifname=p.name)
            if not found:
                raise VmacError(f"({iname}): Unable to create VMAC interface {p.name}")
            self.ifindex = found[0]
            self.ours = True
            if p.family == 4 and create:
                # vrrp_vmac.c: set_interface_parameters(ifp, ifp->base_ifp)
                self._set_sysctls()
            v6 = f"{_SYSCTL_ROOT}/ipv6/conf"
            if read_sysctl(f"{p.name}/disable_ipv6", v6) is not None:
                write_sysctl(f"{p.name}/disable_ipv6", 0 if p.ipv6_enabled else 1, v6)
                write_sysctl(f"{p.name}/addr_gen_mode", 1, v6)  # IN6_ADDR_GEN_MODE_NONE
            await ipr.link("set", index=self.ifindex, state="up")
            if p.wants_link_local:
                await self._add_link_local(ipr, base)
        return self.ifindex

    def _set_sysctls(self) -> None:
        p = self.plan
        if self._sysctls_set:  # recreated (its base came back): the ledger already counts us
            for k, v in p.vmac_sysctls():
                write_sysctl(f"{p.name}/{k}", v)
            if p.base in self.ledger.base_refs:
                for k, v in BASE_SYSCTLS:
                    write_sysctl(f"{p.base}/{k}", v)
            return
        conf = f"{_SYSCTL_ROOT}/ipv4/conf"
        names: dict[str, int] = {}
        with contextlib.suppress(OSError):
            for n in os.listdir(conf):
                rp = read_sysctl(f"{n}/rp_filter")
                if rp is not None:
                    names[n] = rp
        _apply(self.ledger.clear_rp_filter(read_sysctl("all/rp_filter"),
                                           read_sysctl("default/rp_filter"), names))
        for k, v in p.vmac_sysctls():
            write_sysctl(f"{p.name}/{k}", v)
        current = {k: read_sysctl(f"{p.base}/{k}") for k, _ in BASE_SYSCTLS}
        writes = self.ledger.set_base(p.base, current)
        if writes:
            log.debug("(%s) base %s: setting arp_ignore/arp_filter for VMAC %s", p.instance,
                      p.base, p.name)
        _apply(writes)
        self._sysctls_set = True

    async def _add_link_local(self, ipr: Any, base: int) -> None:
        from pyroute2.netlink.exceptions import NetlinkError

        p = self.plan
        base_ll: IPv6Address | None = None
        async for msg in await ipr.addr("dump", index=base):
            a = msg.get_attr("IFA_ADDRESS")
            if base_ll is None and a and msg["family"] == socket.AF_INET6 \
                    and IPv6Address(a.split("%")[0]).is_link_local:
                base_ll = IPv6Address(a.split("%")[0])
        base_mac = b"\x00" * 6
        msg = (await ipr.link("get", index=base))[0]
        if msg.get_attr("IFLA_ADDRESS"):
            base_mac = bytes.fromhex(str(msg.get_attr("IFLA_ADDRESS")).replace(":", ""))
        addr = p.link_local(base_ll, base_mac)
        try:
            await ipr.addr("add", index=self.ifindex, address=str(addr), prefixlen=64,
                           flags=IFA_F_NODAD)
        except NetlinkError as exc:
            if exc.code != errno.EEXIST:
                log.info("(%s) adding link-local address to %s failed", p.instance, p.name)

    async def down(self) -> None:
        """Delete the vmac (if ours) and put the base's sysctls back (netlink_link_del_vmac)."""
        from pyroute2 import AsyncIPRoute
        from pyroute2.netlink.exceptions import NetlinkError

        p = self.plan
        if self._sysctls_set:
            self._sysctls_set = False
            _apply(self.ledger.reset_base(p.base))
            read = {path: read_sysctl(path) for path in self.ledger.rp_filter_paths()}
            _apply(self.ledger.restore_rp_filter(read))
        if not self.ours:
            return
        self.ours = False
        async with AsyncIPRoute() as ipr:
            found = await ipr.link_lookup(ifname=p.name)
            if not found:
                return
            try:
                await ipr.link("del", index=found[0])
            except NetlinkError as exc:
                if exc.code not in (errno.ENODEV, errno.ENOENT):
                    log.info("(%s) Error removing VMAC interface %s", p.instance, p.name)
                return
        log.info("(%s) Success removing VMAC interface %s", p.instance, p.name)
