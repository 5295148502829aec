"""Transition events fanned out to ``GET /events`` subscribers (server-sent events).

Theory of operation
-------------------
The daemon calls :meth:`EventBus.publish` with a typed record of
:mod:`lvsd.status.event_types` for every transition (anything else is refused with a
``TypeError``); the record names the type and holds the payload. The types, as published:
``vrrp``, ``vrrp_error`` (VRRP state, runtime errors), ``realserver`` (health), ``quorum``,
``action`` (quorum/notify scripts), ``reconcile`` (writes to the data plane), ``alarm`` (writes
it refused), ``reload``, ``lifecycle``, ``bgp_announce``, ``bgp_withdraw``, ``bgp_session``
(the BGP mode's routes and sessions); and ``dropped``, which the bus makes itself. Each
subscriber owns a bounded queue; a slow subscriber loses its oldest events, and before its next
one it is told how many by a ``dropped`` event (``count``; its id is the last one it received,
so reconnecting with it replays what the history still holds) rather than slowing the daemon
down. A short history lets a new subscriber catch up with ``Last-Event-ID``. Nothing here blocks
the publisher: ``publish`` is synchronous and O(subscribers).
"""

from __future__ import annotations

import asyncio
import collections
import time
from dataclasses import dataclass
from typing import Any

from lvsd.status.event_types import Dropped, EventPayload


@dataclass(frozen=True, slots=True)
class Event:
    id: int
    at: float  # Unix seconds
    payload: EventPayload

    @property
    def type(self) -> str:
        """vrrp | vrrp_error | realserver | quorum | action | reconcile | alarm | reload |
        lifecycle | bgp_announce | bgp_withdraw | bgp_session | dropped
        (``event_types.EVENT_TYPES``)"""
        return self.payload.TYPE

    @property
    def data(self) -> dict[str, Any]:
        return self.payload.data()

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "type": self.type, "at": self.at, **self.payload.data()}


class Subscription:
    def __init__(self, bus: EventBus, maxsize: int, last_id: int = 0) -> None:
        self._bus = bus
        self._queue: collections.deque[Event] = collections.deque(maxlen=maxsize)
        self._ready = asyncio.Event()
        self.dropped = 0  # events lost since the start
        self._told = 0  # of which the subscriber has been told (``dropped`` events)
        self._last_id = last_id  # the last event handed out

    def _push(self, ev: Event) -> None:
        if self._queue.maxlen is not None and len(self._queue) == self._queue.maxlen:
            self.dropped += 1
        self._queue.append(ev)
        self._ready.set()

    async def get(self, timeout: float | None = None) -> Event | None:
        """The next event, or None after ``timeout`` seconds without one; a ``dropped``
        event first if events were lost since the last one handed out."""
        if not self._queue:
            self._ready.clear()
            try:
                await asyncio.wait_for(self._ready.wait(), timeout)
            except TimeoutError:
                return None
        if self.dropped > self._told:
            lost, self._told = self.dropped - self._told, self.dropped
            return Event(self._last_id, time.time(), Dropped(lost))
        ev = self._queue.popleft()
        self._last_id = ev.id
        return ev

    def close(self) -> None:
        self._bus._subs.discard(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# events after which a cached status snapshot is stale at once (rare, and an operator reads
# /status right after them: a reload's outcome, a VRRP state change, start/stop)
SNAPSHOT_STALE_AFTER = frozenset({"reload", "vrrp", "vrrp_error", "lifecycle"})


class EventBus:
    def __init__(self, history: int = 256, queue_size: int = 1024) -> None:
        self._subs: set[Subscription] = set()
        self._history: collections.deque[Event] = collections.deque(maxlen=history)
        self._queue_size = queue_size
        self._next_id = 1
        # bumped by every event of SNAPSHOT_STALE_AFTER (the status app's snapshot cache)
        self.stale_marks = 0

    def publish(self, payload: EventPayload, at: float | None = None) -> Event:
        """Hand ``payload`` (a record of ``event_types``) to every subscriber, now."""
        if not isinstance(payload, EventPayload) or isinstance(payload, Dropped):
            raise TypeError(f"EventBus.publish takes an event_types record, not {payload!r}")
        ev = Event(self._next_id, time.time() if at is None else at, payload)
        self._next_id += 1
        if payload.TYPE in SNAPSHOT_STALE_AFTER:
            self.stale_marks += 1
        self._history.append(ev)
        for sub in list(self._subs):
            sub._push(ev)
        return ev

    def subscribe(self, last_id: int | None = None) -> Subscription:
        sub = Subscription(self, self._queue_size, last_id or 0)
        if last_id is not None:
            for ev in self._history:
                if ev.id > last_id:
                    sub._push(ev)
        self._subs.add(sub)
        return sub

    def recent(self, n: int = 50) -> list[Event]:
        return list(self._history)[-n:]

    @property
    def subscribers(self) -> int:
        return len(self._subs)
