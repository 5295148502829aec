"""The VRRP side of a config as the daemon runs it: one :class:`VrrpRunner` per sync group and
per instance outside any group, keyed ``"group NAME"`` / ``NAME``, and a position-free model of
each runner's inputs, so that a reload can tell which runners the new file leaves unchanged."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from lvsd.config.model import Config, VrrpInstance
from lvsd.daemon.configinfo import strip_pos

if TYPE_CHECKING:
    from lvsd.vrrp.runner import VrrpRunner

Groups = dict[str, tuple[str | None, list[VrrpInstance]]]

log = logging.getLogger("lvsd.vrrp")

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
    """Runner key -> (sync group name or None, member instances)."""
    by_name = {i.name: i for i in cfg.vrrp_instances}
    out: Groups = {}
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


def runner_model(cfg: Config, group: str | None, members: list[VrrpInstance]) -> tuple[object, ...]:
    """Everything of ``cfg`` a runner depends on, without positions (equal: nothing changed)."""
    g = strip_pos(cfg.global_defs)
    sg = next((s for s in cfg.vrrp_sync_groups if s.name == group), None)
    scripts = {ref.name for i in members for ref in i.track_scripts}
    vs = tuple(strip_pos(s) for s in cfg.vrrp_scripts if s.name in scripts)
    return (g, strip_pos(sg), tuple(strip_pos(i) for i in members), vs)


def make_runner(cfg: Config, group: str | None, members: list[VrrpInstance], *, transport: str,
                on_event: Callable[[str, str, dict[str, Any]], None],
                started_at: float | None = None) -> VrrpRunner:
    """A runner for ``members`` (no I/O until its ``start()``); ``started_at`` see
    :func:`startup_delay_end`."""
    from lvsd.vrrp.runner import InstanceSpec, VrrpRunner, notifier_from_config

    specs = [InstanceSpec.from_config(i, cfg, transport=transport) for i in members]
    gnotifier = None
    if group is not None:
        sg = next(s for s in cfg.vrrp_sync_groups if s.name == group)
        gnotifier = notifier_from_config("GROUP", sg, cfg)
    return VrrpRunner(specs, sync_group=group, group_notifier=gnotifier, on_event=on_event,
                      delayed_start=startup_delay_end(cfg, started_at))
