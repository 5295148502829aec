"""The parent's handle on the VRRP child process (:mod:`lvsd.daemon.vrrpchild`).

Theory of operation
-------------------
:class:`VrrpProcess` starts the child (``python -c CHILD_MAIN``, its end of a
socketpair passed as a descriptor), sends it requests (:class:`~lvsd.daemon.vrrpwire.Apply`,
``Stop``) and awaits their replies, and keeps what the child reports: the instances' status
(read by the daemon's status snapshot, so ``/status`` never waits for the child) and the
child's loop health. Events are handed to ``on_event`` (the daemon publishes them on the bus
and tells the pool).

The child is started before the daemon loads its config, so its imports overlap the parent's
start-up. When it dies unexpectedly the parent logs keepalived's words ("VRRP child
process(PID) died: Respawning"), waits as :class:`~lvsd.daemon.respawn.RespawnPolicy` says
(keepalived calc_restart_delay) and starts a new one with the running config; a request that
was in flight fails with :class:`ChildGone`. ``stop()`` asks for a graceful stop (priority 0,
VIPs removed, notify_stop), bounded by its timeout, then kills what is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from lvsd.daemon import vrrpwire as w
from lvsd.daemon.respawn import RespawnPolicy

if TYPE_CHECKING:
    from lvsd.config.model import Config
    from lvsd.status.model import InstanceStatus

log = logging.getLogger(__name__)

OnEvent = Callable[[str, str, dict[str, Any]], None]
# the child's command (python -c): the module imported under its own name, so its loggers are
# "lvsd.daemon.vrrpchild" (with -m it would be __main__)
CHILD_MAIN = "import sys; from lvsd.daemon.vrrpchild import main; sys.exit(main(sys.argv[1:]))"


class ChildGone(Exception):
    """The VRRP child exited (or its channel broke) before answering."""


class VrrpProcess:
    def __init__(self, on_event: OnEvent, log_spec: dict[str, object] | None = None) -> None:
        self.on_event = on_event
        self.log_spec = dict(log_spec or {})
        self.instances: tuple[InstanceStatus, ...] = ()
        self.loop_health = w.LoopHealth()
        self.respawns = 0
        self._proc: asyncio.subprocess.Process | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._pending: dict[int, asyncio.Future[w.Reply]] = {}
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopping = False
        self._started_at = 0.0
        self._policy = RespawnPolicy()
        self._last_apply: w.Apply | None = None
        self._up = asyncio.Event()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    # ---- process
    async def start(self) -> None:
        """Start the child (returns once it is exec'd; its imports go on in parallel)."""
        parent_sock, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            fd = child_sock.fileno()
            self._proc = await asyncio.create_subprocess_exec(
                sys.executable, "-c", CHILD_MAIN, str(fd), str(os.getpid()),
                json.dumps(self.log_spec), pass_fds=(fd,), stdin=asyncio.subprocess.DEVNULL)
        except BaseException:
            parent_sock.close()
            raise
        finally:
            child_sock.close()
        self._started_at = time.monotonic()
        parent_sock.setblocking(False)
        reader, self._writer = await asyncio.open_unix_connection(sock=parent_sock)
        self._up.set()
        log.info("Starting VRRP child process, pid=%d", self._proc.pid)  # vrrp_daemon.c
        self._spawn(self._read(reader, self._proc))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _read(self, reader: asyncio.StreamReader,
                    proc: asyncio.subprocess.Process) -> None:
        try:
            while True:
                msg = await w.read_message(reader)
                if isinstance(msg, w.Report):
                    self.instances = msg.instances
                    self.loop_health = msg.loop
                elif isinstance(msg, w.Event):
                    try:
                        self.on_event(msg.name, msg.kind, msg.info)
                    except Exception:  # a consumer's bug must not end the channel
                        log.exception("VRRP event %s/%s: handler failed", msg.name, msg.kind)
                elif isinstance(msg, w.Reply):
                    fut = self._pending.pop(msg.req, None)
                    if fut is not None and not fut.done():
                        fut.set_result(msg)
        except w.ChannelClosed as exc:
            log.debug("VRRP child channel closed: %s", exc)
        self._up.clear()
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(ChildGone("VRRP child process exited"))
        self._pending.clear()
        status = await proc.wait()
        if status == 0 and not self._stopping:
            # a clean exit: it was told to stop (SIGTERM), and systemd signals the whole
            # cgroup at once - the parent's own stop is on its way: do not respawn into it
            await asyncio.sleep(1.0)
        if self._stopping:
            return
        self.instances = ()
        log.critical("VRRP child process(%d) died: Respawning", proc.pid)  # scheduler.c
        log.info("  VRRP child exit status %d", status)
        delay = self._policy.delay(self._started_at, time.monotonic())
        if delay:
            log.info("Restart of VRRP process delayed %d seconds to limit respawn rate", delay)
            await asyncio.sleep(delay)
        if self._stopping:
            return
        self.respawns += 1
        try:
            await self.start()
            if self._last_apply is not None:
                reply = await self._request(self._last_apply)
                if not reply.ok:
                    log.error("VRRP child: re-applying the running config failed: %s",
                              reply.error)
        except (OSError, ChildGone) as exc:
            log.error("VRRP child: restart failed: %s", exc)

    # ---- requests
    async def _request(self, msg: w.Apply | w.Stop) -> w.Reply:
        if self._writer is None or self._writer.is_closing():
            raise ChildGone("VRRP child process is not running")
        fut: asyncio.Future[w.Reply] = asyncio.get_running_loop().create_future()
        self._pending[msg.req] = fut
        try:
            self._writer.write(w.encode(msg))
            await self._writer.drain()
        except ConnectionError as exc:
            self._pending.pop(msg.req, None)
            raise ChildGone(f"VRRP child process: {exc}") from None
        return await fut

    async def apply(self, cfg: Config, *, transport: str, secrets: tuple[str, ...] = (),
                    mono_offset: float = 0.0) -> w.Reply:
        """Run ``cfg``'s VRRP side in the child; the reply says whether it could (startup:
        a runner that cannot start; reload: a new socket that cannot open)."""
        from dataclasses import replace

        # the child needs the VRRP side only: a 37,000-server pool is not pickled across
        vcfg = replace(cfg, virtual_servers=(), virtual_server_groups=(), diagnostics=())
        msg = w.Apply(next(self._ids), vcfg, transport, secrets, mono_offset)
        self._last_apply = msg
        return await self._request(msg)

    async def stop(self, timeout: float) -> None:
        """Graceful stop within ``timeout`` (then SIGKILL); no respawn afterwards."""
        self._stopping = True
        proc = self._proc
        if proc is None:
            return
        if proc.returncode is None:
            with contextlib.suppress(ChildGone, TimeoutError):
                await asyncio.wait_for(self._request(w.Stop(next(self._ids), timeout)),
                                       timeout + 1.0)
            try:
                await asyncio.wait_for(proc.wait(), 2.0)
            except TimeoutError:
                log.warning("VRRP child process(%d) did not exit: killing it", proc.pid)
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        if self._writer is not None:
            with contextlib.suppress(OSError, RuntimeError):  # the child is gone already
                self._writer.close()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
