"""SIGHUP: load and check the new file completely, then apply the difference. The policy is
``lvsd run``'s (:mod:`lvsd.preflight`): what keepalived logs and runs through is logged and
applied as keepalived applies it; a config keepalived could not run (or, with ``--strict``, any
error) is rejected and the running config stays untouched (see :mod:`lvsd.daemon` for what "the
difference" keeps).

:func:`reload` works on any :class:`Reloadable` (the daemon is one): this module does not
import the daemon, which imports it."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from lvsd.config.changes import config_changes
from lvsd.config.model import Severity
from lvsd.daemon.sdnotify import sd_notify
from lvsd.status.event_types import EventPayload, ReloadApplied, ReloadRejected

if TYPE_CHECKING:
    import asyncio

    from lvsd.config.model import Config
    from lvsd.config.verdict import Verdict
    from lvsd.daemon.options import Options
    from lvsd.preflight import Preflight

log = logging.getLogger(__name__)


@dataclass
class ConfigState:
    """The running config's history, as ``/status`` ``config`` shows it."""

    loaded_at: float
    generation: int = 1
    reloads_total: int = 0
    reload_failures_total: int = 0
    last_reload_at: float | None = None
    last_reload_ok: bool | None = None
    last_reload_errors: tuple[str, ...] = ()

    def failed(self, errors: tuple[str, ...]) -> None:
        self.reload_failures_total += 1
        self.last_reload_ok = False
        self.last_reload_errors = errors

    def applied(self) -> None:
        self.generation += 1
        self.loaded_at = time.time()
        self.last_reload_ok = True
        self.last_reload_errors = ()


class Publisher(Protocol):
    def publish(self, payload: EventPayload, at: float | None = ...) -> object: ...


class Reloadable(Protocol):
    """What a reload reads and drives (:class:`lvsd.daemon.core.Daemon`)."""

    config: Config | None
    verdict: Verdict | None

    @property
    def opts(self) -> Options: ...
    @property
    def cfg_state(self) -> ConfigState: ...
    @property
    def stopping(self) -> bool: ...
    @property
    def reload_lock(self) -> asyncio.Lock: ...
    @property
    def bus(self) -> Publisher: ...
    @property
    def run_checks(self) -> bool: ...
    @property
    def run_vrrp(self) -> bool: ...

    async def load_checked(self) -> Preflight: ...
    def log_diagnostics(self, verdict: Verdict, what: str = ...) -> None: ...
    def reload_pool(self, cfg: Config) -> None: ...
    async def apply_vrrp(self, cfg: Config) -> None: ...


async def reload(d: Reloadable) -> bool:
    """Validate fully, then apply; on any error keep the running config. True: applied."""
    async with d.reload_lock:
        if d.stopping:
            return False
        sd_notify("RELOADING=1\nSTATUS=reloading")
        log.info("reloading %s", d.opts.config_file)
        st = d.cfg_state
        st.reloads_total += 1
        st.last_reload_at = time.time()
        pf = await d.load_checked()  # in a worker thread: the main loop goes on
        new, verdict = pf.config, pf.verdict
        d.log_diagnostics(verdict, "reload")
        if not verdict.runnable:
            errors = verdict.explain()
            st.failed(tuple(errors))
            log.error("reload rejected (%s): still running generation %d",
                      verdict.reason(), st.generation)
            d.bus.publish(ReloadRejected(tuple(errors), st.generation))
            sd_notify("READY=1\nSTATUS=reload rejected, previous config running")
            return False
        changes = config_changes(d.config, new) if d.config is not None else ()
        d.config = new
        d.verdict = verdict
        try:
            if d.run_checks:
                d.reload_pool(new)
            if d.run_vrrp:
                await d.apply_vrrp(new)
        except Exception as exc:  # validated above: only a runtime failure gets here
            log.exception("reload: applying failed")
            st.failed((f"applying the new config failed: {exc}",))
            d.bus.publish(ReloadRejected(st.last_reload_errors, st.generation))
            sd_notify("READY=1\nSTATUS=reload failed while applying")
            return False
        st.applied()
        log.info("reload applied: generation %d", st.generation)
        d.bus.publish(ReloadApplied(st.generation, verdict.counts(),
                                    tuple(str(x) for x in verdict.diagnostics
                                          if x.severity is not Severity.FATAL), changes))
        sd_notify(f"READY=1\nSTATUS=running config {new.config_id}")
        return True
