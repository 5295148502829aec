"""Child process of test_fd_exhaustion.py (not a test module): checks the real servers of the
keepalived.conf given as argv[1] with the real scheduler, runs itself out of descriptors, keeps
checking, gets its descriptors back, and prints what it saw as one JSON line.

It must run in a process of its own: starving pytest's process of descriptors would break the
servers it checks (and pytest).
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import resource
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lvsd.checks.scheduler import Scheduler
from lvsd.config.loader import loads

FAILED_WHILE_STARVED = 3  # failed attempts of each checker while starved


async def until(cond: Callable[[], bool], what: str, limit: float = 60.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + limit
    while not cond():
        if loop.time() > end:
            raise SystemExit(f"gave up waiting: {what}")
        await asyncio.sleep(0.02)


def fill(held: list[int]) -> None:
    """Open /dev/null until EMFILE."""
    try:
        while True:
            held.append(os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC))
    except OSError as exc:
        if exc.errno != errno.EMFILE:
            raise


async def refill(held: list[int]) -> None:
    """Take back every descriptor an attempt that was in flight lets go of."""
    while True:
        fill(held)
        await asyncio.sleep(0.005)


def failed(sched: Scheduler) -> dict[str, int]:
    return {c.label: sum(c.failures.values()) for c in sched.status()}


def view(sched: Scheduler) -> dict[str, Any]:
    return {
        "health": {str(rsid): h.alive for rsid, h in sched.health.items()},
        "checkers": {c.label: {"up": c.up, "attempts": c.attempts, "last_ok": c.last_ok,
                               "last_reason": c.last_reason, "failures": dict(c.failures)}
                     for c in sched.status()},
    }


async def main(conf: str) -> dict[str, Any]:
    cfg = loads(Path(conf).read_text())
    assert not cfg.fatal, cfg.diagnostics
    servers = sum(len(vs.real_servers) for vs in cfg.virtual_servers)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    sched = Scheduler(cfg)
    await sched.start()
    try:
        await until(lambda: len(sched.health) == servers
                    and all(h.alive for h in sched.health.values()), "every server up")
        before = failed(sched)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        # a soft limit just above what is open now, then every descriptor taken
        resource.setrlimit(resource.RLIMIT_NOFILE,
                           (min(len(os.listdir("/proc/self/fd")) + 16, hard), hard))
        held: list[int] = []
        fill(held)
        refiller = asyncio.ensure_future(refill(held))
        try:
            await until(lambda: all(n >= before[k] + FAILED_WHILE_STARVED
                                    for k, n in failed(sched).items()), "failed attempts")
            starved = view(sched)
        finally:
            refiller.cancel()
            for fd in held:
                os.close(fd)
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        starved["seconds"] = loop.time() - t0
        again = {c.label: c.attempts for c in sched.status()}
        # with descriptors back, every checker succeeds again
        await until(lambda: all(c.attempts > again[c.label] and c.last_ok
                                for c in sched.status()), "a success after the starvation")
        return {"starved": starved, "after": view(sched), "held": len(held)}
    finally:
        await sched.close()


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1]))), flush=True)
