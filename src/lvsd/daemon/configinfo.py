"""What the daemon reads out of a loaded :class:`~lvsd.config.model.Config`: its errors and
warnings as lines, its secrets, and a position-free copy of model objects (change detection)."""

from __future__ import annotations

import dataclasses
from typing import TypeVar

from lvsd.config.model import NOPOS, Config, Pos, Severity

T = TypeVar("T")


def strip_pos(obj: T) -> T:
    """A copy of a frozen model object with every ``pos`` reset (for change detection)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        if isinstance(obj, Pos):
            return NOPOS  # type: ignore[return-value]  # T is Pos here
        changes = {}
        for f in dataclasses.fields(obj):
            v = getattr(obj, f.name)
            nv = NOPOS if f.name == "pos" else strip_pos(v)
            if nv is not v:
                changes[f.name] = nv
        return dataclasses.replace(obj, **changes) if changes else obj
    if isinstance(obj, tuple):
        return tuple(strip_pos(v) for v in obj)  # type: ignore[return-value]  # T is a tuple
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
