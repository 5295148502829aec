"""The VRRP child process: every VRRP runner of ``lvsd run`` on an event loop of its own.

Theory of operation
-------------------
keepalived runs VRRP in a child process of its own (vrrp/vrrp_daemon.c start_vrrp_child) so
that nothing the checkers or the parent do can delay an advert. lvsd does the same, for the
same reason, measured (``bench/loop_isolation.py``): on a thread of the same process a VRRP
timer was late by 290-370 ms whenever the other thread rendered a large JSON document, ran a
full garbage collection or built a large config, because those hold Python's global
interpreter lock; in a process of its own it is late by the scheduler's noise only. The child
also has its own descriptor table (a client exhausting the parent's descriptors cannot stop
adverts) and its own heap (the parent's 37,000-server config is not scanned by the child's
garbage collector).

The parent (:mod:`lvsd.daemon.vrrpproc`) starts a Python that calls :func:`main` with ``FD
PPID LOGSPEC`` (:data:`lvsd.daemon.vrrpproc.CHILD_MAIN`): FD is its end of a socketpair
(:mod:`lvsd.daemon.vrrpwire`). The child:

* dies with its parent: ``PR_SET_PDEATHSIG`` = SIGTERM, as keepalived's children; SIGTERM is
  a graceful stop (a master sends priority 0 and removes its VIPs); SIGINT, SIGHUP and the
  dump signals are the parent's business and are ignored here (a Ctrl-C reaches the whole
  process group; the parent then asks for the stop).
* logs itself, with the parent's logging set-up (same destinations, ``lvsd[PID]`` with its own
  pid, as keepalived's ``Keepalived_vrrp[PID]``).
* on :class:`~lvsd.daemon.vrrpwire.Apply` makes its runners match the config (what the daemon
  did in-process before: unchanged runners are kept with their state, changed ones updated in
  place, removed ones stopped, new ones started) and replies; on ``Stop`` stops them all and
  exits; on end of file (parent gone) stops them all and exits.
* reports: a :class:`~lvsd.daemon.vrrpwire.Report` (the instances' status, the loop's
  health) after every runner event and every ``REPORT_INTERVAL``; the ``Event`` after it.
* watches its own loop (:mod:`lvsd.daemon.loopwatch`): a stall over a quarter of the shortest
  Master_Down_Interval is logged.
* after its first config, takes keepalived's ``vrrp_priority`` / ``vrrp_rt_priority`` /
  ``vrrp_rlimit_rttime`` / ``vrrp_no_swap`` (:mod:`lvsd.daemon.procprio`): a real-time VRRP
  process keeps its adverts on time even when other programs overload the machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import logging
import os
import signal
import socket
import time
from typing import TYPE_CHECKING, Any

from lvsd.daemon import vrrpwire as w
from lvsd.daemon.loopwatch import StallTracker, threshold_for, watch

if TYPE_CHECKING:
    from lvsd.config.model import Config
    from lvsd.vrrp.runner import VrrpRunner

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1


def _die_with_parent(ppid: int) -> None:
    """keepalived vrrp_daemon.c start_vrrp_child: PR_SET_PDEATHSIG SIGTERM, then check the
    parent has not already gone between the fork and the prctl."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError) as exc:  # not Linux: the EOF on the channel still stops us
        log.debug("prctl(PR_SET_PDEATHSIG) unavailable: %s", exc)
    if os.getppid() != ppid:
        os.kill(os.getpid(), signal.SIGTERM)


