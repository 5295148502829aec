"""``lvsd run -f FILE``: one asyncio process running VRRP, the health checks and the pool.

Theory of operation
-------------------
Data flows one way::

    config --> check scheduler --(health)--> planner --(desired table)--> reconciler --> data plane
       \\--> VRRP runners (VIPs, adverts, notify)
    status app <-- read-only snapshots of all of the above

Like keepalived, every director runs its checkers and programs its pool whatever its VRRP
state; only the VRRP master holds the VIPs, so only the master receives traffic (a backup's
table is ready the moment it takes over).

* The *pool task* is the only writer of the data plane (through the reconciler): it wakes on
  every health change, on reload, and every ``--sweep`` seconds; it plans (planner), runs the
  plan's quorum/notify scripts, sets the reconciler's desired table and reconciles. The status
  page's table is the reconciler's own view (its last full read plus what it read and applied
  since), so a pass reads the data plane once, not twice; the connection counters (``stats``,
  a full read with counters) are refreshed at start and on every sweep only.
* Startup: load + validate the config (errors: exit 1 with ``file:line`` messages), open the
  data plane (a kernel without IPVS: one line telling to use ``--dataplane nftables``), start
  the status endpoint, the checks, the first full reconcile, then the VRRP runners; then
  ``READY=1`` to systemd (``Type=notify``).
* SIGHUP: ``RELOADING=1``; load and validate the new file *completely* first (config
  diagnostics, VRRP instance specs, a trial plan, what the data plane refuses). Any error: the
  old config keeps running untouched; the errors go to the log, ``/status`` (``config``) and a
  ``reload`` event. Otherwise apply the difference: ``Scheduler.update`` (unchanged checkers
  keep state and retry counts, new ones start like at boot, alpha respected), ``Planner.reload``
  (same virtual servers keep quorum state), VRRP: an instance (or sync group) whose
  configuration is unchanged keeps its runner, and so its state, counters and VIPs. A changed
  one goes to ``VrrpRunner.update``: members whose identity (interface, vrid, version, family)
  is unchanged keep their state and take the new parameters in place (priority, advert_int,
  preempt, auth, tracking, VIPs, garp, notify); one whose identity changed is stopped
  (priority 0, VIPs removed) and started again. An instance moving into or out of a sync
  group, or renamed outside one, is a new runner (stopped + started). Removed instances are
  stopped (notify_stop), new ones started. Then ``READY=1``.
* SIGTERM/SIGINT: the VRRP runners stop first (a master sends priority 0 and removes its VIPs:
  RFC 5798 §6.4.3, the backup takes over after Skew_Time; notify_stop runs), then the checks
  stop, virtual servers with ``omega`` run their quorum_down/notify_down scripts (keepalived),
  the reconciler stops (the table stays unless ``lvs_flush_on_stop``), the status endpoint
  closes. The whole shutdown is bounded (``--stop-timeout``); the process then exits.
* SIGUSR1 / SIGUSR2 / SIGRTMIN+2: keepalived's dump files (data / stats / JSON) in
  ``--dump-dir`` (default /tmp), see :mod:`lvsd.status.dumps`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from lvsd.config.model import NOPOS, Config, Pos, Severity, VrrpInstance

log = logging.getLogger("lvsd")

DEFAULT_STATUS_LISTEN = "127.0.0.1:9330"
DEFAULT_CONFIG = "/etc/keepalived/keepalived.conf"
DEFAULT_PID_FILE = "/run/lvsd.pid"
MODES = ("full", "vrrp-only", "check-only")
TRANSITIONS_KEPT = 20


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("lvsd")
    except Exception:  # pragma: no cover - not installed
        return "0+unknown"


# ----------------------------------------------------------------------------- systemd


def sd_notify(message: str, env: Mapping[str, str] | None = None) -> bool:
    """Send ``message`` (e.g. ``READY=1``) to systemd's $NOTIFY_SOCKET; False if not set.

    A minimal sd_notify(3): one AF_UNIX datagram; an ``@`` prefix means the abstract namespace.
    Errors are logged, never raised: a supervisor problem must not stop the daemon.
    """
    addr = (env if env is not None else os.environ).get("NOTIFY_SOCKET")
    if not addr:
        return False
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.connect(addr)
            s.sendall(message.encode())
    except OSError as exc:
        log.warning("sd_notify(%s) failed: %s", message.split("\n")[0], exc)
        return False
    return True


# ----------------------------------------------------------------------------- logging


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": round(record.created, 6),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            "pid": record.process,
        }
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out)


class SecretFilter(logging.Filter):
    """Masks every known secret (auth_pass values of every config ever loaded) in log records."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()
        self._pid_written = False
        self._hup_pending = False

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            msg = record.getMessage()
            masked = msg
            for s in self.secrets:
                if s and s in masked:
                    masked = masked.replace(s, "<redacted>")
            if masked != msg:
                record.msg, record.args = masked, None
        return True


SECRET_FILTER = SecretFilter()


