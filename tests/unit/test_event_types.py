"""Events are typed records (``status.event_types``): the bus takes nothing else, every publish
site in the package builds one, what they publish is exactly what ``docs/operations.md`` and the
module docstrings list, and a slow subscriber is told what it lost by a ``dropped`` event."""

from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path

import pytest

import lvsd
from lvsd.status import event_types as et
from lvsd.status import events
from lvsd.status.events import Event, EventBus

pytestmark = pytest.mark.unit

SRC = Path(lvsd.__file__).parent
DOCS = SRC.parents[1] / "docs" / "operations.md"
BY_NAME = {p.__name__: p for p in et.PAYLOADS}


def documented_events() -> dict[str, set[str]]:
    """docs/operations.md, "Events (`/events`)" table: type -> the fields it names."""
    text = DOCS.read_text()
    section = text.split("### Events (`/events`)", 1)[1].split("\n### ", 1)[0]
    out: dict[str, set[str]] = {}
    for line in section.splitlines():
        m = re.match(r"\| `(\w+)` \| (.*) \|$", line)
        if m is None:
            continue
        names: set[str] = set()
        for chunk in re.findall(r"`([^`]*)`", m.group(2).replace("\\|", "/")):
            chunk = re.sub(r"\([^)]*\)", "", chunk)
            names.update(w.strip() for w in chunk.split(",") if w.strip())
        out[m.group(1)] = names
    return out


def published_sites() -> list[tuple[str, int, ast.expr]]:
    """Every ``X.publish(arg)`` call in the package (and the pool service's ``_publish``)."""
    out = []
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        rel = str(path.relative_to(SRC))
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            attr = node.func.attr
            if attr == "publish" or (attr == "_publish" and rel == "pool/service.py"):
                assert node.args, f"{rel}:{node.lineno}: publish without an argument"
                out.append((rel, node.lineno, node.args[0]))
    return out


def test_documented_event_list_is_the_set_of_payload_types() -> None:
    doc = documented_events()
    assert list(doc) == list(et.EVENT_TYPES)
    for t in et.EVENT_TYPES:
        fields: set[str] = set()
        for p in et.PAYLOADS:
            if t == p.TYPE:
                fields.update(f.name for f in dataclasses.fields(p))
        assert doc[t] == fields, t


def test_module_docstrings_list_the_same_types() -> None:
    assert events.__doc__ is not None and et.__doc__ is not None
    prose = re.split(r"Each\s+subscriber",
                     events.__doc__.split("The types, as published:", 1)[1])[0]
    assert re.findall(r"``(\w+)``", prose) == list(et.EVENT_TYPES)
    table = [ln.split()[0] for ln in et.__doc__.splitlines()
             if re.match(r"^[a-z_]+\s+:class:", ln)]
    assert table == list(et.EVENT_TYPES)
    prop = Event.type.__doc__
    assert prop is not None
    assert [w.strip() for w in prop.split("(")[0].split("|")] == list(et.EVENT_TYPES)


def test_every_publish_site_builds_a_typed_record() -> None:
    sites = published_sites()
    assert len(sites) >= 10, sites  # core (3), reload (3), pool service (5)
    made: set[str] = set()
    for rel, line, arg in sites:
        assert isinstance(arg, ast.Call) and isinstance(arg.func, ast.Name), \
            f"{rel}:{line}: publish takes a record of status.event_types"
        assert arg.func.id in BY_NAME and arg.func.id != "Dropped", f"{rel}:{line}"
        made.add(BY_NAME[arg.func.id].TYPE)
    # every documented type is published somewhere; `dropped` the bus makes itself
    assert made | {"dropped"} == set(et.EVENT_TYPES)


def test_bus_refuses_anything_but_a_record() -> None:
    bus = EventBus()
    with pytest.raises(TypeError):
        bus.publish({"instance": "VI_1"})  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        bus.publish("vrrp")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        bus.publish(et.Dropped(3))  # the bus's own, per subscriber
    assert bus.recent() == []


