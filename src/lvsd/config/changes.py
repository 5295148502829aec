"""What a reload changes: the running config and the new one compared, as short lines.

Theory of operation
-------------------
A reload's reply (the ``reload`` event, ``lvsd reload``) says what changed, in the operator's
terms: the ``virtual_server``s, ``real_server``s, ``vrrp_instance``s, ``vrrp_sync_group``s
and ``vrrp_script``s (and lvsd's ``bgp_announce`` blocks) added, removed or changed, and
whether ``global_defs`` (or ``bgp_speaker``) changed. Items
are matched by identity as the reload applies them (a virtual server by
:attr:`~lvsd.config.model.VirtualServer.ident`, a real server by address and port, the VRRP
blocks by name); model objects compare without their positions (config/model.py), so a
reload that only moves lines changes nothing.

A changed item names the fields that differ; a field with a plain value (a number, a string,
a flag) shows ``old -> new``, anything else (checkers, scripts, addresses) only its name. A
secret field (:data:`lvsd.config.secrets.SECRET_FIELDS`) only ever shows its name.

Pure: two :class:`~lvsd.config.model.Config` values in, lines out.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from lvsd.config.model import Config, RealServer, VirtualServer
from lvsd.config.secrets import SECRET_KEYS

T = TypeVar("T")

#: at most this many lines; the rest is counted in a last line
MAX_LINES = 40
_PLAIN = (str, int, float, bool, enum.Enum, type(None))


def _show(v: object) -> str:
    if isinstance(v, enum.Enum):
        return str(v.value)
    return "none" if v is None else str(v)


def fields_changed(old: object, new: object, skip: Iterable[str] = ()) -> list[str]:
    """The fields of two dataclass values of one type that differ (``pos`` never counts):
    ``name old -> new`` for a plain value, the name alone otherwise or for a secret."""
    out = []
    skipped = {"pos", *skip}
    for f in dataclasses.fields(old):  # type: ignore[arg-type]
        if f.name in skipped or not f.compare:
            continue
        a, b = getattr(old, f.name), getattr(new, f.name)
        if a == b:
            continue
        if f.name in SECRET_KEYS or not isinstance(a, _PLAIN) or not isinstance(b, _PLAIN):
            out.append(f.name)
        else:
            out.append(f"{f.name} {_show(a)} -> {_show(b)}")
    return out


def _by(items: Sequence[T], key: Callable[[T], Any]) -> dict[Any, T]:
    return {key(x): x for x in items}


def _rs_name(rs: RealServer) -> str:
    host = f"[{rs.address}]" if ":" in rs.address else rs.address
    return f"{host}:{rs.port}"


def _named(what: str, old: Sequence[T], new: Sequence[T], key: Callable[[T], str],
           skip: Iterable[str] = ()) -> list[str]:
    """Added, removed and changed items of one kind, matched by ``key``."""
    a, b = _by(old, key), _by(new, key)
    out = [f"{what} {k} added" for k in b if k not in a]
    out += [f"{what} {k} removed" for k in a if k not in b]
    for k in b:
        if k in a and a[k] != b[k]:
            diff = fields_changed(a[k], b[k], skip)
            if diff:
                out.append(f"{what} {k}: {', '.join(diff)}")
    return out


def _virtual_server(old: VirtualServer, new: VirtualServer) -> list[str]:
    vs = f"virtual_server {new.ident}"
    diff = fields_changed(old, new, ("real_servers",))
    out = [f"{vs}: {', '.join(diff)}"] if diff else []
    out += [f"{vs}: {line}" for line in _named("real_server", old.real_servers,
                                                new.real_servers, _rs_name)]
    return out


def config_changes(old: Config, new: Config) -> tuple[str, ...]:
    """What applying ``new`` over the running ``old`` changes, one line per item (at most
    :data:`MAX_LINES`; empty: nothing)."""
    out: list[str] = []
    if old.global_defs != new.global_defs:
        diff = fields_changed(old.global_defs, new.global_defs)
        out.append(f"global_defs: {', '.join(diff)}" if diff else "global_defs changed")
    a = _by(old.virtual_servers, lambda v: v.ident)
    b = _by(new.virtual_servers, lambda v: v.ident)
    out += [f"virtual_server {k} added" for k in b if k not in a]
    out += [f"virtual_server {k} removed" for k in a if k not in b]
    for k in b:
        if k in a and a[k] != b[k]:
            out += _virtual_server(a[k], b[k])
    out += _named("virtual_server_group", old.virtual_server_groups,
                  new.virtual_server_groups, lambda g: g.name)
    out += _named("vrrp_instance", old.vrrp_instances, new.vrrp_instances, lambda i: i.name)
    out += _named("vrrp_sync_group", old.vrrp_sync_groups, new.vrrp_sync_groups,
                  lambda g: g.name)
    out += _named("vrrp_script", old.vrrp_scripts, new.vrrp_scripts, lambda s: s.name)
    if old.bgp_speaker != new.bgp_speaker:  # lvsd extension (docs/bgp.md): BIRD restarts
        if old.bgp_speaker is None or new.bgp_speaker is None:
            out.append(f"bgp_speaker {'added' if old.bgp_speaker is None else 'removed'}")
        else:
            diff = fields_changed(old.bgp_speaker, new.bgp_speaker)
            out.append(f"bgp_speaker: {', '.join(diff)}")
    out += _named("bgp_announce", old.bgp_announces, new.bgp_announces, lambda a: a.name)
    if len(out) > MAX_LINES:
        out = [*out[:MAX_LINES - 1], f"... and {len(out) - MAX_LINES + 1} more changes"]
    return tuple(out)