def setup_logging(fmt: str, verbose: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(SECRET_FILTER)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(
            "%(asctime)s lvsd[%(process)d] %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)


# ----------------------------------------------------------------------------- options


@dataclass
class Options:
    config_file: str
    config_id: str | None = None
    dataplane: str = "ipvs"
    status_listen: str | None = DEFAULT_STATUS_LISTEN  # None: no status endpoint
    status_token_file: str | None = None
    pid_file: str | None = None
    log_format: str = "text"
    mode: str = "full"
    dump_dir: str = "/tmp"
    vrrp_transport: str = "raw"
    sweep_interval: float = 10.0
    stop_timeout: float = 10.0
    nft_table: str = "lvsd"
    verbose: bool = False


class StartupError(Exception):
    """A reason not to start, printed as one line (no traceback)."""


# ----------------------------------------------------------------------------- helpers


def _strip_pos(obj: Any) -> Any:
    """A copy of a frozen model object with every ``pos`` reset (for change detection)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        if isinstance(obj, Pos):
            return NOPOS
        changes = {}
        for f in dataclasses.fields(obj):
            v = getattr(obj, f.name)
            nv = NOPOS if f.name == "pos" else _strip_pos(v)
            if nv is not v:
                changes[f.name] = nv
        return dataclasses.replace(obj, **changes) if changes else obj
    if isinstance(obj, tuple):
        return tuple(_strip_pos(v) for v in obj)
    return obj


def config_errors(cfg: Config) -> list[str]:
    return [str(d) for d in cfg.diagnostics if d.severity is not Severity.WARNING]


def config_warnings(cfg: Config) -> list[str]:
    return [str(d) for d in cfg.diagnostics if d.severity is Severity.WARNING]


def config_secrets(cfg: Config | None) -> list[str]:
    if cfg is None:
        return []
    out = [i.auth_pass for i in cfg.vrrp_instances if i.auth_pass]
    ssl = cfg.global_defs.ssl
    if ssl is not None and ssl.password:
        out.append(ssl.password)
    return out


def _mono_to_wall(off: float) -> Callable[[float | None], float | None]:
    """Monotonic -> Unix time with a fixed offset (so repeated snapshots agree exactly)."""

    def conv(t: float | None) -> float | None:
        return None if t is None else t + off

    return conv


# ----------------------------------------------------------------------------- the daemon


@dataclass
class _ConfigState:
    loaded_at: float
    generation: int = 1
    reloads_total: int = 0
    reload_failures_total: int = 0
    last_reload_at: float | None = None
    last_reload_ok: bool | None = None
    last_reload_errors: tuple[str, ...] = ()


@dataclass
class _PoolState:
    last_ops: tuple[str, ...] = ()
    errors_total: int = 0
    last_error: str | None = None
    actual: Mapping[Any, Any] = field(default_factory=dict)  # last dump, for status
    stats: Mapping[Any, Any] = field(default_factory=dict)
    stats_at: float | None = None  # time.monotonic() of the stats read (drains may end early)


class Daemon:
    """One lvsd process. ``await Daemon(opts).run()`` returns the exit status."""

    def __init__(self, opts: Options) -> None:
        if opts.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        self.opts = opts
        self.version = _version()
        self.started_at = time.time()
        self._mono_offset = self.started_at - time.monotonic()
        self.config: Config | None = None
        self.cfg_state = _ConfigState(loaded_at=time.time())
        self.ready = False
        self.stopping = False
        from lvsd.status.events import EventBus

        self.bus = EventBus()
        self.scheduler: Any = None
        self.planner: Any = None
        self.reconciler: Any = None
        self.dataplane: Any = None
        self.plan: Any = None
        self.pool = _PoolState()
        self.runners: dict[str, Any] = {}  # key: sync group name or instance name
        self.runner_models: dict[str, tuple[Any, ...]] = {}  # key -> stripped models
        self.secrets: set[str] = set()
        self._pid_written = False
        self._hup_pending = False
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._pool_task: asyncio.Task[None] | None = None
        self._reload_lock = asyncio.Lock()
        self._bg: set[asyncio.Task[Any]] = set()
        self._status_server: Any = None
        self._lvs_notifier: Any = None
        self._checker_up: dict[tuple[str, str], bool | None] = {}
        self._vs_states: dict[str, tuple[bool, bool]] = {}
        self._draining: Mapping[Any, float] = {}  # lvs_drain_on_remove: server -> drain end

    # ---- modes
    @property
    def run_vrrp(self) -> bool:
        return self.opts.mode in ("full", "vrrp-only")

    @property
    def run_checks(self) -> bool:
        return self.opts.mode in ("full", "check-only")

    # ---- config
    def load(self) -> Config:
        from lvsd.config.loader import load

        cfg = load(self.opts.config_file, config_id=self.opts.config_id)
        assert isinstance(cfg, Config)
        # secrets of every config ever read, rejected ones included (their errors are shown)
        self.secrets.update(config_secrets(cfg))
        SECRET_FILTER.secrets.update(self.secrets)
        return cfg

    def validate(self, cfg: Config) -> list[str]:
        """Every reason not to run ``cfg`` (empty: good). Never raises."""
        errors = config_errors(cfg)
        if cfg.fatal:
            return errors
        if self.run_vrrp:
            from lvsd.vrrp.runner import InstanceSpec

            names = {i.name for i in cfg.vrrp_instances}
            for sg in cfg.vrrp_sync_groups:
                for n in sg.group:
                    if n not in names:
                        errors.append(f"{sg.pos}: vrrp_sync_group {sg.name}: unknown "
                                      f"vrrp_instance {n}")
            for inst in cfg.vrrp_instances:
                try:
                    InstanceSpec.from_config(inst, cfg, transport=self.opts.vrrp_transport)
                except (ValueError, KeyError) as exc:
                    errors.append(f"{inst.pos}: vrrp_instance {inst.name}: {exc}")
        if self.run_checks:
            errors += self._validate_pool(cfg)
        return errors

    def _validate_pool(self, cfg: Config) -> list[str]:
        from lvsd.checks.health import RealServerHealth
        from lvsd.pool.planner import Planner

        trial = Planner(cfg)
        # every real server alive, so that every destination is checked against the data plane
        alive = {Planner.rs_id(vs, rs): RealServerHealth(alive=True)
                 for vs in cfg.virtual_servers for rs in vs.real_servers}
        try:
            plan = trial.plan(alive, time.monotonic())
        except Exception as exc:  # a planner bug must not take the daemon down
            return [f"cannot plan the pool: {type(exc).__name__}: {exc}"]
        errors = list(plan.problems)
        dp = self.dataplane
        if dp is not None:
            for key, entry in plan.table.items():
                why = dp.refuse(entry.spec)
                if why:
                    errors.append(f"{key}: {why}")
                for d in entry.dests.values():
                    why = dp.refuse(d)
                    if why:
                        errors.append(f"{key}: {why}")
        return errors

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

                self.dataplane = NftablesDataPlane(self.opts.nft_table)
                await self.dataplane.dump()  # fails now if nft is missing / not permitted
            elif name == "ipvs":
                from lvsd.dataplane.ipvs import IPVSDataPlane

                self.dataplane = IPVSDataPlane()
                await self.dataplane.open()
            else:
                raise StartupError(f"unknown data plane {name!r} (ipvs, nftables or memory)")
        except DataPlaneError as exc:
            raise StartupError(f"{name} data plane unavailable: {exc}") from None

    # ---- lifecycle
    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        # handlers first: a HUP during startup must not kill the process (default action)
        for sig, fn in ((signal.SIGHUP, self._on_hup), (signal.SIGTERM, self._stop.set),
                        (signal.SIGINT, self._stop.set), (signal.SIGUSR1, self._dump_data),
                        (signal.SIGUSR2, self._dump_stats),
                        (signal.SIGRTMIN + 2, self._dump_json)):
            loop.add_signal_handler(sig, fn)
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
            for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGUSR1,
                        signal.SIGUSR2, signal.SIGRTMIN + 2):
                loop.remove_signal_handler(sig)

    async def _startup(self) -> None:
        cfg = self.load()
        for w in config_warnings(cfg):
            log.warning("config: %s", w)
        if self.run_checks:
            await self.open_dataplane()
        errors = self.validate(cfg)
        if errors:
            for e in errors:
                log.error("config: %s", e)
            raise StartupError(f"{self.opts.config_file}: {len(errors)} configuration "
                               f"error(s), not starting: {errors[0]}"
                               + (" (see log for the rest)" if len(errors) > 1 else ""))
        self.config = cfg
        self.cfg_state = _ConfigState(loaded_at=time.time())
        self._write_pid()
        await self._start_status()
        if self.run_checks:
            await self._start_pool(cfg)
        if self.run_vrrp:
            await self._apply_vrrp(cfg)
        self.ready = True
        self.bus.publish("lifecycle", {"what": "ready", "config_id": cfg.config_id,
                                       "mode": self.opts.mode})
        log.info("ready: %d VRRP instance(s), %d virtual server(s), %s data plane, mode %s",
                 len(cfg.vrrp_instances) if self.run_vrrp else 0,
                 len(cfg.virtual_servers) if self.run_checks else 0,
                 self.opts.dataplane if self.run_checks else "no", self.opts.mode)
        sd_notify(f"READY=1\nSTATUS=running config {cfg.config_id}\nMAINPID={os.getpid()}")

    def _write_pid(self) -> None:
        if not self.opts.pid_file:
            return
        try:
            with open(self.opts.pid_file, encoding="ascii") as fh:
                other = int(fh.read().strip() or "0")
        except (OSError, ValueError):
            other = 0
        if other and other != os.getpid():
            try:
                os.kill(other, 0)
                alive = True
            except ProcessLookupError:
                alive = False
            except PermissionError:
                alive = True
            if alive:
                raise StartupError(f"already running: pid {other} (pid file "
                                   f"{self.opts.pid_file}); stop it or use another --pid-file")
        try:
            tmp = f"{self.opts.pid_file}.{os.getpid()}.tmp"
            with open(tmp, "w", encoding="ascii") as fh:
                fh.write(f"{os.getpid()}\n")
            os.replace(tmp, self.opts.pid_file)
            self._pid_written = True
        except OSError as exc:
            raise StartupError(f"pid file {self.opts.pid_file}: {exc.strerror or exc}") from None

    async def _start_status(self) -> None:
        if not self.opts.status_listen:
            return
        from lvsd.status.app import (
            StatusServer,
            TokenError,
            create_app,
            parse_listen,
            read_token_file,
        )

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
        app = create_app(self.snapshot, self.bus, token=token,
                         secrets=lambda: sorted(self.secrets),
                         health=lambda: (self.ready, self.stopping))
        srv = StatusServer(app, host, port)
        try:
            await srv.start()
        except OSError as exc:
            raise StartupError(f"status endpoint {host}:{port}: {exc.strerror or exc}") from None
        self._status_server = srv
        log.info("status endpoint on http://%s:%d/", host if ":" not in host else f"[{host}]",
                 srv.port)

    async def _start_pool(self, cfg: Config) -> None:
        from lvsd.checks.scheduler import Scheduler
        from lvsd.pool.planner import Planner
        from lvsd.pool.reconciler import Reconciler
        from lvsd.vrrp.notify import Notifier

        g = cfg.global_defs
        self._lvs_notifier = Notifier("LVS", "lvsd", {}, (), default_user=g.script_user,
                                      default_group=g.script_group,
                                      on_error=lambda m: log.warning("script: %s", m))
        self.planner = Planner(cfg)
        self.reconciler = Reconciler(self.dataplane, sweep_interval=self.opts.sweep_interval,
                                     flush_on_start=g.lvs_flush,
                                     flush_on_stop=g.lvs_flush_on_stop)
        self.scheduler = Scheduler(cfg, on_change=self._on_health)
        await self.scheduler.start()
        # first full reconcile (adopts what the data plane holds, or flushes with lvs_flush)
        self._plan("start")
        result = await self.reconciler.start(run_loop=False)
        self._record_reconcile(result)
        await self._read_back()
        # config, plan and table live for the whole run: take them out of the cyclic GC's scans
        # (a 37,000-server planner pass spent ~15% of its time in gen-2 collections of them)
        import gc

        gc.freeze()
        self._pool_task = asyncio.create_task(self._pool_loop(), name="lvsd-pool")

    # ---- health -> plan -> reconcile
    def _on_health(self, ev: Any) -> None:
        rsid, h = ev.rsid, ev.health
        self.bus.publish("realserver", {
            "vs": rsid.vs, "rs": f"[{rsid.addr}]:{rsid.port}" if ":" in rsid.addr
            else f"{rsid.addr}:{rsid.port}",
            "alive": None if h is None else h.alive,
            "reason": "" if h is None else h.reason,
            "failed_checkers": [] if h is None else list(h.failed_checkers)})
        if h is not None:
            log.info("real server %s %s (%s)", rsid, "UP" if h.alive else "DOWN", h.reason)
        self._wake.set()

    def _plan(self, reason: str) -> None:
        assert self.planner is not None and self.scheduler is not None
        plan = self.planner.plan(self.scheduler.health, time.monotonic(), self.pool.stats,
                                 self.pool.stats_at)
        self.plan = plan
        for rid, end in plan.draining.items():
            if rid not in self._draining:
                log.info("real server %s removed by reload: draining at weight 0 for %.0f s",
                         rid, max(0.0, end - time.monotonic()))
        for rid in set(self._draining) - set(plan.draining):
            log.info("real server %s drained: removed", rid)
        self._draining = plan.draining
        for p in plan.problems:
            log.error("pool: %s", p)
        for act in plan.actions:
            self._run_action(act)
        for ident, st in plan.states.items():
            prev = self._vs_states.get(ident)
            cur = (st.quorum_up, st.sorry_active)
            if prev != cur:
                self.bus.publish("quorum", {"vs": ident, "quorum_up": st.quorum_up,
                                            "sorry_active": st.sorry_active,
                                            "live_weight": st.live_weight, "alive": st.alive})
                if prev is not None:
                    log.info("virtual server %s quorum %s%s", ident,
                             "up" if st.quorum_up else "DOWN",
                             " (sorry server active)" if st.sorry_active else "")
            self._vs_states[ident] = cur
        for gone in set(self._vs_states) - set(plan.states):
            del self._vs_states[gone]
        self.reconciler.set_desired(plan.table)

    def _run_action(self, act: Any) -> None:
        from lvsd.vrrp.notify import ScriptSpec

        self.bus.publish("action", {"kind": act.kind, "vs": act.vs,
                                    "rs": str(act.rs) if act.rs else None,
                                    "message": act.message})
        if act.script is None or self._lvs_notifier is None:
            return
        sc = act.script
        task = asyncio.get_running_loop().create_task(
            self._lvs_notifier.run_one(ScriptSpec(sc.command, sc.user, sc.group)))
        self._bg.add(task)
        task.add_done_callback(self._bg.discard)

    def _record_reconcile(self, result: Any) -> None:
        from lvsd.pool.table import describe

        if result.ops:
            self.pool.last_ops = tuple(describe(op) for op in result.ops)
            self.bus.publish("reconcile", {"reason": result.reason, "ops": list(self.pool.last_ops),
                                           "repairs": result.repairs})
        if result.failed:
            self.pool.errors_total += len(result.failed)
            self.pool.last_error = f"{result.failed[0].op}: {result.failed[0].error}"
            self.bus.publish("alarm", {"alarms": [f"{a.op}: {a.error}" for a in result.failed]})

    async def _read_back(self, *, counters: bool = True) -> None:
        """Status only: the table as the reconciler last saw it (no read of its own), and the
        connection counters (one read of the data plane) when ``counters``."""
        from lvsd.dataplane.base import DataPlaneError

        self.pool.actual = self.reconciler.status.actual
        if not counters:
            return
        try:
            self.pool.stats = await self.dataplane.stats()
            self.pool.stats_at = time.monotonic()
        except DataPlaneError:
            self.pool.stats, self.pool.stats_at = {}, None

    async def _pool_loop(self) -> None:
        while True:
            timeout, reason = self.opts.sweep_interval, "sweep"
            deadline = self.plan.next_deadline if self.plan is not None else None
            if deadline is not None and deadline - time.monotonic() < timeout:
                timeout, reason = max(0.0, deadline - time.monotonic()), "drain end"
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
                reason = "change"
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                self._plan(reason)
                result = await self.reconciler.reconcile(reason)
                self._record_reconcile(result)
                await self._read_back(counters=reason == "sweep")
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the loop must survive anything: log, next pass
                self.pool.errors_total += 1
                self.pool.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("pool pass (%s) failed", reason)

    # ---- VRRP
    def _vrrp_groups(self, cfg: Config) -> dict[str, tuple[str | None, list[VrrpInstance]]]:
        by_name = {i.name: i for i in cfg.vrrp_instances}
        out: dict[str, tuple[str | None, list[VrrpInstance]]] = {}
        grouped: set[str] = set()
        for sg in cfg.vrrp_sync_groups:
            members = [by_name[n] for n in sg.group if n in by_name]
            grouped.update(sg.group)
            if members:
                out[f"group {sg.name}"] = (sg.name, members)
        for inst in cfg.vrrp_instances:
            if inst.name not in grouped:
                out[inst.name] = (None, [inst])
        return out

    def _runner_model(self, cfg: Config, group: str | None,
                      members: list[VrrpInstance]) -> tuple[Any, ...]:
        g = _strip_pos(cfg.global_defs)
        sg = next((s for s in cfg.vrrp_sync_groups if s.name == group), None)
        scripts = {ref.name for i in members for ref in i.track_scripts}
        vs = tuple(_strip_pos(s) for s in cfg.vrrp_scripts if s.name in scripts)
        return (g, _strip_pos(sg), tuple(_strip_pos(i) for i in members), vs)

    def _make_runner(self, cfg: Config, group: str | None, members: list[VrrpInstance]) -> Any:
        from lvsd.vrrp.notify import Notifier, ScriptSpec
        from lvsd.vrrp.runner import InstanceSpec, VrrpRunner

        specs = [InstanceSpec.from_config(i, cfg, transport=self.opts.vrrp_transport)
                 for i in members]
        gnotifier = None
        if group is not None:
            sg = next(s for s in cfg.vrrp_sync_groups if s.name == group)
            scripts = {}
            for state, sc in (("MASTER", sg.notify_master), ("BACKUP", sg.notify_backup),
                              ("FAULT", sg.notify_fault), ("STOP", sg.notify_stop),
                              ("notify", sg.notify)):
                if sc is not None:
                    scripts[state] = ScriptSpec(sc.command, sc.user, sc.group)
            gd = cfg.global_defs
            fifos = tuple(f for f in (gd.notify_fifo, gd.vrrp_notify_fifo) if f)
            gnotifier = Notifier("GROUP", group, scripts, fifos)
        return VrrpRunner(specs, sync_group=group, group_notifier=gnotifier,
                          on_event=self._on_vrrp)

    def _on_vrrp(self, name: str, kind: str, info: dict[str, Any]) -> None:
        if kind == "state":
            self.bus.publish("vrrp", {"instance": name, "old": info.get("previous"),
                                      "new": info.get("state"), "reason": info.get("reason")})
        else:
            self.bus.publish("vrrp_error", {"instance": name, "message": info.get("message")})

    async def _apply_vrrp(self, cfg: Config) -> None:
        """Make the running VRRP runners match ``cfg`` (startup and reload)."""
        wanted = self._vrrp_groups(cfg)
        models = {k: self._runner_model(cfg, g, m) for k, (g, m) in wanted.items()}
        to_stop = []
        for k in self.runners:
            if k not in wanted:
                to_stop.append(k)
            elif models[k] != self.runner_models.get(k):
                if hasattr(self.runners[k], "update"):
                    # VrrpRunner.update matches members by identity: same identity keeps its
                    # state (parameters updated in place), a changed one restarts alone
                    group, members = wanted[k]
                    fresh = self._make_runner(cfg, group, members)  # no I/O until start()
                    out = await self.runners[k].update(fresh.specs,
                                                       group_notifier=fresh.group_notifier)
                    self.runner_models[k] = models[k]
                    log.info("VRRP %s updated in place (%s)", k, out)
                else:
                    to_stop.append(k)
        if to_stop:
            await asyncio.gather(*(self._stop_runner(k) for k in to_stop))
        for k, (group, members) in wanted.items():
            if k in self.runners:
                continue
            runner = self._make_runner(cfg, group, members)
            try:
                await runner.start()
            except Exception as exc:  # e.g. interface missing, no permission for raw sockets
                with contextlib.suppress(Exception):
                    await runner.stop(1.0)
                raise StartupError(f"VRRP {k}: cannot start: {exc}") from None
            self.runners[k] = runner
            self.runner_models[k] = models[k]
            log.info("VRRP %s started", k)

    async def _stop_runner(self, key: str) -> None:
        runner = self.runners.pop(key)
        self.runner_models.pop(key, None)
        try:
            await runner.stop(timeout=min(5.0, self.opts.stop_timeout / 2))
        except Exception as exc:
            log.warning("VRRP %s: stop failed: %s", key, exc)
        log.info("VRRP %s stopped", key)

    # ---- reload
    def _on_hup(self) -> None:
        if not self.ready:  # during startup: reload once it is done
            self._hup_pending = True
            return
        task = asyncio.get_running_loop().create_task(self.reload())
        self._bg.add(task)
        task.add_done_callback(self._bg.discard)

    async def reload(self) -> bool:
        """SIGHUP: validate fully, then apply; on any error keep the running config."""
        async with self._reload_lock:
            if self.stopping:
                return False
            sd_notify("RELOADING=1\nSTATUS=reloading")
            log.info("reloading %s", self.opts.config_file)
            st = self.cfg_state
            st.reloads_total += 1
            st.last_reload_at = time.time()
            new = self.load()
            errors = self.validate(new)
            if errors:
                st.reload_failures_total += 1
                st.last_reload_ok = False
                st.last_reload_errors = tuple(errors)
                for e in errors:
                    log.error("reload rejected: %s", e)
                log.error("reload rejected (%d error(s)): still running generation %d",
                          len(errors), st.generation)
                self.bus.publish("reload", {"ok": False, "errors": errors,
                                            "generation": st.generation})
                sd_notify("READY=1\nSTATUS=reload rejected, previous config running")
                return False
            for w in config_warnings(new):
                log.warning("config: %s", w)
            old = self.config
            self.config = new
            try:
                if self.run_checks:
                    self.scheduler.update(new)
                    self.planner.reload(new)
                    self.reconciler.flush_on_stop = new.global_defs.lvs_flush_on_stop
                    self._wake.set()
                if self.run_vrrp:
                    await self._apply_vrrp(new)
            except Exception as exc:  # validated above: only a runtime failure gets here
                log.exception("reload: applying failed")
                st.last_reload_ok = False
                st.reload_failures_total += 1
                st.last_reload_errors = (f"applying the new config failed: {exc}",)
                self.bus.publish("reload", {"ok": False, "errors": list(st.last_reload_errors),
                                            "generation": st.generation})
                sd_notify("READY=1\nSTATUS=reload failed while applying")
                _ = old
                return False
            st.generation += 1
            st.loaded_at = time.time()
            st.last_reload_ok = True
            st.last_reload_errors = ()
            log.info("reload applied: generation %d", st.generation)
            self.bus.publish("reload", {"ok": True, "generation": st.generation,
                                        "warnings": config_warnings(new)})
            sd_notify(f"READY=1\nSTATUS=running config {new.config_id}")
            return True

    # ---- shutdown
    async def _shutdown(self) -> None:
        self.stopping = True
        if self.runners:
            await asyncio.gather(*(self._stop_runner(k) for k in list(self.runners)))
        if self._pool_task is not None:
            self._pool_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pool_task
            self._pool_task = None
        if self.scheduler is not None:
            with contextlib.suppress(Exception):
                await self.scheduler.close()
        await self._omega()
        if self.reconciler is not None:
            try:
                await self.reconciler.stop()
            except Exception as exc:
                log.warning("reconciler stop: %s", exc)
        if self._bg:
            await asyncio.wait(set(self._bg), timeout=2.0)
        if self._status_server is not None:
            await self._status_server.stop()
            self._status_server = None
        if self.dataplane is not None:
            with contextlib.suppress(Exception):
                await self.dataplane.close()
        if self.opts.pid_file and self._pid_written:
            with contextlib.suppress(OSError):
                with open(self.opts.pid_file, encoding="ascii") as fh:
                    mine = fh.read().strip() == str(os.getpid())
                if mine:
                    os.unlink(self.opts.pid_file)

    async def _omega(self) -> None:
        """keepalived ``omega``: on shutdown run quorum_down / notify_down where they apply."""
        cfg, plan, notifier = self.config, self.plan, self._lvs_notifier
        if cfg is None or plan is None or notifier is None or self.scheduler is None:
            return
        from lvsd.pool.planner import Planner
        from lvsd.vrrp.notify import ScriptSpec

        jobs = []
        health = self.scheduler.health
        for vs in cfg.virtual_servers:
            if not vs.omega:
                continue
            for rs in vs.real_servers:
                h = health.get(Planner.rs_id(vs, rs))
                if rs.notify_down is not None and (h is None or h.alive):
                    s = rs.notify_down
                    jobs.append(notifier.run_one(ScriptSpec(s.command, s.user, s.group)))
            st = plan.states.get(vs.ident)
            if vs.quorum_down is not None and st is not None and st.quorum_up:
                s = vs.quorum_down
                jobs.append(notifier.run_one(ScriptSpec(s.command, s.user, s.group)))
        if jobs:
            await asyncio.wait_for(asyncio.gather(*jobs, return_exceptions=True),
                                   max(1.0, self.opts.stop_timeout / 3))

    # ---- dumps (keepalived signals)
    def _dump(self, what: str) -> None:
        from lvsd.status import dumps

        fn = {"data": dumps.dump_data, "stats": dumps.dump_stats, "json": dumps.dump_json}[what]
        try:
            paths = fn(self.snapshot(), self.opts.dump_dir)
            log.info("dumped %s to %s", what, ", ".join(map(str, paths)))
        except OSError as exc:
            log.error("cannot write %s dump in %s: %s", what, self.opts.dump_dir, exc)

    def _dump_data(self) -> None:
        self._dump("data")

    def _dump_stats(self) -> None:
        self._dump("stats")

    def _dump_json(self) -> None:
        self._dump("json")

    # ---- status snapshot (read-only view of everything above)
    def snapshot(self) -> Any:
        from lvsd.status import model as m

        conv = _mono_to_wall(self._mono_offset)
        cfg = self.config
        st = self.cfg_state
        config_status = m.ConfigStatus(
            file=self.opts.config_file, config_id=cfg.config_id if cfg else "",
            loaded_at=st.loaded_at, generation=st.generation, reloads_total=st.reloads_total,
            reload_failures_total=st.reload_failures_total, last_reload_at=st.last_reload_at,
            last_reload_ok=st.last_reload_ok, last_reload_errors=st.last_reload_errors,
            warnings=tuple(config_warnings(cfg)) if cfg else ())
        proc = m.ProcessStatus(os.getpid(), self.version, self.started_at, self.opts.mode,
                               self.ready, self.stopping)
        return m.Snapshot(
            process=proc, config=config_status, generated_at=time.time(),
            instances=self._instances_status(conv),
            virtual_servers=self._vs_status(conv),
            checkers=self._checkers_status(conv),
            reconciler=self._reconciler_status())

    def _instances_status(self, conv: Callable[[float | None], float | None]) -> tuple[Any, ...]:
        from lvsd.status import model as m

        cfg = self.config
        if cfg is None:
            return ()
        models = {i.name: i for i in cfg.vrrp_instances}
        out = []
        for key, runner in self.runners.items():
            group = runner.sync_group_name
            for name, s in runner.status().items():
                inst = models.get(name)
                c = s["counters"]
                state = s["state"]
                master = s["primary_address"] if state == "MASTER" else s["master_address"]
                mprio = s["effective_priority"] if state == "MASTER" else s["master_priority"]
                trans = tuple(m.Transition(conv(t["at"]) or 0.0, t["from"], t["to"], t["reason"])
                              for t in list(c["transitions"])[-TRANSITIONS_KEPT:])
                out.append(m.InstanceStatus(
                    name=name, vrid=s["vrid"], interface=s.get("interface"),
                    version=s["version"], family=inst.family if inst else 4, state=state,
                    base_priority=s["base_priority"], effective_priority=s["effective_priority"],
                    master=master, master_priority=mprio or None,
                    advert_int=float(s.get("master_adver_int") or s["advert_int"]),
                    vips=tuple(v.cidr for v in inst.virtual_ipaddresses) if inst else tuple(
                        s["addresses"]),
                    vips_held=state == "MASTER", sync_group=group,
                    transitions=trans, adverts_sent=c["adverts_sent"],
                    adverts_received=c["adverts_received"], became_master=c["became_master"],
                    released_master=c["released_master"],
                    priority_zero_sent=c["priority_zero_sent"],
                    priority_zero_received=c["priority_zero_received"],
                    invalid_packets=dict(c["invalid"])))
            _ = key
        return tuple(out)

    def _vs_status(self, conv: Callable[[float | None], float | None]) -> tuple[Any, ...]:
        from lvsd.status import model as m

        cfg, plan = self.config, self.plan
        if cfg is None or plan is None or self.scheduler is None:
            return ()
        from lvsd.pool.planner import Planner
        from lvsd.pool.table import DestKey

        health = self.scheduler.health
        actual = self.pool.actual
        stats = self.pool.stats
        out = []
        for vs in cfg.virtual_servers:
            st = plan.states.get(vs.ident)
            services = tuple(st.services) if st else ()
            rss = []
            for rs in vs.real_servers:
                rid = Planner.rs_id(vs, rs)
                h = health.get(rid)
                alive = h.alive if h is not None else (None if rs.checkers else True)
                weight = None
                ac = ic = None
                for skey in services:
                    entry = actual.get(skey)
                    if entry is None:
                        continue
                    # NAT: the real server's port; DR/TUN: the service's (planner rule)
                    for port in {rs.port, skey.port}:
                        dkey = DestKey(rid.addr, port)
                        d = entry.dests.get(dkey)
                        if d is None:
                            continue
                        weight = d.weight
                        ds = stats.get((skey, dkey))
                        if ds is not None:
                            ac = (ac or 0) + ds.active_conns
                            ic = (ic or 0) + ds.inactive_conns
                rss.append(m.RealServerStatus(
                    address=rid.addr, port=rs.port, alive=alive, in_dataplane=weight is not None,
                    dataplane_weight=weight, configured_weight=rs.weight,
                    dynamic_weight=h.dynamic_weight if h else None,
                    failed_checkers=h.failed_checkers if h else (),
                    since=conv(h.since) if h and h.since else None,
                    reason=h.reason if h else "", active_conns=ac, inactive_conns=ic))
            sorry = None
            if vs.sorry_server is not None:
                a = vs.sorry_server.address
                sorry = f"[{a}]:{vs.sorry_server.port}" if ":" in a else \
                    f"{a}:{vs.sorry_server.port}"
            live = 0
            for skey in services:
                entry = actual.get(skey)
                if entry is not None:
                    live += sum(d.weight for d in entry.dests.values())
            out.append(m.VirtualServerStatus(
                ident=vs.ident, services=tuple(str(k) for k in services),
                protocol=vs.protocol.value, scheduler=vs.lb_algo, lb_kind=vs.lb_kind.value,
                quorum=vs.quorum, quorum_up=st.quorum_up if st else False,
                alive=st.alive if st else 0, live_weight=live, sorry_server=sorry,
                sorry_active=st.sorry_active if st else False, real_servers=tuple(rss)))
        return tuple(out)

    def _checkers_status(self, conv: Callable[[float | None], float | None]) -> tuple[Any, ...]:
        from lvsd.status import model as m

        if self.scheduler is None:
            return ()
        out = []
        for c in self.scheduler.status():
            for rid in c.servers:
                host = f"[{rid.addr}]" if ":" in rid.addr else rid.addr
                out.append(m.CheckerStatus(
                    checker=c.label, vs=rid.vs, real_server=f"{host}:{rid.port}",
                    kind=c.label.split(" ", 1)[0], up=c.up,
                    last_result=None if c.last_ok is None else (
                        "success" if c.last_ok else "failure"),
                    latency_seconds=c.last_latency,
                    error=None if c.last_ok in (True, None) else c.last_reason,
                    last_check_at=conv(c.last_at), next_check_at=conv(c.next_check),
                    consecutive_failures=c.retry_it, checks_total=c.attempts))
        return tuple(out)

    def _reconciler_status(self) -> Any:
        from lvsd.status import model as m

        r = self.reconciler
        if r is None:
            return m.ReconcilerStatus("none" if self.dataplane is None else self.dataplane.name)
        s = r.status
        return m.ReconcilerStatus(
            dataplane=s.dataplane, last_run_at=s.last_reconcile, runs_total=s.reconciles,
            ops_total=s.ops_applied, repairs_total=s.repairs, errors_total=self.pool.errors_total,
            last_ops=self.pool.last_ops,
            alarms=tuple(f"{a.op}: {a.error} (x{a.count})" for a in s.alarms),
            last_error=self.pool.last_error)


# ----------------------------------------------------------------------------- CLI


def options_from_args(a: argparse.Namespace) -> Options:
    mode = "vrrp-only" if a.vrrp_only else ("check-only" if a.check_only else "full")
    listen = None if a.status_listen in ("", "none", "off") else a.status_listen
    return Options(config_file=a.config_file, config_id=a.config_id, dataplane=a.dataplane,
                   status_listen=listen, status_token_file=a.status_token_file,
                   pid_file=a.pid_file or None, log_format=a.log_format, mode=mode,
                   dump_dir=a.dump_dir, vrrp_transport=a.vrrp_transport,
                   sweep_interval=a.sweep, stop_timeout=a.stop_timeout, nft_table=a.nft_table,
                   verbose=a.verbose)


def cmd_run(a: argparse.Namespace) -> int:
    opts = options_from_args(a)
    setup_logging(opts.log_format, opts.verbose)
    try:
        return asyncio.run(Daemon(opts).run())
    except KeyboardInterrupt:  # a second Ctrl-C during shutdown
        return 130


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "run", help="run the director (VRRP + health checks + pool)",
        description="Run lvsd: VRRP instances, health checkers and the pool reconciler in one "
                    "process. Signals: HUP reload, TERM/INT stop, USR1/USR2/RTMIN+2 write "
                    "keepalived's data/stats/JSON dumps.")
    p.add_argument("-f", "--use-file", dest="config_file", default=DEFAULT_CONFIG,
                   metavar="FILE", help=f"keepalived-syntax config (default {DEFAULT_CONFIG})")
    p.add_argument("-i", "--config-id", help="id for @ID conditionals (default: short host name)")
    p.add_argument("--dataplane", choices=("ipvs", "nftables", "memory"), default="ipvs",
                   help="where the pool is programmed (default ipvs)")
    p.add_argument("--status-listen", default=DEFAULT_STATUS_LISTEN, metavar="HOST:PORT",
                   help=f"status endpoint address (default {DEFAULT_STATUS_LISTEN}; 'off' to "
                        "disable)")
    p.add_argument("--status-token-file", metavar="FILE",
                   help="require 'Authorization: Bearer TOKEN' (token read from FILE)")
    p.add_argument("-p", "--pid-file", metavar="FILE", default=DEFAULT_PID_FILE,
                   help=f"pid file (default {DEFAULT_PID_FILE}; '' for none); a live pid in "
                        "it means lvsd is already running and this one refuses to start")
    p.add_argument("--log-format", choices=("text", "json"), default="text")
    g = p.add_mutually_exclusive_group()
    g.add_argument("-P", "--vrrp-only", "--vrrp", action="store_true",
                   help="run only VRRP (keepalived --vrrp)")
    g.add_argument("-C", "--check-only", "--check", action="store_true",
                   help="run only checks and pool (keepalived --check)")
    p.add_argument("--dump-dir", default="/tmp", help="where SIGUSR1/SIGUSR2/SIGRTMIN+2 "
                                                      "write keepalived's dump files")
    p.add_argument("--vrrp-transport", choices=("raw", "udp"), default="raw",
                   help="raw IP protocol 112 (default, keepalived-compatible) or UDP "
                        "(lvsd extension)")
    p.add_argument("--sweep", type=float, default=10.0,
                   help="seconds between data plane sweeps (drift repair), default 10")
    p.add_argument("--stop-timeout", type=float, default=10.0,
                   help="upper bound for a graceful stop, seconds (default 10)")
    p.add_argument("--nft-table", default="lvsd", help="nftables table name (inet family)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.set_defaults(func=cmd_run)
