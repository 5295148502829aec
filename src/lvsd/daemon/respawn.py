"""When to restart a child process that died (keepalived lib/scheduler.c calc_restart_delay).

Theory of operation
-------------------
:class:`RespawnPolicy` is fed the child's start time and the time it died and answers the
delay before starting it again, as keepalived does for its VRRP and checker children: a child
that ran for a minute or more is restarted at once (and the back-off is reset); otherwise the
delay starts at 1 s and doubles on each early death, up to 60 s ("Restart of %s process
delayed %u seconds to limit respawn rate"). Times are plain seconds; no clock inside.
"""

from __future__ import annotations

from dataclasses import dataclass

STABLE_AFTER = 60.0
MAX_DELAY = 60


@dataclass
class RespawnPolicy:
    next_delay: int = 0

    def delay(self, started_at: float, died_at: float) -> int:
        """Seconds to wait before the next start (0: at once)."""
        if died_at - started_at >= STABLE_AFTER:
            self.next_delay = 0
            return 0
        delay = self.next_delay
        if not delay:
            self.next_delay = 1
        elif self.next_delay > 30:
            self.next_delay = MAX_DELAY
        else:
            self.next_delay *= 2
        return delay