class VrrpChild:
    """The runners and the channel of one child process."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.runners: dict[str, VrrpRunner] = {}
        self.models: dict[str, tuple[object, ...]] = {}
        self.config: Config | None = None
        self.transport = "raw"
        self.mono_offset = time.time() - time.monotonic()
        self.watchdog = StallTracker()
        self._stop = asyncio.Event()
        self._last_sent: tuple[object, float] | None = None
        self._watching = False
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False

    # ---- channel
    def send(self, msg: w.Message) -> None:
        if self._closed or self.writer.is_closing():
            return
        self.writer.write(w.encode(msg))

    def report(self, only_if_changed: bool = False) -> None:
        """Send the instances' status (with ``only_if_changed``: unless it equals the last)."""
        from lvsd.daemon import snapshot as snap

        wd = self.watchdog
        inst = snap.instances_status(self.runners.values(), self.config,
                                     snap.mono_to_wall(self.mono_offset))
        health = w.LoopHealth(wd.max_stall, wd.last_stall, wd.over_threshold, wd.threshold)
        if only_if_changed and (inst, health.max_stall) == self._last_sent:
            return
        self._last_sent = (inst, health.max_stall)
        self.send(w.Report(inst, health))

    def on_event(self, name: str, kind: str, info: dict[str, Any]) -> None:
        self.report()  # the state first: whoever reacts to the event reads it
        self.send(w.Event(name, kind, info))

    # ---- requests
    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self._stop.set)
        tasks = [asyncio.create_task(self._read()), asyncio.create_task(self._reports())]
        self._tasks = tasks
        try:
            await self._stop.wait()
        finally:
            for t in self._tasks:
                t.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self.stop_all(5.0)
            from lvsd.scriptrun import wait_stopped

            await wait_stopped()  # notify scripts being stopped end in SIGKILL of their group
            self._closed = True
            with contextlib.suppress(OSError, RuntimeError):  # the parent may be gone already
                self.writer.close()

    def _stalled(self, stall: float) -> None:
        log.warning("VRRP event loop was blocked for %.0f ms (more than %.0f ms: a quarter of "
                    "the shortest master down interval)", stall * 1e3,
                    self.watchdog.threshold * 1e3)

    async def _reports(self) -> None:
        """A report when something changed (counters, a learned master: no event for those),
        looked at every ``REPORT_CHECK``; one every ``REPORT_INTERVAL`` anyway."""
        loop = asyncio.get_running_loop()
        next_full = loop.time() + w.REPORT_INTERVAL
        while True:
            await asyncio.sleep(w.REPORT_CHECK)
            full = loop.time() >= next_full
            if full:
                next_full = loop.time() + w.REPORT_INTERVAL
            self.report(only_if_changed=not full)
            with contextlib.suppress(ConnectionError):
                await self.writer.drain()

    async def _read(self) -> None:
        try:
            while True:
                msg = await w.read_message(self.reader)
                if isinstance(msg, w.Apply):
                    await self._apply(msg)
                elif isinstance(msg, w.Stop):
                    await self.stop_all(msg.timeout)
                    self.send(w.Reply(msg.req, True))
                    with contextlib.suppress(ConnectionError):
                        await self.writer.drain()
                    self._stop.set()
                    return
        except w.ChannelClosed as exc:
            log.debug("VRRP child: channel closed (%s): stopping", exc)
            self._stop.set()

    async def _apply(self, msg: w.Apply) -> None:
        from lvsd.daemon.logsetup import SECRET_FILTER

        SECRET_FILTER.secrets.update(msg.secrets)
        self.transport = msg.transport
        self.mono_offset = msg.mono_offset or self.mono_offset
        try:
            detail = await self.apply(msg.config)
        except Exception as exc:  # reported to the parent, which decides (startup: exit 1)
            self.report()
            self.send(w.Reply(msg.req, False, str(exc)))
        else:
            self.report()  # before the reply: a status read after the reload sees the result
            self.send(w.Reply(msg.req, True, None, tuple(detail)))
        if not self._watching:  # from the first apply on (its imports are not a stall)
            self._watching = True
            self._tasks.append(asyncio.create_task(watch(self.watchdog, self._stalled)))
            # keepalived sets the VRRP process's priorities once, when the child starts
            # (vrrp_daemon.c start_vrrp -> set_process_priorities); here: once the runners run
            from lvsd.daemon import procprio

            done = procprio.apply(procprio.plan(msg.config.global_defs))
            if done:
                log.info("VRRP process: %s", ", ".join(done))

    # ---- the runners (what Daemon.apply_vrrp did in-process)
    async def apply(self, cfg: Config) -> list[str]:
        """Make the running VRRP runners match ``cfg``; raise if a new runner cannot start."""
        from lvsd.daemon.vrrpset import make_runner, runner_model, runner_spec, vrrp_groups

        done: list[str] = []
        wanted = vrrp_groups(cfg)
        self.config = cfg
        self.watchdog.threshold = threshold_for(i.advert_int for i in cfg.vrrp_instances)
        models = {k: runner_model(cfg, g, mem) for k, (g, mem) in wanted.items()}
        to_stop = [k for k in self.runners if k not in wanted]
        for k, runner in self.runners.items():
            if k in wanted and models[k] != self.models.get(k):
                # VrrpRunner.update matches members by identity (vrrp.reload_plan): same
                # identity keeps its state (parameters updated in place), a changed one
                # restarts alone
                rs = runner_spec(cfg, *wanted[k], transport=self.transport)
                out = await runner.update(rs.instances, group_notifier=rs.group_notifier)
                self.models[k] = models[k]
                log.info("VRRP %s updated in place (%s)", k, out)
                done.append(f"VRRP {k} updated in place ({out})")
        if to_stop:
            await asyncio.gather(*(self._stop_runner(k, 5.0) for k in to_stop))
            done += [f"VRRP {k} stopped" for k in to_stop]
        for k, (group, members) in wanted.items():
            if k in self.runners:
                continue
            runner = make_runner(cfg, group, members, transport=self.transport,
                                 on_event=self.on_event)
            try:
                await runner.start()
            except Exception as exc:  # e.g. interface missing, no permission for raw sockets
                try:
                    await runner.stop(1.0)
                except Exception as stop_exc:  # the start failure is what gets reported
                    log.debug("VRRP %s: stop after the failed start: %s", k, stop_exc)
                raise RuntimeError(f"VRRP {k}: cannot start: {exc}") from None
            self.runners[k] = runner
            self.models[k] = models[k]
            log.info("VRRP %s started", k)
            done.append(f"VRRP {k} started")
        return done

    async def _stop_runner(self, key: str, timeout: float) -> None:
        runner = self.runners.pop(key)
        self.models.pop(key, None)
        try:
            await runner.stop(timeout=timeout)
        except Exception as exc:
            log.warning("VRRP %s: stop failed: %s", key, exc)
        log.info("VRRP %s stopped", key)

    async def stop_all(self, timeout: float) -> None:
        if self.runners:
            await asyncio.gather(*(self._stop_runner(k, timeout) for k in list(self.runners)))


