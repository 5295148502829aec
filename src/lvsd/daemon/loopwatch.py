"""A watchdog for an event loop: how late does a timer fire, i.e. how long was the loop blocked.

Theory of operation
-------------------
:class:`StallTracker` is the core (sans-IO): it is told when a tick was due and when it ran
(``tick(due, now)``); the difference is the loop's stall for that tick (everything the loop
did between the two: callbacks, a garbage-collection pause, a blocking call). It keeps the
longest stall, the last one, and counts those over ``threshold``; ``tick`` returns True when a
stall over the threshold should be logged (at most one log line per ``log_every`` seconds, so
a loop that is slow for minutes writes a line every ``log_every``, not one per tick).

The threshold for a VRRP loop is a fraction of the shortest Master_Down_Interval it runs
(RFC 9568 §6.1: 3 x Master_Adver_Interval + Skew_Time): a loop blocked for that long delays
adverts enough for a backup to take over while this node still holds the VIPs.
:func:`threshold_for` computes it from the advert intervals.

:func:`watch` is the shell: ``asyncio.sleep(interval)`` in a loop, feeding the tracker with the
loop's clock, calling ``on_stall(stall)`` when the tracker says so.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass

TICK_MIN, TICK_MAX = 0.01, 0.1
THRESHOLD_FRACTION = 0.25
DEFAULT_THRESHOLD = 0.25  # no VRRP instance: a quarter of a second is worth a log line


def threshold_for(advert_ints: Iterable[float]) -> float:
    """A quarter of the shortest Master_Down_Interval (3 x advert interval, skew ignored:
    the shortest case) among ``advert_ints``; :data:`DEFAULT_THRESHOLD` without any."""
    ints = [a for a in advert_ints if a > 0]
    if not ints:
        return DEFAULT_THRESHOLD
    return THRESHOLD_FRACTION * 3 * min(ints)


@dataclass
class StallTracker:
    threshold: float = DEFAULT_THRESHOLD
    log_every: float = 10.0
    max_stall: float = 0.0
    last_stall: float = 0.0
    over_threshold: int = 0
    _next_log: float = float("-inf")

    def tick(self, due: float, now: float) -> bool:
        """The tick due at ``due`` ran at ``now``. True: log this stall."""
        stall = max(0.0, now - due)
        self.last_stall = stall
        self.max_stall = max(self.max_stall, stall)
        if stall <= self.threshold:
            return False
        self.over_threshold += 1
        if now < self._next_log:
            return False
        self._next_log = now + self.log_every
        return True


def tick_for(threshold: float) -> float:
    """How often to tick: a third of the threshold (a stall of that size is seen within a
    tick), within [TICK_MIN, TICK_MAX] (a quiet loop should not wake 100 times a second)."""
    return max(TICK_MIN, min(TICK_MAX, threshold / 3))


async def watch(tracker: StallTracker, on_stall: Callable[[float], None]) -> None:
    """Run forever (cancel to stop): one tick per :func:`tick_for` the tracker's threshold
    (read each time: a reload may change it)."""
    loop = asyncio.get_running_loop()
    while True:
        interval = tick_for(tracker.threshold)
        due = loop.time() + interval
        await asyncio.sleep(interval)
        now = loop.time()
        if tracker.tick(due, now):
            on_stall(now - due)
