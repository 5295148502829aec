"""Is a director healthy enough to announce a virtual address? (sans-IO)

Theory of operation
-------------------
:func:`derive` turns what the daemon knows into one verdict and one reason per ``bgp_announce``
block; :class:`lvsd.bgp.announce.Announcer` then applies the rise/fall delays. The inputs, all
plain values the shell gathers on each pass:

* the pool's last plan (:class:`lvsd.pool.planner.Plan`, ``states`` by virtual server ident):
  each named virtual server must be in it with its **quorum up** (keepalived's quorum, with its
  hysteresis, as the planner decides it: check_ipvs.c ``update_quorum_state``). A virtual
  server whose quorum is down is not served by this director, so its address must not draw
  traffic here; a sorry server does not count as healthy (it is what quorum down looks like);
* the reconciler's view of the data plane (``actual``): each of the virtual server's services
  must be **programmed** there, with at least one destination of weight > 0. Until the first
  reconcile has written the table, or while the data plane refuses it, the address is not
  announced;
* ``data_plane_ok``: False when the reconciler is in trouble (its alarms); the reason says so;
* ``track_script``: each script's verdict after keepalived's rise/fall
  (:class:`ScriptTrack`); unknown (never run) counts as failing, so a fresh start announces
  only once each script has said OK;
* ``track_interface``: each interface present with IFF_UP and IFF_RUNNING (what keepalived's
  track_interface requires, vrrp_track.c); missing counts as down.

Every failing input is named in the reason (``; ``-joined), so status says all that is wrong;
a healthy verdict says what it rests on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from lvsd.config.model import BgpAnnounce


class _VsState(Protocol):
    """What :func:`derive` reads of a plan's :class:`lvsd.pool.planner.VsState`."""

    @property
    def quorum_up(self) -> bool: ...

    @property
    def services(self) -> tuple[object, ...]: ...

    @property
    def live_weight(self) -> int: ...

    @property
    def quorum(self) -> int: ...


class _Entry(Protocol):
    """What :func:`derive` reads of a :class:`lvsd.pool.table.ServiceEntry`."""

    @property
    def dests(self) -> Mapping[object, object]: ...


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    reason: str


def programmed(entry: object | None) -> bool:
    """A service in the data plane with at least one destination of weight > 0."""
    if entry is None:
        return False
    dests: Mapping[object, object] = getattr(entry, "dests", {})
    return any(getattr(d, "weight", 0) > 0 for d in dests.values())


def derive(ann: BgpAnnounce, *, vs_states: Mapping[str, _VsState] | None,
           actual: Mapping[object, object], data_plane_ok: bool,
           scripts: Mapping[str, bool | None], links: Mapping[str, bool | None]) -> Verdict:
    """The verdict of one announcement (see the module docstring). ``vs_states`` None: the
    pool has not planned yet."""
    bad: list[str] = []
    good: list[str] = []
    if ann.virtual_servers:
        if vs_states is None:
            bad.append("pool not planned yet")
        else:
            for ident in ann.virtual_servers:
                st = vs_states.get(ident)
                if st is None:
                    bad.append(f"virtual server {ident} not in the pool")
                elif not st.quorum_up:
                    bad.append(f"virtual server {ident} quorum down (live weight "
                               f"{st.live_weight}, quorum {st.quorum})")
                elif not all(programmed(actual.get(k)) for k in st.services):
                    bad.append(f"virtual server {ident} not programmed in the data plane")
            if not bad:
                good.append(f"quorum up and programmed: {', '.join(ann.virtual_servers)}")
    if not data_plane_ok:
        bad.append("data plane alarms (operations refused)")
    for name in ann.track_scripts:
        v = scripts.get(name)
        if v is None:
            bad.append(f"track_script {name} has no result yet")
        elif not v:
            bad.append(f"track_script {name} failing")
    if ann.track_scripts and all(scripts.get(n) for n in ann.track_scripts):
        good.append(f"scripts OK: {', '.join(ann.track_scripts)}")
    for name in ann.track_interfaces:
        v = links.get(name)
        if v is None:
            bad.append(f"interface {name} missing")
        elif not v:
            bad.append(f"interface {name} down")
    if ann.track_interfaces and all(links.get(n) for n in ann.track_interfaces):
        good.append(f"interfaces up: {', '.join(ann.track_interfaces)}")
    if bad:
        return Verdict(False, "; ".join(bad))
    return Verdict(True, "; ".join(good) or "lvsd running")


class ScriptTrack:
    """keepalived's rise/fall for a ``vrrp_script`` (vrrp_scheduler.c
    ``vrrp_script_child_thread``): ``rise`` consecutive successes make a failing script OK,
    ``fall`` consecutive failures make an OK one fail. Unknown at first (``init_fail``:
    failing); from unknown the first result decides, as keepalived's initial ``rise - 1``
    result does."""

    __slots__ = ("fails", "fall", "ok", "rise", "successes")

    def __init__(self, rise: int, fall: int, init_fail: bool) -> None:
        self.rise, self.fall = max(1, rise), max(1, fall)
        self.ok: bool | None = False if init_fail else None
        self.successes = self.fails = 0

    def result(self, success: bool) -> bool | None:
        """One run's result; the verdict after it."""
        if success:
            self.successes, self.fails = self.successes + 1, 0
            if self.ok is None or (not self.ok and self.successes >= self.rise):
                self.ok = True
        else:
            self.fails, self.successes = self.fails + 1, 0
            if self.ok is None or (self.ok and self.fails >= self.fall):
                self.ok = False
        return self.ok
