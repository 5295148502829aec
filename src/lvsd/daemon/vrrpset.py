"""The VRRP side of a config as the daemon runs it: one :class:`VrrpRunner` per sync group and
per instance outside any group, keyed ``"group NAME"`` / ``NAME``, and a position-free model of
each runner's inputs, so that a reload can tell which runners the new file leaves unchanged."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from lvsd.config.model import Config, VrrpInstance
from lvsd.daemon.configinfo import strip_pos

if TYPE_CHECKING:
    from lvsd.vrrp.runner import VrrpRunner

Groups = dict[str, tuple[str | None, list[VrrpInstance]]]


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
                on_event: Callable[[str, str, dict[str, Any]], None]) -> VrrpRunner:
    """A runner for ``members`` (no I/O until its ``start()``)."""
    from lvsd.vrrp.runner import InstanceSpec, VrrpRunner, notifier_from_config

    specs = [InstanceSpec.from_config(i, cfg, transport=transport) for i in members]
    gnotifier = None
    if group is not None:
        sg = next(s for s in cfg.vrrp_sync_groups if s.name == group)
        gnotifier = notifier_from_config("GROUP", sg, cfg)
    return VrrpRunner(specs, sync_group=group, group_notifier=gnotifier, on_event=on_event)
