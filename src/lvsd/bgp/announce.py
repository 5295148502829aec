"""When each BGP announcement is announced or withdrawn (sans-IO).

Theory of operation
-------------------
:class:`Announcer` holds one :class:`AnnounceState` per ``bgp_announce`` block and the state of
each BGP session. It is fed, always with ``now`` (a monotonic clock the caller owns):

* :meth:`Announcer.health` -- the announcement's health verdict and its reason, as
  :mod:`lvsd.bgp.health` derives it (quorum of each named virtual server up and programmed in
  the data plane, tracked scripts OK, tracked interfaces up);
* :meth:`Announcer.tick` -- time passing (call it at :meth:`Announcer.next_deadline`);
* :meth:`Announcer.configure` -- the announcements of a (re)loaded config;
* :meth:`Announcer.sessions` -- the speaker's session states (``show protocols``);
* :meth:`Announcer.stop` -- lvsd is stopping or failed.

and returns :class:`Announce` / :class:`Withdraw` actions (and :class:`SessionChange` records),
each with its reason, for the shell to carry out (BIRD ``enable``/``disable`` of the
announcement's static protocol) and report (log line, event, status).

Hysteresis (the issue: a flapping quorum must not flap the route): an announcement is
announced once its health has been *continuously* good for ``rise_delay`` seconds, and
withdrawn once it has been continuously bad for ``fall_delay`` seconds (0: at once). A health
change back before the delay has run cancels the pending transition; a verdict that repeats
the current one changes nothing (its reason is kept for status). This is the timing keepalived
gives a ``vrrp_script`` with ``rise``/``fall`` (vrrp_scheduler.c), in seconds rather than in
results: health here is derived from several inputs that change at their own pace.

An announcement starts withdrawn with health unknown: nothing is announced before the first
verdict, so a starting director draws no traffic before its pool is programmed. A reload keeps
the state of an announcement whose name and address are unchanged (new delays apply to a
pending transition); one removed or whose address changed is withdrawn (reason
``removed from the config``) and, if still configured, starts again withdrawn.

Stop (SIGTERM, a fatal error): every announced route is withdrawn first (reason given by the
caller), and the announcer ignores health from then on: the shell withdraws, waits briefly for
the routers to move the traffic away, and only then stops the speaker and the pool.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace


@dataclass(frozen=True, slots=True)
class AnnounceSpec:
    """What the announcer needs of one ``bgp_announce`` block."""

    name: str
    cidr: str  # the host route, e.g. 10.0.0.100/32
    rise_delay: float = 2.0
    fall_delay: float = 0.0


@dataclass(frozen=True, slots=True)
class Announce:
    name: str
    cidr: str
    reason: str


@dataclass(frozen=True, slots=True)
class Withdraw:
    name: str
    cidr: str
    reason: str


Action = Announce | Withdraw


@dataclass(frozen=True, slots=True)
class SessionChange:
    """A BGP session's state (BIRD's: Idle, Connect, Active, OpenSent, OpenConfirm,
    Established, or ``down`` when the protocol itself is down) differs from the last one."""

    neighbor: str
    previous: str | None
    state: str
    since: float


@dataclass(frozen=True, slots=True)
class AnnounceState:
    """One announcement as status shows it."""

    name: str
    cidr: str
    announced: bool
    reason: str  # why it is in its state (the health reason of the last transition)
    since: float  # `now` of the last transition (or of its creation)
    healthy: bool | None  # the last health verdict (None: none yet)
    health_reason: str
    health_since: float  # `now` the verdict became what it is
    pending_until: float | None  # when a pending transition happens, if health holds


@dataclass(frozen=True, slots=True)
class SessionState:
    neighbor: str
    state: str
    since: float


class Announcer:
    """The announcements' state machine (see the module docstring)."""

    def __init__(self, specs: Iterable[AnnounceSpec], now: float) -> None:
        self._specs: dict[str, AnnounceSpec] = {}
        self._states: dict[str, AnnounceState] = {}
        self._sessions: dict[str, SessionState] = {}
        self._stopped = False
        self.configure(specs, now)

    # ---- inputs
    def configure(self, specs: Iterable[AnnounceSpec], now: float) -> list[Action]:
        """Take a config's announcements: keep the state of unchanged ones, withdraw the
        removed ones (and those whose address changed), add the new ones withdrawn."""
        out: list[Action] = []
        new = {s.name: s for s in specs}
        for name, old in list(self._specs.items()):
            spec = new.get(name)
            if spec is not None and spec.cidr == old.cidr:
                continue
            st = self._states.pop(name)
            del self._specs[name]
            if st.announced:
                out.append(Withdraw(name, st.cidr, "removed from the config"))
        for name, spec in new.items():
            self._specs[name] = spec
            if name not in self._states:
                self._states[name] = AnnounceState(
                    name, spec.cidr, False, "starting: no health verdict yet", now, None, "",
                    now, None)
            else:
                self._states[name] = self._pending(self._states[name])
        if not self._stopped:
            out += self.tick(now)
        return out

    def health(self, name: str, ok: bool, reason: str, now: float) -> list[Action]:
        """The health verdict of announcement ``name`` (unknown names are ignored)."""
        st = self._states.get(name)
        if st is None or self._stopped:
            return []
        if st.healthy is ok:
            if reason != st.health_reason:
                self._states[name] = replace(st, health_reason=reason)
            return self.tick(now)
        self._states[name] = self._pending(replace(st, healthy=ok, health_reason=reason,
                                                   health_since=now))
        return self.tick(now)

    def tick(self, now: float) -> list[Action]:
        """Carry out the transitions whose delay has run."""
        if self._stopped:
            return []
        out: list[Action] = []
        for name, st in self._states.items():
            if st.pending_until is None or now < st.pending_until:
                continue
            assert st.healthy is not None
            if st.healthy:
                held = self._specs[name].rise_delay
                reason = st.health_reason + (f" (healthy for {held:g} s)" if held else "")
                out.append(Announce(name, st.cidr, reason))
            else:
                out.append(Withdraw(name, st.cidr, st.health_reason))
            self._states[name] = replace(st, announced=st.healthy, reason=st.health_reason,
                                         since=now, pending_until=None)
        return out

    def sessions(self, states: Mapping[str, str], now: float) -> list[SessionChange]:
        """The speaker's session states by neighbor; the changes since the last call (a
        neighbor no longer listed is forgotten)."""
        out: list[SessionChange] = []
        for nb in [n for n in self._sessions if n not in states]:
            del self._sessions[nb]
        for nb, state in states.items():
            old = self._sessions.get(nb)
            if old is not None and old.state == state:
                continue
            self._sessions[nb] = SessionState(nb, state, now)
            out.append(SessionChange(nb, None if old is None else old.state, state, now))
        return out

    def stop(self, reason: str, now: float) -> list[Action]:
        """Withdraw every announced route; health is ignored from now on."""
        out: list[Action] = []
        for name, st in self._states.items():
            if st.announced:
                out.append(Withdraw(name, st.cidr, reason))
            self._states[name] = replace(st, announced=False, reason=reason, since=now,
                                         pending_until=None)
        self._stopped = True
        return out

    # ---- outputs
    def next_deadline(self) -> float | None:
        """The earliest pending transition, or None."""
        if self._stopped:
            return None
        pend = [st.pending_until for st in self._states.values()
                if st.pending_until is not None]
        return min(pend) if pend else None

    @property
    def stopped(self) -> bool:
        return self._stopped

    def states(self) -> tuple[AnnounceState, ...]:
        return tuple(self._states.values())

    def session_states(self) -> tuple[SessionState, ...]:
        return tuple(self._sessions.values())

    def announced(self, name: str) -> bool:
        st = self._states.get(name)
        return st is not None and st.announced

    # ---- internals
    def _pending(self, st: AnnounceState) -> AnnounceState:
        """``st`` with the transition its health asks for scheduled (or none)."""
        if st.healthy is None or st.healthy == st.announced:
            return replace(st, pending_until=None)
        spec = self._specs[st.name]
        delay = spec.rise_delay if st.healthy else spec.fall_delay
        return replace(st, pending_until=st.health_since + delay)
