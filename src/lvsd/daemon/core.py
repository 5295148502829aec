"""The :class:`Daemon`: wires config, checks, planner, reconciler, VRRP runners and the status
endpoint into one asyncio process (theory of operation: :mod:`lvsd.daemon`)."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from lvsd.config.model import Config, Severity
from lvsd.config.verdict import Verdict
from lvsd.daemon import snapshot as snap
from lvsd.daemon.configinfo import config_secrets, config_warnings
from lvsd.daemon.logsetup import SECRET_FILTER
from lvsd.daemon.loopwatch import StallTracker, watch
from lvsd.daemon.options import MODES, Options, StartupError
from lvsd.daemon.reload import ConfigState, reload
from lvsd.daemon.sdnotify import sd_notify
from lvsd.status import model as m
from lvsd.status.event_types import Lifecycle, VrrpError, VrrpStateChange

if TYPE_CHECKING:
    from aiohttp import web

    from lvsd.checks.scheduler import Scheduler
    from lvsd.config.model import Script
    from lvsd.daemon.bgpservice import BgpService
    from lvsd.daemon.vrrpproc import VrrpProcess
    from lvsd.dataplane.base import DataPlane
    from lvsd.pool.planner import Plan
    from lvsd.pool.service import PoolService
    from lvsd.preflight import Preflight
    from lvsd.status.listen import DeferredStatus

log = logging.getLogger(__name__)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lvsd")
    except PackageNotFoundError:  # pragma: no cover - run from a tree that is not installed
        return "0+unknown"


class Daemon:
    """One lvsd process. ``await Daemon(opts).run()`` returns the exit status."""

    def __init__(self, opts: Options) -> None:
        if opts.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        self.opts = opts
        self.started_at = time.time()
        self._mono_offset = self.started_at - time.monotonic()
        self.config: Config | None = None
        self.verdict: Verdict | None = None  # the running config's diagnostics
        self.cfg_state = ConfigState(loaded_at=time.time())
        self.ready = False
        self.stopping = False
        from lvsd.status.events import EventBus

        self.bus = EventBus()
        self.scheduler: Scheduler | None = None
        self.dataplane: DataPlane | None = None
        self.pool: PoolService | None = None  # the pool's loop (checks -> plan -> data plane)
        self.vrrp: VrrpProcess | None = None  # the VRRP child process (lvsd.daemon.vrrpchild)
        self.bgp: BgpService | None = None  # BGP announcements (lvsd.daemon.bgpservice)
        self.watchdog = StallTracker()  # this (the main) loop: checks, pool, status
        self.secrets: set[str] = set()
        self.reload_lock = asyncio.Lock()
        self._pid_written = False
        self._hup_pending = False
        self._stop = asyncio.Event()
        self._bg: set[asyncio.Task[Any]] = set()
        self._status_server: DeferredStatus | None = None

    @functools.cached_property
    def version(self) -> str:
        """The package's version, read (importlib.metadata) when first shown, not at start."""
        return _version()

    # ---- pool
    @property
    def plan(self) -> Plan | None:
        """The pool's last plan (None without a pool or before its first plan)."""
        return self.pool.plan if self.pool is not None else None

    # ---- modes
    @property
    def run_vrrp(self) -> bool:
        return self.opts.mode in ("full", "vrrp-only")

    @property
    def run_checks(self) -> bool:
        return self.opts.mode in ("full", "check-only")

    # ---- config
    def _read(self) -> Config:
        from lvsd.config.loader import load

        cfg = load(self.opts.config_file, config_id=self.opts.config_id)
        assert isinstance(cfg, Config)
        return cfg

    def _remember_secrets(self, cfg: Config) -> None:
        # secrets of every config ever read, rejected ones included (their errors are shown)
        self.secrets.update(config_secrets(cfg))
        SECRET_FILTER.secrets.update(self.secrets)

    def load(self) -> Config:
        cfg = self._read()
        self._remember_secrets(cfg)
        return cfg

    async def load_checked(self) -> Preflight:
        """:meth:`load` + :meth:`preflight` in a worker thread: a 37,000-server file is seconds
        of CPU, and the main loop (checks, the pool's writes, status) goes on meanwhile. The
        secrets are noted on the loop (the log filter reads them there)."""

        def work() -> tuple[Config, Preflight]:
            cfg = self._read()
            return cfg, self.preflight(cfg)

        cfg, pf = await asyncio.to_thread(work)
        self._remember_secrets(cfg)
        return pf

    def preflight(self, cfg: Config) -> Preflight:
        """Everything ``lvsd check-config`` checks, for this daemon's mode and data plane: the
        verdict and the config to run (:mod:`lvsd.preflight`: one code path for run, reload and
        check-config)."""
        from lvsd.preflight import preflight

        return preflight(cfg, mode=self.opts.mode, dataplane=self.opts.dataplane,
                         strict=self.opts.strict, vrrp_transport=self.opts.vrrp_transport,
                         nft_table=self.opts.nft_table)

    def log_diagnostics(self, verdict: Verdict, what: str = "config") -> None:
        """Each diagnostic once, in position order, keepalived's text after ``what: ``."""
        for d in verdict.diagnostics:
            level = logging.WARNING if d.severity is Severity.WARNING else logging.ERROR
            log.log(level, "%s: %s", what, d)

    # ---- data plane
    async def open_dataplane(self) -> None:
        from lvsd.dataplane.base import DataPlaneError

        name = self.opts.dataplane
        try:
            if name == "memory":
                from lvsd.dataplane.memory import MemoryDataPlane

                self.dataplane = MemoryDataPlane()
            elif name == "nftables":
                from lvsd.dataplane.nftables import NftablesDataPlane

                nft = NftablesDataPlane(self.opts.nft_table)
                await nft.dump()  # fails now if nft is missing / not permitted
                self.dataplane = nft
            elif name == "ipvs":
                from lvsd.dataplane.ipvs import IPVSDataPlane

                ipvs = IPVSDataPlane()
                await ipvs.open()
                self.dataplane = ipvs
            else:
                raise StartupError(f"unknown data plane {name!r} (ipvs, nftables or memory)")
        except DataPlaneError as exc:
            raise StartupError(f"{name} data plane unavailable: {exc}") from None

    # ---- lifecycle
    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        # handlers first: a HUP during startup must not kill the process (default action)
        handlers: dict[int, Callable[[], object]] = {
            signal.SIGHUP: self._on_hup, signal.SIGTERM: self._stop.set,
            signal.SIGINT: self._stop.set,
            signal.SIGUSR1: functools.partial(self._dump, "data"),
            signal.SIGUSR2: functools.partial(self._dump, "stats"),
            signal.SIGRTMIN + 2: functools.partial(self._dump, "json")}
        for sig, fn in handlers.items():
            loop.add_signal_handler(sig, fn)
        self._watch_task = loop.create_task(watch(self.watchdog, self._stalled))
        try:
            try:
                await self._startup()
            except StartupError as exc:
                if self.opts.log_format == "json":
                    log.error("%s", exc)
                else:  # one line, not a log record twice
                    print(f"lvsd: {exc}", file=sys.stderr)
                await self._shutdown()
                return 1
            if self._hup_pending and not self._stop.is_set():
                self._on_hup()
            await self._stop.wait()
            log.info("stopping (signal)")
            sd_notify("STOPPING=1")
            try:
                await asyncio.wait_for(self._shutdown(), self.opts.stop_timeout)
            except TimeoutError:
                log.error("shutdown did not finish within %.0f s; exiting anyway",
                          self.opts.stop_timeout)
            log.info("stopped")
            return 0
        finally:
            for sig in handlers:
                loop.remove_signal_handler(sig)
            self._watch_task.cancel()

    def _stalled(self, stall: float) -> None:
        log.warning("main event loop was blocked for %.0f ms (checks, pool and status wait "
                    "meanwhile; VRRP runs in its own process)", stall * 1e3)

    async def _startup(self) -> None:
        self._write_pid()  # first, as keepalived: "already running" before anything else
        if self.run_vrrp:  # first: its imports overlap the config load below
            from lvsd.daemon.logsetup import CURRENT
            from lvsd.daemon.vrrpproc import VrrpProcess

            self.vrrp = VrrpProcess(self._on_vrrp, CURRENT)
            try:
                await self.vrrp.start()
            except OSError as exc:
                raise StartupError(f"cannot start the VRRP child process: {exc}") from None
        pf = await self.load_checked()
        cfg, verdict = pf.config, pf.verdict
        self.log_diagnostics(verdict)
        if not verdict.runnable:
            raise StartupError(f"{self.opts.config_file}: not starting, {verdict.reason()}")
        if self.run_checks:
            await self.open_dataplane()
        self.config = cfg
        self.verdict = verdict
        self.cfg_state = ConfigState(loaded_at=time.time())
        await self._start_status()
        if self.run_checks:
            await self._start_pool(cfg)
            if cfg.bgp_announces:  # (the BGP modules only for a config that announces)
                from lvsd.daemon.bgpservice import start_bgp

                await start_bgp(self, cfg)  # after the pool: health is quorum + programmed table
        if self.run_vrrp:
            await self.apply_vrrp(cfg)
        self.ready = True
        self.bus.publish(Lifecycle("ready", cfg.config_id, self.opts.mode))
        log.info("ready: %d VRRP instance(s), %d virtual server(s), %s data plane, mode %s",
                 len(cfg.vrrp_instances) if self.run_vrrp else 0,
                 len(cfg.virtual_servers) if self.run_checks else 0,
                 self.opts.dataplane if self.run_checks else "no", self.opts.mode)
        sd_notify(f"READY=1\nSTATUS=running config {cfg.config_id}\nMAINPID={os.getpid()}")
        if self._status_server is not None:
            self._status_server.serve_soon()

    def _write_pid(self) -> None:
        if not self.opts.pid_file:
            return
        from lvsd.daemon import pidfile  # a lock, not the file's content, decides (pidfile.py)

        try:
            self._pid_written = pidfile.acquire(self.opts.pid_file)
        except pidfile.AlreadyRunning as exc:
            raise StartupError(str(exc)) from None

    async def _start_status(self) -> None:
        if not self.opts.status_listen:
            return
        # the address now, the HTTP app (aiohttp) right after READY (lvsd.status.listen)
        from lvsd.status.listen import DeferredStatus, TokenError, parse_listen, read_token_file

        try:
            host, port = parse_listen(self.opts.status_listen)
        except ValueError as exc:
            raise StartupError(f"--status-listen: {exc}") from None
        token = None
        if self.opts.status_token_file:
            try:
                token = read_token_file(self.opts.status_token_file)
            except TokenError as exc:
                raise StartupError(str(exc)) from None

        def make_app() -> web.Application:
            from lvsd.status.app import create_app

            return create_app(self.snapshot, self.bus, token=token,
                              secrets=lambda: sorted(self.secrets),
                              health=lambda: (self.ready, self.stopping))

        srv = DeferredStatus(make_app, host, port)
        try:
            await srv.open()
        except OSError as exc:
            raise StartupError(f"status endpoint {host}:{port}: {exc.strerror or exc}") from None
        self._status_server = srv
        log.info("status endpoint on http://%s:%d/", host if ":" not in host else f"[{host}]",
                 srv.port)

    async def _start_pool(self, cfg: Config) -> None:
        """Wire the pool: checks, planner and reconciler under one :class:`PoolService`."""
        from lvsd.checks.scheduler import Scheduler
        from lvsd.pool.planner import Planner
        from lvsd.pool.reconciler import Reconciler
        from lvsd.pool.service import PoolService
        from lvsd.scriptrun import NOTIFY_TIMEOUT, ScriptRunner, ScriptSpec

        assert self.dataplane is not None
        g = cfg.global_defs

        async def run_script(sc: Script) -> object:
            """quorum_up/down, notify_up/down (keepalived notify_exec) through the one
            script runner, with the global_defs of the config running now (reloads too)."""
            gd = self.config.global_defs if self.config is not None else g
            runner = ScriptRunner(gd.script_user, gd.script_group,
                                  security=gd.enable_script_security)
            out = await runner.run(ScriptSpec(sc.command, sc.user, sc.group),
                                   timeout=NOTIFY_TIMEOUT,
                                   log=lambda msg: log.warning("script: %s", msg))
            if not out.ok:
                log.warning("script: %r %s", sc.command, out.describe())
            return out.status

        reconciler = Reconciler(self.dataplane, flush_on_start=g.lvs_flush,
                                flush_on_stop=g.lvs_flush_on_stop, timeouts=g.lvs_timeouts)
        self.scheduler = Scheduler(cfg)
        self.pool = PoolService(self.scheduler, Planner(cfg), reconciler,
                                sweep_interval=self.opts.sweep_interval,
                                publish=self.bus.publish, run_script=run_script)
        # first full reconcile (adopts what the data plane holds, or flushes with lvs_flush)
        await self.pool.start()
        # config, plan and table live for the whole run: take them out of the cyclic GC's scans
        # (a 37,000-server planner pass spent ~15% of its time in gen-2 collections of them)
        import gc

        gc.freeze()
        # per-check objects live about a delay_loop: at Python's default thresholds (700, 10, 10)
        # they reach the oldest generation and a full pass (which also walks the status
        # snapshot) ran every ~3 s at 10,000 checks/s, 7-16 % of wall time; with a larger
        # young generation they die young (bench/daemon_checks.py --gc-threshold: 11.3 % -> 3.8 %
        # of wall time, no full pass in 30 s)
        gc.set_threshold(50_000, 20, 100)

    def reload_pool(self, cfg: Config) -> None:
        """Reload: checkers and planner take ``cfg`` (state kept by identity); a pass follows."""
        assert self.pool is not None
        self.pool.reload(cfg)
        if self.bgp is not None or cfg.bgp_announces:
            from lvsd.daemon.bgpservice import reload_bgp

            self._background(reload_bgp(self, cfg))

    # ---- VRRP
    def _on_vrrp(self, name: str, kind: str, info: dict[str, Any]) -> None:
        if kind == "state":
            if self.pool is not None and info.get("state"):  # lvs_sync_daemon follows it
                self.pool.vrrp_state(name, str(info["state"]))
            self.bus.publish(VrrpStateChange(name, info.get("previous"), info.get("state"),
                                             info.get("reason")))
        else:
            self.bus.publish(VrrpError(name, info.get("message")))

    async def apply_vrrp(self, cfg: Config) -> None:
        """Make the VRRP child's runners match ``cfg`` (startup and reload); raise
        :class:`StartupError` with the child's reason when it cannot."""
        from lvsd.daemon.vrrpproc import ChildGone

        assert self.vrrp is not None
        try:
            reply = await self.vrrp.apply(cfg, transport=self.opts.vrrp_transport,
                                          secrets=tuple(sorted(self.secrets)),
                                          mono_offset=self._mono_offset)
        except ChildGone as exc:
            raise StartupError(str(exc)) from None
        if not reply.ok:
            raise StartupError(reply.error or "VRRP: cannot apply the config")

    # ---- reload
    def _on_hup(self) -> None:
        if not self.ready:  # during startup: reload once it is done
            self._hup_pending = True
            return
        self._background(self.reload())

    def _background(self, coro: Coroutine[Any, Any, object]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._bg.add(task)
        task.add_done_callback(self._bg.discard)

    async def reload(self) -> bool:
        """SIGHUP: validate fully, then apply; on any error keep the running config."""
        return await reload(self)

    # ---- shutdown
    async def _shutdown(self) -> None:
        self.stopping = True
        if self.bgp is not None:  # first: withdraw the routes, then BIRD's Cease
            bgp, self.bgp = self.bgp, None
            await bgp.stop()
        if self.vrrp is not None:  # first: a master sends priority 0 and drops its VIPs
            await self.vrrp.stop(timeout=min(5.0, self.opts.stop_timeout / 2))
        if self.pool is not None:  # checks, omega scripts, reconciler (table left or flushed)
            await self.pool.stop(script_timeout=max(1.0, self.opts.stop_timeout / 3))
        from lvsd.scriptrun import wait_stopped

        await wait_stopped()  # scripts being stopped end in SIGKILL of their process group
        if self._bg:
            await asyncio.wait(set(self._bg), timeout=2.0)
        if self._status_server is not None:
            await self._status_server.stop()
            self._status_server = None
        if self.dataplane is not None:
            try:
                await self.dataplane.close()
            except Exception as exc:  # stopping anyway: say so, go on with the pid file
                log.warning("data plane %s: close failed: %s", self.dataplane.name, exc)
        if self.opts.pid_file and self._pid_written:
            from lvsd.daemon import pidfile

            pidfile.release(self.opts.pid_file)  # removed if still ours, lock dropped

    # ---- dumps (keepalived signals)
    def _dump(self, what: str) -> None:
        from lvsd.status import dumps

        fn = {"data": dumps.dump_data, "stats": dumps.dump_stats, "json": dumps.dump_json}[what]
        try:
            paths = fn(self.snapshot(), self.opts.dump_dir)
            log.info("dumped %s to %s", what, ", ".join(map(str, paths)))
        except OSError as exc:
            log.error("cannot write %s dump in %s: %s", what, self.opts.dump_dir, exc)

    # ---- status snapshot (read-only view of everything above)
    def snapshot(self) -> m.Snapshot:
        conv = snap.mono_to_wall(self._mono_offset)
        cfg = self.config
        st = self.cfg_state
        config_status = m.ConfigStatus(
            file=self.opts.config_file, config_id=cfg.config_id if cfg else "",
            router_id=cfg.global_defs.router_id if cfg else None,
            loaded_at=st.loaded_at, generation=st.generation, reloads_total=st.reloads_total,
            reload_failures_total=st.reload_failures_total, last_reload_at=st.last_reload_at,
            last_reload_ok=st.last_reload_ok, last_reload_errors=st.last_reload_errors,
            warnings=tuple(config_warnings(cfg)) if cfg else (),
            diagnostics=snap.config_diagnostics(self.verdict),
            diagnostics_total=self.verdict.counts() if self.verdict is not None else {},
            strict=self.opts.strict)
        vr = self.vrrp
        stalls = {"main": self.watchdog.max_stall}
        over = {"main": self.watchdog.over_threshold}
        if vr is not None:
            stalls["vrrp"] = vr.loop_health.max_stall
            over["vrrp"] = vr.loop_health.stalls_over_threshold
        proc = m.ProcessStatus(os.getpid(), self.version, self.started_at, self.opts.mode,
                               self.ready, self.stopping,
                               vrrp_pid=vr.pid if vr is not None else None,
                               vrrp_respawns=vr.respawns if vr is not None else 0,
                               loop_max_stall=stalls, loop_stalls_over_threshold=over)
        pool = self.pool.view() if self.pool is not None else None
        sched = self.scheduler
        if pool is None:
            reconciler = m.ReconcilerStatus(
                "none" if self.dataplane is None else self.dataplane.name)
        else:
            reconciler = snap.reconciler_status(pool)
        bgp = None
        if self.bgp is not None:
            from lvsd.daemon.bgpservice import bgp_status

            bgp = bgp_status(self.bgp, conv)
        return m.Snapshot(
            process=proc, config=config_status, generated_at=time.time(),
            instances=self.vrrp.instances if self.vrrp is not None else (),
            virtual_servers=snap.vs_status(cfg, pool, conv),
            checkers=snap.checkers_status(sched.status() if sched is not None else (), conv),
            reconciler=reconciler, bgp=bgp)
