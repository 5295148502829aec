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
state machine or the other VIPs.

Options per entry (keepalived ``virtual_ipaddress`` syntax): ``dev`` (default: the instance's
interface), ``brd`` (IPv4 broadcast), ``scope`` (name or number; default global), ``label``
(IPv4 only; the kernel wants it to start with the device name). IPv6 VIPs get ``IFA_F_NODAD``
as keepalived adds them, so they are usable at once instead of after duplicate detection.
"""

from __future__ import annotations

import errno
import logging
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from ipaddress import ip_address
from typing import Any

from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    wait_fixed,
)

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
    def _index(dev: str) -> int:
        # if_nametoindex is one ioctl; pyroute2's link_lookup parses a dump of every link
        # (~7 ms here), which would sit in the failover path.
        try:
            return socket.if_nametoindex(dev)
        except OSError:
            raise LookupError(f"interface {dev!r} does not exist") from None

    async def _do(self, ipr: Any, cmd: str, vip: Vip) -> None:
        index = self._index(self.dev(vip))
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
        if self._ipr is None:
            # kept open: creating a netlink socket costs milliseconds in the failover path
            self._ipr = AsyncIPRoute()
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
                        f"{cmd} {vip.cidr} dev {self.dev(vip)}: {exc.args[-1]}")
            except (LookupError, ValueError) as exc:
                if cmd == "del" and isinstance(exc, LookupError):
                    res.ok.append(vip.cidr)  # the device is gone, so is the address
                else:
                    res.failed[vip.cidr] = f"{cmd} {vip.cidr}: {exc}"
            except OSError as exc:  # the netlink socket itself failed: reopen next time
                res.failed[vip.cidr] = f"{cmd} {vip.cidr}: netlink: {exc}"
                broken = True
        if broken:
            self.close()
        return res

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
                    index = self._index(dev)
                except LookupError:
                    continue
                async for msg in await ipr.addr("dump", index=index):
                    a = msg.get_attr("IFA_ADDRESS")
                    if a is not None:
                        have.add(f"{ip_address(a)}/{msg['prefixlen']}")
        return {v.cidr for v in self.all if v.cidr in have}