def test_payloads_serialise_as_the_events_stream_did() -> None:
    # the JSON objects /events sent before the records (same keys, same order)
    bus = EventBus()
    cases: list[tuple[et.EventPayload, dict[str, object]]] = [
        (et.VrrpStateChange("VI_1", "BACKUP", "MASTER", "x"),
         {"instance": "VI_1", "old": "BACKUP", "new": "MASTER", "reason": "x"}),
        (et.VrrpError("VI_1", "no"), {"instance": "VI_1", "message": "no"}),
        (et.RealServerChange("V", "10.0.0.1:80", None, "", ()),
         {"vs": "V", "rs": "10.0.0.1:80", "alive": None, "reason": "", "failed_checkers": []}),
        (et.QuorumChange("V", True, False, 3, 2),
         {"vs": "V", "quorum_up": True, "sorry_active": False, "live_weight": 3, "alive": 2}),
        (et.ActionTaken("quorum_up", "V", None, "m"),
         {"kind": "quorum_up", "vs": "V", "rs": None, "message": "m"}),
        (et.Reconciled("sweep", ("add a",), 1),
         {"reason": "sweep", "ops": ["add a"], "repairs": 1}),
        (et.Alarm(("op: err",)), {"alarms": ["op: err"]}),
        (et.ReloadRejected(("e",), 2), {"ok": False, "errors": ["e"], "generation": 2}),
        (et.ReloadApplied(3, {"error": 1}, ("w",), ("real_server 10.0.0.1:80 added",)),
         {"ok": True, "generation": 3, "diagnostics": {"error": 1}, "warnings": ["w"],
          "changes": ["real_server 10.0.0.1:80 added"]}),
        (et.Lifecycle("ready", "abc", "full"),
         {"what": "ready", "config_id": "abc", "mode": "full"}),
        (et.BgpAnnounceEvent("WEB", "10.0.0.100/32", "r"),
         {"name": "WEB", "address": "10.0.0.100/32", "reason": "r"}),
        (et.BgpWithdraw("WEB", "10.0.0.100/32", "r"),
         {"name": "WEB", "address": "10.0.0.100/32", "reason": "r"}),
        (et.BgpSession("10.0.1.1", None, "Established"),
         {"neighbor": "10.0.1.1", "previous": None, "state": "Established"}),
    ]
    assert {type(p) for p, _ in cases} == set(et.PAYLOADS) - {et.Dropped}
    for payload, want in cases:
        ev = bus.publish(payload, at=5.0)
        got = ev.as_dict()
        assert list(got.items()) == [("id", ev.id), ("type", payload.TYPE), ("at", 5.0),
                                     *want.items()]


async def test_slow_subscriber_is_told_what_it_lost() -> None:
    bus = EventBus(history=16, queue_size=2)
    sub = bus.subscribe()
    evs = [bus.publish(et.Alarm((f"a{n}",))) for n in range(5)]
    got = [await sub.get(0) for _ in range(3)]
    assert [e.type if e else None for e in got] == ["dropped", "alarm", "alarm"]
    assert got[0] is not None and got[0].data == {"count": 3} and got[0].id == 0
    assert [e.id for e in got[1:] if e] == [evs[3].id, evs[4].id]
    for n in range(3):
        bus.publish(et.Alarm((f"b{n}",)))
    d = await sub.get(0)
    assert d is not None and d.type == "dropped" and d.data == {"count": 1}
    assert d.id == evs[4].id  # the last one it received: reconnecting replays from there
    rest = [await sub.get(0), await sub.get(0)]
    assert [e.data["alarms"] for e in rest if e] == [["b1"], ["b2"]]
    assert await sub.get(0) is None
    assert sub.dropped == 4
    # a reconnect with the dropped event's id would replay the lost one (b0) from the history
    assert [e.data["alarms"] for e in bus.recent() if e.id > d.id] == [["b0"], ["b1"], ["b2"]]
    sub.close()
    assert bus.subscribers == 0