# what every first Apply needs (the config model to unpickle it; the runners; pyroute2's
# AsyncIPRoute, which a runner's start reads the interfaces with): imported while the parent is
# still loading the config, so that READY does not wait for these imports after the parent's
# start-up
PRELOAD = ("lvsd.config.model", "lvsd.daemon.vrrpset", "lvsd.vrrp.spec", "lvsd.vrrp.runner")


def _light_pyroute2() -> None:
    """Make ``from pyroute2 import AsyncIPRoute`` (what the VRRP stack uses) import only
    pyroute2's iproute, not the package's ``__init__``, which imports every subsystem (NDB,
    IPDB, conntrack, wireguard, ...) for twice the time. The package module is created
    without running its ``__init__``; any other name asked of it runs the ``__init__`` then
    (PEP 562 ``__getattr__``), so the package is whole for whoever wants more."""
    import importlib.util
    import sys
    from pathlib import Path

    if "pyroute2" in sys.modules:
        return
    spec = importlib.util.find_spec("pyroute2")
    if spec is None or spec.loader is None or spec.submodule_search_locations is None:
        return
    pkg = importlib.util.module_from_spec(spec)
    loader = spec.loader
    where = [Path(p) for p in spec.submodule_search_locations]
    whole = False

    def complete(name: str) -> object:
        nonlocal whole
        if whole or (name.startswith("__") and name not in ("__version__", "__all__")) or \
                any((p / name).is_dir() or (p / f"{name}.py").is_file() for p in where):
            # a submodule (`from pyroute2 import config`): the import system imports it
            raise AttributeError(f"module 'pyroute2' has no attribute {name!r}")
        whole = True
        loader.exec_module(pkg)
        return getattr(pkg, name)

    pkg.__getattr__ = complete  # type: ignore[method-assign]
    sys.modules["pyroute2"] = pkg
    try:
        from pyroute2.iproute.linux import AsyncIPRoute
    except BaseException:
        del sys.modules["pyroute2"]
        raise
    pkg.AsyncIPRoute = AsyncIPRoute  # type: ignore[attr-defined]


def _preload() -> None:
    import importlib

    _light_pyroute2()
    for name in PRELOAD:
        importlib.import_module(name)


async def _main(fd: int) -> int:
    _preload()  # before the first request is read: nothing else to do meanwhile
    sock = socket.socket(fileno=fd)
    sock.setblocking(False)
    reader, writer = await asyncio.open_unix_connection(sock=sock)
    child = VrrpChild(reader, writer)
    await child.serve()
    return 0


def main(argv: list[str]) -> int:
    fd, ppid = int(argv[0]), int(argv[1])
    spec: dict[str, Any] = json.loads(argv[2]) if len(argv) > 2 else {}
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2,
                signal.SIGRTMIN + 2):
        signal.signal(sig, signal.SIG_IGN)
    from lvsd.daemon.logsetup import FACILITY_DAEMON, setup_logging

    setup_logging(spec.get("fmt", "text"), bool(spec.get("verbose")),
                  syslog=bool(spec.get("syslog")),
                  facility=int(spec.get("facility", FACILITY_DAEMON)),
                  console=bool(spec.get("console")), logfile=spec.get("logfile"),
                  quiet=True)
    _die_with_parent(ppid)
    return asyncio.run(_main(fd))

