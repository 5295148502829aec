"""Notify scripts and notify FIFOs for VRRP state changes (keepalived semantics).

Theory of operation
-------------------
On a state change of an instance (or sync group) keepalived runs, in order:

1. the state's own script: ``notify_master`` / ``notify_backup`` / ``notify_fault`` /
   ``notify_stop``, exactly as written (its own arguments, none added); a master hearing a
   lower-priority advert runs ``notify_master_rx_lower_pri`` (state ``MASTER_RX_LOWER_PRI``)
   and no ``notify`` (keepalived vrrp_notify.c ``send_event_notify``);
2. ``notify``, with four arguments appended: ``TYPE NAME STATE PRIORITY`` where TYPE is
   ``INSTANCE`` or ``GROUP``, STATE is ``MASTER``/``BACKUP``/``FAULT``/``STOP``, PRIORITY
   the instance's current priority (keepalived 2.x; groups get 0, vrrp_notify.c
   ``notify_script_exec``);
3. a line on ``notify_fifo`` / ``vrrp_notify_fifo``: ``INSTANCE "VI_1" MASTER 100`` (or
   ``GROUP "G1" MASTER 0``: keepalived's ``notify_fifo`` always prints a priority, 0 for a
   group), newline terminated; also for ``MASTER_RX_LOWER_PRI``.

With ``notify_priority_changes`` an effective priority change writes only a FIFO line
(``INSTANCE "VI_1" MASTER_PRIORITY 90``, or ``BACKUP_PRIORITY`` when not master): no script
is run (vrrp_notify.c ``send_instance_priority_notifies``).

``Notifier.notify`` only schedules: every script runs as its own asyncio task with a timeout
(killed, and counted, when it overruns), so the state machine never waits for one.
keepalived forks each notify script and never waits for it (vrrp_notify.c ``notify_exec``), so
a hung script delays nothing. lvsd keeps the order of one instance's state notifications (a
quick MASTER -> BACKUP -> MASTER flap is reported in order) but never lets one queue behind
another: each script starts when the one before it has ended, or :data:`ORDER_GRACE` (1 s)
after it started waiting, whichever comes first. So a hung ``notify_master`` delays the
``notify_backup`` after it by at most ~1 s, not by its timeout.

``notify_master_rx_lower_pri`` runs apart from the state notifications (they never wait for
it) and is coalesced per instance: at most one run and one pending; a lower-priority advert
that arrives while one runs and one is pending only counts (``NotifyStats.coalesced``). A
flood of lower-priority adverts starts a handful of scripts, not one per advert.

Every script runs through the one script runner (:mod:`lvsd.scriptrun`, keepalived
lib/notify.c): split into words as keepalived splits them and executed without a shell (``;``,
``$(...)`` are plain text), as the script's own ``user [group]`` or the default script user
(``script_user [script_group]``, else ``keepalived_script``, else the daemon's own; an unknown
user is reported, the script is not run as root instead), refused when unsafe under
``enable_script_security``, and at :attr:`Notifier.timeout` SIGTERM to its process group,
SIGKILL 2 s later (keepalived does not time notify scripts out; lvsd does, so one stuck script
cannot hold back the instance's later notifications).

A FIFO (created if missing) is opened once, read-write and non-blocking, and kept open as
keepalived does: a reader never sees EOF between lines, nothing ever blocks, and when the pipe
is full because nobody reads it a line is dropped and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
from collections.abc import Callable
from dataclasses import dataclass, field

from lvsd.scriptrun import NOTIFY_TIMEOUT, ScriptRunner, ScriptSpec

__all__ = ["ORDER_GRACE", "Notifier", "ScriptSpec", "fifo_line"]

ORDER_GRACE = 1.0  # s a notify script waits for the one before it at most
RX_LOWER = "MASTER_RX_LOWER_PRI"


def fifo_line(kind: str, name: str, state: str, priority: int | None) -> str:
    """keepalived's notify_fifo line, e.g. ``INSTANCE "VI_1" MASTER 100``."""
    line = f'{kind} "{name}" {state}'
    if priority is not None:
        line += f" {priority}"
    return line + "\n"


@dataclass
class NotifyStats:
    started: int = 0
    failed: int = 0  # non-zero exit or could not start
    timed_out: int = 0
    fifo_dropped: int = 0
    coalesced: int = 0  # notify_master_rx_lower_pri runs folded into the pending one
    last_error: str = ""


