"""keepalived-compatible dump files rendered from a snapshot.

The expected layouts are keepalived 2.2.7's own output (captured from a real keepalived with
SIGUSR1 / SIGUSR2 / SIGRTMIN+2): the same section markers, key names and indentation, which is
what existing parsers (collectd's keepalived plugin) key on.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from _status_sample import SECRET, FakeProvider

from lvsd.status import dumps

pytestmark = pytest.mark.unit


def _kv(text: str, sep: str) -> list[tuple[int, str, str]]:
    """(indent, key, value) per line, the way collectd's parser splits them."""
    out = []
    for line in text.splitlines():
        key, _, val = line.partition(sep)
        indent = len(key) - len(key.lstrip(" "))
        out.append((indent, key.strip(), val.strip()))
    return out


def test_stats_layout() -> None:
    text = dumps.render_stats(FakeProvider()())
    rows = _kv(text, ":")
    assert rows[0] == (0, "VRRP Instance", "VI_1")
    assert (2, "Advertisements", "") in rows
    assert rows[2] == (4, "Received", "7") and rows[3] == (4, "Sent", "120")
    assert (2, "Became master", "1") in rows and (2, "Released master", "0") in rows
    i = rows.index((2, "Authentication Errors", ""))
    # auth_mismatch counts as keepalived's "Failure" (wrong password)
    assert rows[i + 1:i + 4] == [(4, "Invalid Type", "0"), (4, "Type Mismatch", "0"),
                                 (4, "Failure", "1")]
    assert rows[-2:] == [(4, "Received", "1"), (4, "Sent", "0")]
    assert len(rows) == 19  # keepalived prints exactly these 19 lines per instance


def test_data_layout_and_no_password() -> None:
    text = dumps.render_data(FakeProvider()())
    assert text.startswith("------< Global definitions >------\n")
    assert "------< VRRP Topology >------\n VRRP Instance = VI_1\n" in text
    rows = _kv(text, "=")
    assert (3, "State", "MASTER") in rows
    assert (3, "Virtual Router ID", "51") in rows
    assert (3, "Advert interval", "500 milli-sec") in rows  # v3: keepalived prints ms
    assert (3, "Priority", "150") in rows and (3, "Effective priority", "140") in rows
    assert "Password" not in text and SECRET not in text
    check = dumps.render_check_data(FakeProvider()())
    assert " VS = 192.0.2.100:80/TCP\n" in check and "   RS = [fd00::13]:8080\n" in check


def test_json_layout() -> None:
    arr = json.loads(dumps.render_json(FakeProvider()()))
    assert isinstance(arr, list) and len(arr) == 1
    data, st = arr[0]["data"], arr[0]["stats"]
    assert data["iname"] == "VI_1" and data["state"] == 2 and data["vrid"] == 51
    assert data["base_priority"] == 150 and data["effective_priority"] == 140
    assert "auth_data" not in data
    assert set(st) == {"advert_rcvd", "advert_sent", "become_master", "release_master",
                       "packet_len_err", "advert_interval_err", "ip_ttl_err",
                       "invalid_type_rcvd", "addr_list_err", "invalid_authtype",
                       "authtype_mismatch", "auth_failure", "pri_zero_rcvd", "pri_zero_sent"}
    assert st["advert_sent"] == 120 and st["auth_failure"] == 1


def test_files_written_atomically_0600(tmp_path: Path) -> None:
    snap = FakeProvider()()
    paths = dumps.dump_data(snap, str(tmp_path)) + dumps.dump_stats(snap, str(tmp_path)) + \
        dumps.dump_json(snap, str(tmp_path))
    assert sorted(p.name for p in paths) == ["keepalived.data", "keepalived.json",
                                             "keepalived.stats", "keepalived_check.data"]
    for p in paths:
        assert stat.S_IMODE(p.stat().st_mode) == 0o600
    assert sorted(x.name for x in tmp_path.iterdir()) == sorted(p.name for p in paths)
