"""Add and remove virtual IP addresses with netlink (pyroute2 ``AsyncIPRoute``).

Theory of operation
-------------------
``VipSet`` holds one instance's ``virtual_ipaddress`` and ``virtual_ipaddress_excluded``
entries (both are installed on MASTER; only the first list goes into adverts, keepalived).
``add_all()`` / ``remove_all()`` are idempotent: an address already present (EEXIST) counts as
added, one already gone (EADDRNOTAVAIL / ENOENT / ENODEV) counts as removed, so a restart
after SIGKILL (the VIP still on the interface) and a double stop both converge. Only transient
netlink errors (EBUSY, EAGAIN, ENOBUFS, EINTR) are retried (tenacity, a few ms apart); anything
else is reported in the returned ``VipResult`` and never raised, so a bad VIP cannot stop the
state machine or the other VIPs. A reported failure is the real one: the kernel's text and
errno name ("No buffer space available (ENOBUFS)"), "interface 'eth1' does not exist" only
when the kernel says so (a descriptor shortage makes ``if_nametoindex`` fail too: the
interface is then looked up over the netlink socket already open), "netlink socket: [Errno
24] Too many open files" when none can be opened. The runner hands the outcome of an add to
the machine (``machine.VipsAdded``), which decides what a MASTER without its VIPs does.

Options per entry (keepalived ``virtual_ipaddress`` syntax): ``dev`` (default: the instance's
interface), ``brd`` (IPv4 broadcast), ``scope`` (name or number; default global), ``label``
(IPv4 only; the kernel wants it to start with the device name). IPv6 VIPs get ``IFA_F_NODAD``
as keepalived adds them, so they are usable at once instead of after duplicate detection.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from ipaddress import ip_address
from typing import Any

__all__ = ["SCOPES", "Vip", "VipResult", "VipSet", "vip_from_model"]

log = logging.getLogger(__name__)

SCOPES = {"global": 0, "universe": 0, "site": 200, "link": 253, "host": 254, "nowhere": 255}
IFA_F_NODAD = 0x02
_TRANSIENT = {errno.EBUSY, errno.EAGAIN, errno.ENOBUFS, errno.EINTR}
_GONE = {errno.EADDRNOTAVAIL, errno.ENOENT, errno.ESRCH, errno.ENODEV}


@dataclass(frozen=True, slots=True)
class Vip:
    """One address to install. ``dev`` None: the instance's interface."""

    address: str
    prefixlen: int
    dev: str | None = None
    brd: str | None = None
    scope: str | int | None = None
    label: str | None = None

    @property
    def family(self) -> int:
        return ip_address(self.address).version

    @property
    def cidr(self) -> str:
        return f"{self.address}/{self.prefixlen}"


def vip_from_model(v: Any) -> Vip:
    """From ``lvsd.config.model.VirtualIp`` (duck-typed to avoid an import cycle)."""
    return Vip(v.address, v.prefixlen, v.dev, v.brd, v.scope, v.label)


@dataclass
class VipResult:
    ok: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # cidr -> reason


def _scope(s: str | int | None) -> int:
    if s is None:
        return 0
    if isinstance(s, int):
        return s
    if s.isdigit():
        return int(s)
    if s not in SCOPES:
        raise ValueError(f"unknown scope {s!r} (expected one of {', '.join(SCOPES)})")
    return SCOPES[s]


def _describe(exc: Exception) -> str:
    """A netlink error as the kernel's text with its errno name: "No buffer space available
    (ENOBUFS)"."""
    code = getattr(exc, "code", None)
    name = errno.errorcode.get(code, "") if isinstance(code, int) else ""
    text = os.strerror(code) if isinstance(code, int) and code > 0 else str(exc.args[-1])
    return f"{text} ({name})" if name else text


def _is_transient(exc: BaseException) -> bool:
    return getattr(exc, "code", None) in _TRANSIENT


