"""The config keepalived actually runs once the host checks have dropped scripts.

Theory of operation
-------------------
keepalived checks every script against the host when it starts (lib/notify.c
``check_script_secure``) and *frees* the ones it will not run: a vrrp_script that is insecure,
not found or not executable is removed together with every ``track_script`` reference to it
(vrrp.c ``check_track_script_secure``, vrrp_track.c), a MISC_CHECK checker is removed from its
real server (check_misc.c ``check_misc_script_security``), a notify / quorum / FIFO script is
dropped (``check_notify_script_secure``), and the same happens when a script's user or group
does not exist. :mod:`lvsd.config.hostcheck` decides which (``HostResult.dropped_scripts``, each
script by its position and command); :func:`without_scripts` returns the model without them, so
lvsd never runs a script keepalived would refuse (with ``enable_script_security``, an insecure
one). Pure: a function of frozen model objects.
"""

from __future__ import annotations

from collections.abc import Set
from dataclasses import replace
from typing import Any

from lvsd.config.model import Config, Pos, RealServer, Script, VirtualServer

_INSTANCE_NOTIFY = ("notify_master", "notify_backup", "notify_fault", "notify_stop",
                    "notify_deleted", "notify", "notify_master_rx_lower_pri")
_GROUP_NOTIFY = ("notify_master", "notify_backup", "notify_fault", "notify_stop", "notify")
_FIFO = ("notify_fifo_script", "vrrp_notify_fifo_script", "lvs_notify_fifo_script")


def _gone(s: Script | None, dropped: Set[tuple[Pos, str]]) -> bool:
    return s is not None and (s.pos, s.command) in dropped


def _cleared(obj: object, fields: tuple[str, ...],
             dropped: Set[tuple[Pos, str]]) -> dict[str, Any]:
    """The script fields of ``obj`` to clear (``None``), as keyword arguments of replace()."""
    return {f: None for f in fields if _gone(getattr(obj, f), dropped)}


def _rs(rs: RealServer, dropped: Set[tuple[Pos, str]]) -> RealServer:
    checkers = tuple(c for c in rs.checkers if not _gone(c.misc_path, dropped))
    upd = _cleared(rs, ("notify_up", "notify_down"), dropped)
    if len(checkers) != len(rs.checkers):
        upd["checkers"] = checkers
    return replace(rs, **upd) if upd else rs


def _vs(vs: VirtualServer, dropped: Set[tuple[Pos, str]]) -> VirtualServer:
    rss = tuple(_rs(r, dropped) for r in vs.real_servers)
    upd = _cleared(vs, ("quorum_up", "quorum_down"), dropped)
    if any(a is not b for a, b in zip(rss, vs.real_servers, strict=True)):
        upd["real_servers"] = rss
    return replace(vs, **upd) if upd else vs


def without_scripts(cfg: Config, dropped: Set[tuple[Pos, str]]) -> Config:
    """``cfg`` without the scripts in ``dropped`` (see the module docstring)."""
    if not dropped:
        return cfg
    removed = {s.name for s in cfg.vrrp_scripts if _gone(s.script, dropped)}
    scripts = tuple(s for s in cfg.vrrp_scripts if s.name not in removed)
    instances = tuple(
        replace(i, track_scripts=tuple(r for r in i.track_scripts if r.name not in removed),
                **_cleared(i, _INSTANCE_NOTIFY, dropped))
        for i in cfg.vrrp_instances)
    groups = tuple(
        replace(g, track_scripts=tuple(r for r in g.track_scripts if r.name not in removed),
                **_cleared(g, _GROUP_NOTIFY, dropped))
        for g in cfg.vrrp_sync_groups)
    gd = replace(cfg.global_defs, **_cleared(cfg.global_defs, _FIFO, dropped))
    vss = tuple(_vs(v, dropped) for v in cfg.virtual_servers)
    return replace(cfg, global_defs=gd, vrrp_scripts=scripts, vrrp_instances=instances,
                   vrrp_sync_groups=groups, virtual_servers=vss)