@dataclass
class Notifier:
    """Runs one instance's (or group's) notify scripts and FIFO lines."""

    kind: str  # "INSTANCE" | "GROUP"
    name: str
    scripts: dict[str, ScriptSpec] = field(default_factory=dict)  # "MASTER"/... and "notify"
    fifos: tuple[str, ...] = ()
    timeout: float = NOTIFY_TIMEOUT
    default_user: str | None = None  # global_defs script_user / script_group
    default_group: str | None = None
    on_error: Callable[[str], None] | None = None
    stats: NotifyStats = field(default_factory=NotifyStats)
    security: bool = False  # global_defs enable_script_security
    order_grace: float = ORDER_GRACE
    _chain: asyncio.Task[None] | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _rx_task: asyncio.Task[None] | None = None  # the notify_master_rx_lower_pri run
    _rx_pending: bool = False  # another one is due after it
    _fifo_fds: dict[str, int] = field(default_factory=dict)

    def notify(self, state: str, priority: int | None) -> None:
        """Schedule everything for entering ``state``; returns at once."""
        jobs: list[tuple[ScriptSpec, tuple[str, ...]]] = []
        if priority is None and self.kind == "GROUP":
            priority = 0  # keepalived vrrp_notify.c send_group_notifies / notify_group_fifo
        own = self.scripts.get(state)
        if own is not None:
            jobs.append((own, ()))
        generic = self.scripts.get("notify")
        if state in ("MASTER_RX_LOWER_PRI", "MASTER_PRIORITY", "BACKUP_PRIORITY"):
            generic = None  # keepalived vrrp_notify.c send_event_notify: no `notify` script
        if generic is not None:
            extra: tuple[str, ...] = (self.kind, self.name, state)
            if priority is not None:
                extra += (str(priority),)
            jobs.append((generic, extra))
        for path in self.fifos:
            self._write_fifo(path, fifo_line(self.kind, self.name, state, priority))
        if state == RX_LOWER:
            if own is not None:
                self._rx_lower()
            return
        for spec, extra in jobs:
            task = asyncio.get_running_loop().create_task(
                self._run_after(self._chain, spec, extra))
            self._chain = task
            self._track(task)

    def _track(self, task: asyncio.Task[None]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_after(self, prev: asyncio.Task[None] | None, spec: ScriptSpec,
                         extra: tuple[str, ...]) -> None:
        if prev is not None and not prev.done():
            # in order, but never queued behind a slow script: at most order_grace
            await asyncio.wait({prev}, timeout=self.order_grace)
        if prev is not None and prev.done() and not prev.cancelled() \
                and (exc := prev.exception()) is not None:
            self._error(f"{self.kind} {self.name}: notify failed: {exc!r}")
        await self.run_one(spec, extra)

    def _rx_lower(self) -> None:
        """notify_master_rx_lower_pri, coalesced: one running, at most one pending."""
        if self._rx_task is not None and not self._rx_task.done():
            if self._rx_pending:
                self.stats.coalesced += 1
            self._rx_pending = True
            return
        self._rx_pending = False
        self._rx_task = asyncio.get_running_loop().create_task(self._rx_loop())
        self._track(self._rx_task)

    async def _rx_loop(self) -> None:
        while True:
            spec = self.scripts.get(RX_LOWER)  # a reload may have changed or removed it
            if spec is None:
                return
            await self.run_one(spec)
            if not self._rx_pending:
                return
            self._rx_pending = False

    def _error(self, msg: str) -> None:
        self.stats.last_error = msg
        if self.on_error is not None:
            self.on_error(msg)

    @property
    def runner(self) -> ScriptRunner:
        """The script runner with this notifier's defaults."""
        return ScriptRunner(self.default_user, self.default_group, security=self.security)

    async def run_one(self, spec: ScriptSpec, extra: tuple[str, ...] = ()) -> int | None:
        """Run one script to completion (or timeout); returns its exit status or None."""
        self.stats.started += 1
        out = await self.runner.run(spec, extra, timeout=self.timeout, log=self._error)
        if not out.ran:
            self.stats.failed += 1
            self._error(f"{self.kind} {self.name}: cannot run {spec.command!r}: {out.error}")
            return None
        if out.timed_out:
            self.stats.timed_out += 1
            self._error(f"{self.kind} {self.name}: {spec.command!r} timed out after "
                        f"{self.timeout:g} s (killed)")
            return None
        if out.status != 0:
            self.stats.failed += 1
            self._error(f"{self.kind} {self.name}: {spec.command!r} {out.describe()}")
        return out.status

    def _write_fifo(self, path: str, line: str) -> None:
        fd = self._fifo_fds.get(path)
        if fd is None:
            try:
                if not os.path.exists(path):
                    os.mkfifo(path, 0o600)
                # O_RDWR: never blocks and never fails for want of a reader (Linux), and
                # readers do not see EOF between lines -- keepalived keeps it open the same way.
                fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)
            except OSError as exc:
                self.stats.fifo_dropped += 1
                self._error(f"notify_fifo {path}: {exc.strerror}")
                return
            self._fifo_fds[path] = fd
        try:
            os.write(fd, line.encode())
        except OSError as exc:  # EAGAIN: the pipe is full, nobody reads it
            self.stats.fifo_dropped += 1
            if exc.errno != errno.EAGAIN:
                self._error(f"notify_fifo {path}: {exc.strerror}")

    def close(self) -> None:
        """Close the FIFOs (scripts already started keep running to their timeout)."""
        for fd in self._fifo_fds.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fifo_fds.clear()

    async def drain(self, timeout: float | None = None) -> None:
        """Wait for scheduled scripts (used on stop so notify_stop runs before exit)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)
