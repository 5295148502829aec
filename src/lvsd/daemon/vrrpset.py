"""The VRRP side of a config as the daemon runs it: one :class:`VrrpRunner` per sync group and
per instance outside any group, keyed ``"group NAME"`` / ``NAME``, and a position-free model of
each runner's inputs, so that a reload can tell which runners the new file leaves unchanged.

Config -> runner input goes through one typed path, :mod:`lvsd.vrrp.spec` (``RunnerSpec``);
this module only adds the daemon's concerns (runner keys, the startup delay, the change
model)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from lvsd.config.model import Config, VrrpInstance

if TYPE_CHECKING:
    from lvsd.vrrp.runner import VrrpRunner
    from lvsd.vrrp.spec import RunnerSpec

Groups = dict[str, tuple[str | None, list[VrrpInstance]]]

log = logging.getLogger(__name__)

# vrrp_startup_delay is counted once, from the process's first VRRP start; a reload does not
# restart it (keepalived vrrp_daemon.c sets vrrp_delayed_start_time only when !reload, and
# instances added during the delay wait for the same end).
_delay_end: float | None = None
_delay_set = False


def startup_delay_end(cfg: Config, started_at: float | None = None) -> float | None:
    """The monotonic time before which no VRRP down timer may count (None: no delay).

    ``started_at``: the daemon's start (monotonic); None: this process's first call. Logs
    keepalived's "Delaying startup for %g seconds" when the delay is first set.
    """
    global _delay_end, _delay_set
    delay = cfg.global_defs.vrrp_startup_delay
    if started_at is not None:
        return started_at + delay if delay > 0 else None
    if not _delay_set:
        _delay_set = True
        if delay > 0:
            _delay_end = time.monotonic() + delay
            log.info("Delaying startup for %g seconds", delay)
    return _delay_end


def vrrp_groups(cfg: Config) -> Groups:
    """Runner key -> (sync group name or None, member instances) (``spec.runner_groups``)."""
    from lvsd.vrrp.spec import runner_groups

    return runner_groups(cfg)


def runner_model(cfg: Config, group: str | None, members: list[VrrpInstance]) -> tuple[object, ...]:
    """Everything of ``cfg`` a runner depends on, without positions (equal: nothing changed)."""
    sg = next((s for s in cfg.vrrp_sync_groups if s.name == group), None)
    scripts = {ref.name for i in members for ref in i.track_scripts}
    vs = tuple(s for s in cfg.vrrp_scripts if s.name in scripts)
    return (cfg.global_defs, sg, tuple(members), vs)


def runner_spec(cfg: Config, group: str | None, members: list[VrrpInstance], *,
                transport: str) -> RunnerSpec:
    """What a runner for ``members`` of ``group`` runs (no I/O): ``RunnerSpec.from_config``."""
    from lvsd.vrrp.spec import RunnerSpec

    return RunnerSpec.from_config(cfg, group, members, transport=transport)


def make_runner(cfg: Config, group: str | None, members: list[VrrpInstance], *, transport: str,
                on_event: Callable[[str, str, dict[str, Any]], None],
                started_at: float | None = None) -> VrrpRunner:
    """A runner for ``members`` (no I/O until its ``start()``); ``started_at`` see
    :func:`startup_delay_end`."""
    from lvsd.vrrp.runner import VrrpRunner

    rs = runner_spec(cfg, group, members, transport=transport)
    return VrrpRunner(rs.instances, sync_group=rs.sync_group, group_notifier=rs.group_notifier,
                      on_event=on_event, delayed_start=startup_delay_end(cfg, started_at))
