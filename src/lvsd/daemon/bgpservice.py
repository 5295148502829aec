"""The BGP announcement mode's shell in the daemon: BIRD, health in, announce/withdraw out.

Theory of operation
-------------------
:class:`BgpService` is started by the daemon after the pool (so the first verdicts see a
programmed table) when the config has a ``bgp_speaker`` and at least one ``bgp_announce``
(docs/bgp.md). It owns:

* the VIPs on ``lo`` (DR: the director accepts traffic for the address): each announcement's
  address is added at start unless already there, and only what lvsd added is removed at stop
  or when a reload drops the announcement;
* ``net.ipv4.vs.sloppy_tcp = 1`` in lvsd's network namespace on kernel IPVS (a flow that the
  routers' ECMP re-hash moves to this director mid-connection must be scheduled on a non-SYN
  packet; with ``mh`` it reaches the same real server). Logged once; left set at stop;
* the tracked ``vrrp_script``\\ s of the announcements: each runs every ``interval`` through the
  one script runner, its results go through keepalived's rise/fall
  (:class:`lvsd.bgp.health.ScriptTrack`);
* the BIRD child (:class:`lvsd.bgp.bird.BirdProcess`).

One loop, a pass every :data:`HEALTH_INTERVAL` seconds (or at the announcer's deadline):
read the tracked interfaces' state (``/sys/class/net/IF/flags`` and ``carrier``), take the
pool's view, derive each announcement's verdict (:func:`lvsd.bgp.health.derive`), feed it to the
:class:`lvsd.bgp.announce.Announcer`, carry out its actions (BIRD ``enable`` / ``disable`` of
``lvsd_<name>``; an ``bgp_announce`` / ``bgp_withdraw`` event and a log line each). What BIRD
holds is compared with what the announcer wants on every pass, so a failed command is retried.
Every :data:`POLL_INTERVAL` seconds ``show protocols`` gives the sessions' states (a
``bgp_session`` event per change). BIRD exiting is an error: the announcements are marked
withdrawn (reason: the speaker died) and BIRD is started again after a second, with the
announcements re-derived from scratch (the rise delay applies again).

Reload (:meth:`BgpService.reload`): a changed ``bgp_speaker`` block restarts BIRD (sessions
reset); otherwise a changed set of announcements rewrites bird.conf and sends ``configure``
(the announced ones are written enabled, so they do not flap). Stop (:meth:`BgpService.stop`,
the daemon's first step on SIGTERM): withdraw every route, wait :data:`WITHDRAW_GRACE` seconds
for the routers to move the traffic, then ``down`` (BIRD sends Cease), remove the VIPs lvsd
added.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from lvsd.bgp.announce import (
    Action,
    Announce,
    Announcer,
    AnnounceSpec,
    AnnounceState,
    SessionState,
)
from lvsd.bgp.bird import BirdError, BirdProcess, bird_conf, neighbor_protocol, protocol_name
from lvsd.bgp.birdctl import BirdControlError
from lvsd.bgp.health import ScriptTrack, derive
from lvsd.status.event_types import BgpAnnounceEvent, BgpSession, BgpWithdraw, EventPayload

if TYPE_CHECKING:
    from lvsd.config.model import BgpAnnounce, Config, VrrpScript
    from lvsd.daemon.options import Options
    from lvsd.pool.service import PoolService, PoolView
    from lvsd.status.events import EventBus
    from lvsd.status.model import BgpStatus

log = logging.getLogger(__name__)

HEALTH_INTERVAL = 0.2  # s between health passes
POLL_INTERVAL = 1.0  # s between `show protocols`
WITHDRAW_GRACE = 2.0  # s between the withdraws and BIRD's `down` on stop
RESPAWN_DELAY = 1.0
SLOPPY_TCP = "/proc/sys/net/ipv4/vs/sloppy_tcp"
IFF_UP = 0x1


@dataclass(frozen=True, slots=True)
class BgpView:
    """What status needs: the announcements and the sessions, with wall-clock times."""

    announcements: tuple[AnnounceState, ...]
    addresses: dict[str, str]  # announcement name -> cidr
    sessions: tuple[SessionState, ...]
    bird_pid: int | None
    bird_running: bool
    bird_restarts: int


def link_up(ifname: str) -> bool | None:
    """``ifname`` administratively up (IFF_UP) with carrier (what the kernel reports as
    IFF_RUNNING; sysfs ``flags`` does not hold it); None: no such interface."""
    base = f"/sys/class/net/{ifname}"
    try:
        with open(f"{base}/flags", encoding="ascii") as f:
            flags = int(f.read().strip(), 16)
    except (OSError, ValueError):
        return None
    if not flags & IFF_UP:
        return False
    try:
        with open(f"{base}/carrier", encoding="ascii") as f:
            return f.read().strip() == "1"
    except OSError:  # EINVAL while the interface is down
        return False


def _specs(cfg: Config) -> list[AnnounceSpec]:
    return [AnnounceSpec(a.name, a.cidr, a.rise_delay, a.fall_delay) for a in cfg.bgp_announces]


def wanted(cfg: Config) -> bool:
    """Does ``cfg`` run the BGP mode?"""
    return cfg.bgp_speaker is not None and bool(cfg.bgp_announces)


class BgpService:
    """See the module docstring."""

    def __init__(self, cfg: Config, *, pool_view: Callable[[], PoolView | None],
                 publish: Callable[[EventPayload], object], dataplane: str,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._cfg = cfg
        self._pool_view = pool_view
        self.publish = publish
        self._dataplane = dataplane
        self._clock = clock
        self._announcer = Announcer(_specs(cfg), clock())
        self._bird: BirdProcess | None = None
        self._bird_state: dict[str, bool] = {}  # what BIRD holds: name -> enabled
        self._restarts = 0
        self._scripts: dict[str, ScriptTrack] = {}
        self._script_tasks: dict[str, asyncio.Task[None]] = {}
        self._vips_added: set[str] = set()  # cidrs lvsd put on lo
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()  # passes, reloads and the stop never interleave
        self._next_poll = 0.0
        self._sloppy_done = False
        self._retry_at = 0.0

    # ---- lifecycle
    async def start(self) -> None:
        """VIPs on lo, sloppy_tcp, scripts, BIRD (every announcement disabled), the loop."""
        assert self._cfg.bgp_speaker is not None
        # netlink (the VIPs on lo) needs pyroute2: imported off the loop (about a second)
        await asyncio.to_thread(importlib.import_module, "pyroute2")
        self._sloppy_tcp()
        await self._sync_vips(self._cfg.bgp_announces)
        self._sync_scripts()
        self._bird = BirdProcess(self._cfg.bgp_speaker.bird_binary)
        try:
            await self._bird.start(self._conf())
        except BirdError:
            self._bird.cleanup()
            self._bird = None
            raise
        self._bird_state = {a.name: False for a in self._cfg.bgp_announces}
        self._task = asyncio.create_task(self._loop(), name="lvsd-bgp")

    async def reload(self, cfg: Config) -> None:
        """Take a reloaded config (see the module docstring)."""
        async with self._lock:
            old = self._cfg
            self._cfg = cfg
            now = self._clock()
            self._report(self._announcer.configure(_specs(cfg), now))
            self._sloppy_tcp()
            await self._sync_vips(cfg.bgp_announces)
            self._sync_scripts()
            if self._bird is None:
                return
            if cfg.bgp_speaker != old.bgp_speaker:
                log.info("bgp_speaker changed: restarting BIRD (sessions reset)")
                await self._restart_bird()
            elif cfg.bgp_announces != old.bgp_announces:
                try:
                    await self._bird.configure(self._conf())
                except (BirdError, BirdControlError) as exc:
                    log.error("BIRD reconfigure failed: %s", exc)
                names = {a.name for a in cfg.bgp_announces}
                self._bird_state = {n: v for n, v in self._bird_state.items() if n in names}
                for n in names:
                    self._bird_state.setdefault(n, self._announcer.announced(n))
        self._wake.set()

    async def stop(self, reason: str = "lvsd stopping") -> None:
        """Withdraw everything, wait for the routers, stop BIRD, remove lvsd's VIPs."""
        async with self._lock:
            if self._task is not None:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
                self._task = None
            acts = self._announcer.stop(reason, self._clock())
            self._report(acts)
            bird = self._bird
            if bird is not None:
                await self._apply()
                if acts:
                    await asyncio.sleep(WITHDRAW_GRACE)
                await bird.stop()
                bird.cleanup()
                self._bird = None
            for t in self._script_tasks.values():
                t.cancel()
            if self._script_tasks:
                await asyncio.wait(set(self._script_tasks.values()), timeout=2.0)
            self._script_tasks.clear()
            await self._sync_vips(())

    # ---- status
    def view(self) -> BgpView:
        return BgpView(self._announcer.states(),
                       {a.name: a.cidr for a in self._cfg.bgp_announces},
                       self._announcer.session_states(),
                       self._bird.pid if self._bird is not None else None,
                       self._bird is not None and self._bird.running, self._restarts)

    # ---- the loop
    async def _loop(self) -> None:
        while True:
            try:
                async with self._lock:
                    await self._pass()
            except asyncio.CancelledError:
                raise
            except Exception:  # the loop must survive anything: log, next pass
                log.exception("BGP pass failed")
            deadline = self._announcer.next_deadline()
            timeout = HEALTH_INTERVAL
            if deadline is not None:
                timeout = max(0.0, min(timeout, deadline - self._clock()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
            self._wake.clear()

    async def _pass(self) -> None:
        bird = self._bird
        if bird is not None and not bird.running:
            await self._bird_died(bird)
            return
        if bird is None and self._clock() >= self._retry_at:  # a restart that failed
            self._retry_at = self._clock() + RESPAWN_DELAY
            await self._restart_bird()
        now = self._clock()
        view = self._pool_view()
        plan = view.plan if view is not None else None
        actual = view.reconciler.actual if view is not None else {}
        dp_ok = view is not None and all(a.op != "dump" for a in view.reconciler.alarms)
        links = {i: link_up(i) for a in self._cfg.bgp_announces for i in a.track_interfaces}
        scripts = {n: t.ok for n, t in self._scripts.items()}
        acts: list[Action] = []
        for a in self._cfg.bgp_announces:
            v = derive(a, vs_states=plan.states if plan is not None else None,
                       actual=actual,  # type: ignore[arg-type]  # ServiceKey -> ServiceEntry
                       data_plane_ok=dp_ok, scripts=scripts, links=links)
            acts += self._announcer.health(a.name, v.ok, v.reason, now)
        acts += self._announcer.tick(now)
        self._report(acts)
        await self._apply()
        if now >= self._next_poll:
            self._next_poll = now + POLL_INTERVAL
            await self._poll_sessions()

    async def _apply(self) -> None:
        """Make BIRD hold what the announcer wants (retried on every pass)."""
        bird = self._bird
        if bird is None or not bird.running:
            return
        for a in self._cfg.bgp_announces:
            want = self._announcer.announced(a.name)
            if self._bird_state.get(a.name) == want:
                continue
            proto = protocol_name(a.name)
            try:
                if want:
                    await bird.enable(proto)
                else:
                    await bird.disable(proto)
            except (BirdError, BirdControlError) as exc:
                log.error("BGP: cannot %s %s: %s", "enable" if want else "disable", proto, exc)
                continue
            self._bird_state[a.name] = want

    async def _poll_sessions(self) -> None:
        bird = self._bird
        sp = self._cfg.bgp_speaker
        if bird is None or sp is None:
            return
        try:
            rows = await bird.protocols()
        except (BirdError, BirdControlError) as exc:
            log.warning("BGP: show protocols: %s", exc)
            return
        by_name = {r.name: r for r in rows}
        states: dict[str, str] = {}
        for nb in sp.neighbors:
            row = by_name.get(neighbor_protocol(nb.address))
            states[nb.address] = row.bgp_state if row is not None else "unknown"
        for ch in self._announcer.sessions(states, self._clock()):
            level = logging.INFO if ch.state == "Established" or ch.previous == "Established" \
                else logging.DEBUG
            log.log(level, "BGP session with %s: %s -> %s", ch.neighbor, ch.previous, ch.state)
            self.publish(BgpSession(ch.neighbor, ch.previous, ch.state))

    async def _bird_died(self, bird: BirdProcess) -> None:
        log.error("BIRD exited (status %s): routes withdrawn; restarting it in %.0f s",
                  bird.returncode, RESPAWN_DELAY)
        await bird.stop()
        self._announcer = self._fresh_announcer("BIRD exited")
        await asyncio.sleep(RESPAWN_DELAY)
        await self._restart_bird()

    def _fresh_announcer(self, reason: str) -> Announcer:
        """A new announcer (everything withdrawn), the withdrawals reported."""
        self._report(self._announcer.stop(reason, self._clock()))
        ann = Announcer(_specs(self._cfg), self._clock())
        ann.sessions({}, self._clock())
        return ann

    async def _restart_bird(self) -> None:
        sp = self._cfg.bgp_speaker
        if self._bird is not None:
            await self._bird.stop()
            self._bird.cleanup()
            self._bird = None
        if sp is None:
            return
        self._restarts += 1
        self._announcer = self._fresh_announcer("BGP speaker restarting")
        bird = BirdProcess(sp.bird_binary)
        try:
            await bird.start(self._conf())
        except BirdError as exc:
            log.error("BGP: cannot start BIRD: %s (retrying)", exc)
            bird.cleanup()
            return  # self._bird None: retried by a later pass
        self._bird = bird
        self._bird_state = {a.name: False for a in self._cfg.bgp_announces}

    def _conf(self) -> str:
        assert self._cfg.bgp_speaker is not None
        on = {a.name for a in self._cfg.bgp_announces if self._announcer.announced(a.name)}
        return bird_conf(self._cfg.bgp_speaker, self._cfg.bgp_announces, on)

    def _report(self, acts: list[Action]) -> None:
        for act in acts:
            if isinstance(act, Announce):
                log.info("BGP: announcing %s (%s): %s", act.cidr, act.name, act.reason)
                self.publish(BgpAnnounceEvent(act.name, act.cidr, act.reason))
            else:
                log.warning("BGP: withdrawing %s (%s): %s", act.cidr, act.name, act.reason)
                self.publish(BgpWithdraw(act.name, act.cidr, act.reason))

    # ---- host settings
    def _sloppy_tcp(self) -> None:
        if self._sloppy_done or self._dataplane != "ipvs" or not self._cfg.bgp_announces:
            return
        self._sloppy_done = True
        try:
            with open(SLOPPY_TCP, "w", encoding="ascii") as f:
                f.write("1\n")
        except OSError as exc:
            log.error("BGP mode: cannot set net.ipv4.vs.sloppy_tcp=1 (%s): flows moved to "
                      "this director by a router's ECMP re-hash will be dropped", exc)
            return
        log.info("BGP mode: net.ipv4.vs.sloppy_tcp=1 (flows moved here by the routers' ECMP "
                 "are scheduled mid-connection)")

    async def _sync_vips(self, announces: tuple[BgpAnnounce, ...] | tuple[()]) -> None:
        """The announcements' addresses on lo: add the missing ones, remove those lvsd added
        that are no longer announced."""
        from lvsd.vrrp.vips import Vip, VipSet

        want = {a.cidr: Vip(a.address, a.prefixlen, "lo") for a in announces}
        drop = [Vip(c.split("/")[0], int(c.split("/")[1]), "lo")
                for c in sorted(self._vips_added - set(want))]
        vset = VipSet("lo", want.values())
        try:
            if drop:
                res = await vset.remove(drop)
                for c in res.ok:
                    self._vips_added.discard(c)
                    log.info("BGP: removed %s from lo", c)
                for c, why in res.failed.items():
                    log.warning("BGP: cannot remove %s from lo: %s", c, why)
                    self._vips_added.discard(c)
            have = await vset.present() if want else set()
            add: list[Vip] = [v for c, v in want.items() if c not in have]
            if add:
                res = await vset.add(add)
                for c in res.ok:
                    self._vips_added.add(c)
                    log.info("BGP: added %s to lo", c)
                for c, why in res.failed.items():
                    log.error("BGP: cannot add %s to lo: %s", c, why)
        finally:
            vset.close()

    def _sync_scripts(self) -> None:
        """A runner task per tracked vrrp_script (new ones started, unused ones stopped)."""
        names = {n for a in self._cfg.bgp_announces for n in a.track_scripts}
        for n in [n for n in self._script_tasks if n not in names]:
            self._script_tasks.pop(n).cancel()
            self._scripts.pop(n, None)
        for n in names:
            vs = self._cfg.vrrp_script(n)
            if vs is None or n in self._script_tasks:
                continue
            self._scripts[n] = ScriptTrack(vs.rise, vs.fall, vs.init_fail)
            self._script_tasks[n] = asyncio.create_task(self._run_script(vs),
                                                        name=f"lvsd-bgp-script-{n}")

    async def _run_script(self, vs: VrrpScript) -> None:
        """keepalived vrrp_scheduler.c vrrp_script_thread: run every ``interval`` from the
        previous start, ``timeout`` (default: the interval), success is exit status 0."""
        from lvsd.scriptrun import ScriptRunner, ScriptSpec

        g = self._cfg.global_defs
        runner = ScriptRunner(g.script_user, g.script_group, security=g.enable_script_security)
        spec = ScriptSpec(vs.script.command, vs.script.user or vs.user, vs.script.group)
        last: bool | None = None
        while True:
            t0 = self._clock()
            out = await runner.run(spec, timeout=vs.timeout or vs.interval,
                                   log=lambda msg: log.warning("vrrp_script %s: %s",
                                                               vs.name, msg))
            track = self._scripts.get(vs.name)
            if track is None:
                return
            ok = track.result(out.ok)
            if ok != last:
                log.info("BGP: track_script %s %s", vs.name, "OK" if ok else "failing")
                last = ok
                self._wake.set()
            await asyncio.sleep(max(0.0, t0 + vs.interval - self._clock()))


# ---- the daemon's hooks (lvsd.daemon.core calls these: its own edits stay one line each)


class _DaemonLike(Protocol):
    """What the hooks need of :class:`lvsd.daemon.core.Daemon`."""

    bgp: BgpService | None
    pool: PoolService | None

    @property
    def bus(self) -> EventBus: ...

    @property
    def opts(self) -> Options: ...


async def start_bgp(d: _DaemonLike, cfg: Config) -> None:
    """Start the BGP mode after the pool when ``cfg`` asks for it; a BIRD that cannot start
    stops lvsd's start (:class:`StartupError`), as a data plane that cannot open does."""
    from lvsd.daemon.options import StartupError

    if not wanted(cfg) or d.pool is None:
        return
    pool = d.pool
    svc = BgpService(cfg, pool_view=pool.view, publish=d.bus.publish,
                     dataplane=d.opts.dataplane)
    try:
        await svc.start()
    except BirdError as exc:
        await svc.stop("BGP speaker failed to start")
        raise StartupError(f"BGP: {exc}") from None
    d.bgp = svc


async def reload_bgp(d: _DaemonLike, cfg: Config) -> None:
    """A reload: start, reconfigure or stop the BGP mode as ``cfg`` says."""
    if d.bgp is None:
        if wanted(cfg):
            from lvsd.daemon.options import StartupError

            try:
                await start_bgp(d, cfg)
            except StartupError as exc:
                log.error("reload: %s", exc)
        return
    if wanted(cfg):
        await d.bgp.reload(cfg)
    else:
        svc, d.bgp = d.bgp, None
        await svc.stop("BGP announcements removed from the config")


def bgp_status(svc: BgpService | None, to_wall: Callable[[float | None], float | None]
               ) -> BgpStatus | None:
    """The ``bgp`` section of /status (monotonic times turned to Unix time)."""
    from lvsd.status.model import BgpAnnouncementStatus, BgpSessionStatus, BgpStatus

    if svc is None:
        return None
    v = svc.view()
    return BgpStatus(
        announcements=tuple(BgpAnnouncementStatus(
            st.name, st.cidr, "announced" if st.announced else "withdrawn", st.reason,
            to_wall(st.since) or 0.0, st.healthy, st.health_reason,
            to_wall(st.pending_until)) for st in v.announcements),
        sessions=tuple(BgpSessionStatus(se.neighbor, se.state, to_wall(se.since) or 0.0)
                       for se in v.sessions),
        bird_pid=v.bird_pid, bird_running=v.bird_running, bird_restarts=v.bird_restarts)
