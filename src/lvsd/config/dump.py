"""``to_json(config)``: the resolved model as plain JSON data, secrets redacted.

Theory of operation
-------------------
Walks the frozen dataclasses generically: dataclasses become dicts (field order kept),
enums their value, tuples/frozensets lists (frozensets sorted), bytes hex strings, ``Pos``
``"file:line"``. Fields holding secrets (``auth_pass``, the SSL ``password``) become
``"<redacted>"`` when set, so the output can be pasted into a ticket or diffed between
two configs (``lvsd check-config --json``).
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

from lvsd.config.model import Config, Pos, SslGlobal, VrrpInstance

REDACTED = "<redacted>"
_SECRET_FIELDS: dict[type, frozenset[str]] = {
    VrrpInstance: frozenset({"auth_pass"}),
    SslGlobal: frozenset({"password"}),
}


def _conv(value: Any) -> Any:
    if isinstance(value, Pos):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        secrets = _SECRET_FIELDS.get(type(value), frozenset())
        out: dict[str, Any] = {}
        for f in dataclasses.fields(value):
            v = getattr(value, f.name)
            out[f.name] = REDACTED if (f.name in secrets and v is not None) else _conv(v)
        return out
    if isinstance(value, frozenset):
        return sorted(_conv(v) for v in value)
    if isinstance(value, tuple | list):
        return [_conv(v) for v in value]
    if isinstance(value, bytes):
        return value.hex()
    return value


def to_json(config: Config) -> dict[str, Any]:
    """The resolved model as a JSON-serialisable dict (defaults filled in)."""
    data = _conv(config)
    assert isinstance(data, dict)
    data["diagnostics"] = [
        {"pos": str(d.pos) if d.pos else None, "severity": d.severity.value, "message": d.message}
        for d in config.diagnostics
    ]
    return data