class VipSet:
    """The VIPs of one instance on its interface (``ifname``)."""

    def __init__(self, ifname: str, vips: Iterable[Vip], excluded: Iterable[Vip] = (),
                 *, attempts: int = 4) -> None:
        self.ifname = ifname
        self.vips = tuple(vips)
        self.excluded = tuple(excluded)
        self.attempts = attempts
        self._ipr: Any = None

    @property
    def all(self) -> tuple[Vip, ...]:
        return self.vips + self.excluded

    def dev(self, vip: Vip) -> str:
        return vip.dev or self.ifname

    @staticmethod
    async def _index(ipr: Any, dev: str) -> int:
        """``dev``'s ifindex. if_nametoindex is one ioctl on a fresh socket (the fast path);
        it answers 0 both for a missing interface and when no socket can be opened (EMFILE,
        ENOBUFS), and Python reports both as "no interface with this name". So on a failure
        ask the kernel over the netlink socket already open (one RTM_GETLINK, no new
        descriptor): that either finds the interface or says truthfully why not."""
        from pyroute2.netlink.exceptions import NetlinkError

        try:
            return socket.if_nametoindex(dev)
        except OSError:
            pass
        try:
            links = await ipr.link("get", ifname=dev)
        except NetlinkError as exc:
            if exc.code in (errno.ENODEV, errno.ENOENT):
                raise LookupError(f"interface {dev!r} does not exist") from None
            raise
        for link in links:
            return int(link["index"])
        raise LookupError(f"interface {dev!r} does not exist")  # pragma: no cover

    async def _do(self, ipr: Any, cmd: str, vip: Vip) -> None:
        index = await self._index(ipr, self.dev(vip))
        kw: dict[str, Any] = {"index": index, "address": vip.address,
                              "prefixlen": vip.prefixlen}
        if cmd == "add":
            kw["scope"] = _scope(vip.scope)
            if vip.family == 4:
                if vip.brd:
                    kw["broadcast"] = vip.brd
                if vip.label:
                    kw["label"] = vip.label
            else:
                kw["flags"] = IFA_F_NODAD
        # imported here, like pyroute2: `lvsd check-config` reads this module, never runs this
        from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_fixed

        async for attempt in AsyncRetrying(
            retry=retry_if_exception(_is_transient),
            stop=stop_after_attempt(self.attempts),
            wait=wait_fixed(0.005),
            reraise=True,
        ):
            with attempt:
                await ipr.addr(cmd, **kw)

    async def _apply(self, cmd: str, vips: Iterable[Vip]) -> VipResult:
        from pyroute2 import AsyncIPRoute
        from pyroute2.netlink.exceptions import NetlinkError

        res = VipResult()
        vips = tuple(vips)
        if self._ipr is None:
            # kept open: creating a netlink socket costs milliseconds in the failover path
            try:
                self._ipr = AsyncIPRoute()
            except OSError as exc:  # EMFILE, ENOBUFS: every entry fails with the real reason
                for vip in vips:
                    res.failed[vip.cidr] = (
                        f"{cmd} {vip.cidr} dev {self.dev(vip)}: netlink socket: {exc}")
                return res
        ipr = self._ipr
        broken = False
        for vip in vips:
            try:
                await self._do(ipr, cmd, vip)
                res.ok.append(vip.cidr)
            except NetlinkError as exc:
                if (cmd == "add" and exc.code == errno.EEXIST) or (
                        cmd == "del" and exc.code in _GONE):
                    res.ok.append(vip.cidr)
                else:
                    res.failed[vip.cidr] = (
                        f"{cmd} {vip.cidr} dev {self.dev(vip)}: {_describe(exc)}")
            except (LookupError, ValueError) as exc:
                if cmd == "del" and isinstance(exc, LookupError):
                    res.ok.append(vip.cidr)  # the device is gone, so is the address
                else:
                    res.failed[vip.cidr] = f"{cmd} {vip.cidr}: {exc}"
            except OSError as exc:  # the netlink socket itself failed: reopen next time
                res.failed[vip.cidr] = f"{cmd} {vip.cidr} dev {self.dev(vip)}: netlink: {exc}"
                broken = True
        if broken:
            self.close()
        return res

    async def open(self) -> None:
        """Be ready for the first add before a takeover needs it (the runner calls this when
        the member's transport opens): the netlink socket open and set up by one request, the
        retry helper imported. Left to the first add, this cost 20 ms of every takeover of a
        node that had not been master since it started -- more than Skew_Time and a quarter
        of the backup's Master_Down_Interval at advert_int 0.02 (RFC 9568 §6.1: 3 x 20 ms +
        Skew_Time 12.2 ms; keepalived has its netlink socket open from the start, vrrp_netlink.c
        kernel_netlink_init). A failure here is only logged: the first add opens the socket
        again and reports the real error."""
        import tenacity  # noqa: F401  (imported for _do, off the takeover path)
        from pyroute2 import AsyncIPRoute
        from pyroute2.netlink.exceptions import NetlinkError

        if self._ipr is not None:
            return
        try:
            self._ipr = AsyncIPRoute()
            await self._ipr.link("get", index=socket.if_nametoindex(self.ifname))
        except (OSError, NetlinkError) as exc:
            log.debug("VIPs on %s: netlink socket not ready yet: %s", self.ifname, exc)
            self.close()

    def close(self) -> None:
        if self._ipr is not None:
            try:
                self._ipr.close()
            except Exception as exc:  # a broken netlink socket: dropped anyway, reopened later
                log.debug("VIPs: closing the netlink socket: %s", exc)
            self._ipr = None

    async def add_all(self) -> VipResult:
        return await self._apply("add", self.all)

    async def remove_all(self) -> VipResult:
        return await self._apply("del", self.all)

    async def add(self, vips: Iterable[Vip]) -> VipResult:
        """Add these entries (reload: the ones a master gained)."""
        return await self._apply("add", vips)

    async def remove(self, vips: Iterable[Vip]) -> VipResult:
        """Delete these entries (reload: the ones a master dropped)."""
        return await self._apply("del", vips)

    async def present(self) -> set[str]:
        """CIDRs of our VIPs currently on their devices (for tests and status)."""
        from pyroute2 import AsyncIPRoute

        have: set[str] = set()
        async with AsyncIPRoute() as ipr:
            for dev in {self.dev(v) for v in self.all}:
                try:
                    index = await self._index(ipr, dev)
                except LookupError:
                    continue
                async for msg in await ipr.addr("dump", index=index):
                    a = msg.get_attr("IFA_ADDRESS")
                    if a is not None:
                        have.add(f"{ip_address(a)}/{msg['prefixlen']}")
        return {v.cidr for v in self.all if v.cidr in have}
