"""The resolved model as JSON: ``to_json(config)`` (a dict) and ``write_json(config, out)``
(the streamed, compact document ``lvsd check-config --json`` prints). Secrets redacted.

Theory of operation
-------------------
Walks the frozen dataclasses generically: dataclasses become objects (field order kept),
enums their value, tuples/frozensets arrays (frozensets sorted), bytes hex strings, ``Pos``
``"file:line"``. Fields holding secrets (``auth_pass``, the SSL ``password``) become
``"<redacted>"`` when set, so the output can be pasted into a ticket or diffed between
two configs. ``diagnostics`` are objects ``{pos, severity, kind, message}``.

:func:`to_json` keeps every field (``null``/``false``/``[]`` included): the in-process
view for tests and tools.

:func:`write_json` (``check-config --json``) is the same document made compact, because a
large pool repeats the same unset fields tens of thousands of times (a checker alone has
40-odd fields; a 50 MB config gave ~900 MB of indented JSON):

* inside model objects, a field whose value is ``null``, ``false`` or an empty array is
  left out -- read a missing key as ``null`` / ``false`` / ``[]``. Every number and string
  is kept, defaults included (``connect_timeout: 5.0`` is there even when not written);
* a checker leaves out the settings of other checker kinds still at their defaults
  (``http_protocol`` of a TCP_CHECK, ``dns_type``/``dns_name`` of anything but DNS_CHECK);
* the top-level keys are always all present; no indentation, one top-level key per line
  and one element of each top-level array per line (``diff`` and ``grep`` friendly);
* it is streamed: one top-level array element is serialised at a time, never the whole
  document as one string.

The result is about 3-4 times the size of the configuration text for a generated pool of
2,000 virtual servers x 10 real servers (``tests/config/test_hostile.py`` measures it).
"""

from __future__ import annotations

import dataclasses
import enum
import json
from collections.abc import Iterator
from typing import Any, TextIO

from lvsd.config.model import Checker, CheckKind, Config, Diagnostic, Pos
from lvsd.config.secrets import REDACTED, SECRET_FIELDS

# checker settings that only mean something for these kinds (model.Checker groups them)
_KIND_ONLY: dict[str, frozenset[CheckKind]] = {
    "http_protocol": frozenset({CheckKind.HTTP_GET, CheckKind.SSL_GET}),
    "dns_type": frozenset({CheckKind.DNS_CHECK}),
    "dns_name": frozenset({CheckKind.DNS_CHECK}),
}
_CHECKER_DEFAULTS = {f.name: f.default for f in dataclasses.fields(Checker)
                     if f.name in _KIND_ONLY}
_FIELDS: dict[type, tuple[str, ...] | None] = {}
_SCALAR = frozenset({str, int, float, bool, type(None)})


def _field_names(cls: type) -> tuple[str, ...] | None:
    """The field names of a dataclass type (cached), None for any other type."""
    try:
        return _FIELDS[cls]
    except KeyError:
        names = (tuple(f.name for f in dataclasses.fields(cls))
                 if dataclasses.is_dataclass(cls) else None)
        _FIELDS[cls] = names
        return names


def _conv(value: Any, compact: bool = False) -> Any:
    cls = type(value)
    if cls in _SCALAR:
        return value
    if cls is Pos:
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    names = _field_names(cls)
    if names is not None:
        secrets = SECRET_FIELDS.get(cls, frozenset())
        checker = cls is Checker
        out: dict[str, Any] = {}
        for name in names:
            v = getattr(value, name)
            if compact:
                if v is None or v is False or v == () or v == frozenset():
                    continue
                if (checker and name in _KIND_ONLY and value.kind not in _KIND_ONLY[name]
                        and v == _CHECKER_DEFAULTS[name]):
                    continue
            if name in secrets and v is not None:
                out[name] = REDACTED
            else:
                out[name] = v if type(v) in _SCALAR else _conv(v, compact)
        return out
    if isinstance(value, frozenset):
        return sorted(_conv(v, compact) for v in value)
    if isinstance(value, tuple | list):
        return [_conv(v, compact) for v in value]
    if isinstance(value, bytes):
        return value.hex()
    return value


def _diag(d: Diagnostic) -> dict[str, Any]:
    return {"pos": str(d.pos) if d.pos else None, "severity": d.severity.value,
            "kind": d.kind.value, "message": d.message}


def to_json(config: Config) -> dict[str, Any]:
    """The resolved model as a JSON-serialisable dict (defaults filled in, every field)."""
    data = _conv(config)
    assert isinstance(data, dict)
    data["diagnostics"] = [_diag(d) for d in config.diagnostics]
    return data


def iter_json(config: Config) -> Iterator[str]:
    """The compact document of :func:`write_json`, in pieces of about one top-level array
    element each."""
    enc = json.JSONEncoder(separators=(",", ":"), check_circular=False)
    names = _field_names(Config) or ()
    for i, name in enumerate(names):
        value = getattr(config, name)
        head = ("{" if i == 0 else "") + enc.encode(name) + ":"
        tail = "}\n" if i == len(names) - 1 else ",\n"
        if isinstance(value, tuple) and value:
            yield head + "[\n"
            last = len(value) - 1
            for j, item in enumerate(value):
                data = _diag(item) if name == "diagnostics" else _conv(item, True)
                yield enc.encode(data) + ("\n" if j == last else ",\n")
            yield "]" + tail
        else:
            yield head + enc.encode(_conv(value, True)) + tail


def write_json(config: Config, out: TextIO) -> None:
    """Write the compact JSON document of ``config`` to ``out`` (see the module doc)."""
    for piece in iter_json(config):
        out.write(piece)
