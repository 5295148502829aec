"""The big metric families are written as text by lvsd itself (status/metrics.py ``_Text``):
the exposition must be byte for byte what prometheus-client writes for the same samples."""

from __future__ import annotations

import math

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from lvsd.status.metrics import _esc, _One, _Text, render

LABELS = ["virtual_server", "real_server", "kind", "target"]  # not sorted: the text sorts them
ROWS = [
    ("10.0.0.1:80", "192.0.2.1:80", "TCP_CHECK", "192.0.2.1:80"),
    ('we"ird\\vs\nname', "[fd00::1]:443", "HTTP_GET", '192.0.2.2:80 /a"b\\c'),
    ("fwmark 7", "192.0.2.3:0", "MISC_CHECK", "/bin/check --x={y}"),
]
VALUES = [0, 1, 999_999, 1_000_000, 123_456_789, 2**53 + 1, 0.0, 1.0, 0.000123, 1.5e9,
          1_700_000_000.123, -3, -0.5, math.inf, -math.inf]


@pytest.mark.parametrize("typ", ["gauge", "counter"])
def test_text_family_matches_prometheus_client(typ: str) -> None:
    doc = 'Doc with a \\ backslash\nand "quotes"'
    lib = (GaugeMetricFamily if typ == "gauge" else CounterMetricFamily)(
        "lvsd_x", doc, labels=LABELS)
    fast = _Text("lvsd_x", doc, typ, LABELS)
    for row in ROWS:
        for v in VALUES:
            lib.add_metric(list(row), v)
            fast.add_metric([_esc(x) for x in row], v)
    want = generate_latest(_One(lib)).decode()
    assert fast.text() == want
    reg = CollectorRegistry(auto_describe=False)
    reg.register(_One(fast))
    assert render(reg).decode() == want


def test_text_family_without_labels() -> None:
    lib = GaugeMetricFamily("lvsd_y", "plain")
    fast = _Text("lvsd_y", "plain", "gauge", [])
    for v in (0, 7, 0.25):
        lib.add_metric([], v)
        fast.add_metric([], v)
    assert fast.text() == generate_latest(_One(lib)).decode()
