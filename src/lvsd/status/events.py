"""Transition events fanned out to ``GET /events`` subscribers (server-sent events).

Theory of operation
-------------------
The daemon calls :meth:`EventBus.publish` for every transition (VRRP state, real server up/down,
checker verdict, quorum, reload, reconcile repair). Each subscriber owns a bounded queue; a slow
subscriber loses its oldest events (and is told how many via a ``dropped`` event) rather than
slowing the daemon down. A short history lets a new subscriber catch up with ``Last-Event-ID``.
Nothing here blocks the publisher: ``publish`` is synchronous and O(subscribers).
"""

from __future__ import annotations

import asyncio
import collections
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Event:
    id: int
    type: str  # vrrp | realserver | checker | quorum | reload | reconcile | lifecycle | dropped
    at: float  # Unix seconds
    data: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "type": self.type, "at": self.at, **self.data}


class Subscription:
    def __init__(self, bus: EventBus, maxsize: int) -> None:
        self._bus = bus
        self._queue: collections.deque[Event] = collections.deque(maxlen=maxsize)
        self._ready = asyncio.Event()
        self.dropped = 0

    def _push(self, ev: Event) -> None:
        if self._queue.maxlen is not None and len(self._queue) == self._queue.maxlen:
            self.dropped += 1
        self._queue.append(ev)
        self._ready.set()

    async def get(self, timeout: float | None = None) -> Event | None:
        """The next event, or None after ``timeout`` seconds without one."""
        if not self._queue:
            self._ready.clear()
            try:
                await asyncio.wait_for(self._ready.wait(), timeout)
            except TimeoutError:
                return None
        return self._queue.popleft()

    def close(self) -> None:
        self._bus._subs.discard(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventBus:
    def __init__(self, history: int = 256, queue_size: int = 1024) -> None:
        self._subs: set[Subscription] = set()
        self._history: collections.deque[Event] = collections.deque(maxlen=history)
        self._queue_size = queue_size
        self._next_id = 1

    def publish(self, type: str, data: dict[str, Any] | None = None,
                at: float | None = None) -> Event:
        ev = Event(self._next_id, type, time.time() if at is None else at, dict(data or {}))
        self._next_id += 1
        self._history.append(ev)
        for sub in list(self._subs):
            sub._push(ev)
        return ev

    def subscribe(self, last_id: int | None = None) -> Subscription:
        sub = Subscription(self, self._queue_size)
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
