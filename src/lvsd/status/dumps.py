"""keepalived-compatible dump files, written on keepalived's signals, for existing tooling.

Theory of operation
-------------------
keepalived writes, on request (``keepalived --signum=DATA|STATS|JSON``):

* SIGUSR1  -> ``/tmp/keepalived.data`` (VRRP) and ``/tmp/keepalived_check.data`` (checker):
  sections ``------< NAME >------``; one space before a top-level ``Key = value``, three before
  an instance's fields (the layout collectd/ncollectd parse: ``VRRP Instance = NAME`` then
  ``State = MASTER``...).
* SIGUSR2  -> ``/tmp/keepalived.stats``: per instance ``VRRP Instance: NAME`` then indented
  ``Key: value`` counters (Advertisements / Packet Errors / Authentication Errors / Priority
  Zero).
* SIGRTMIN+2 -> ``/tmp/keepalived.json``: a JSON array of ``{"data": {...}, "stats": {...}}``
  per instance, keys as keepalived's ``vrrp_json.c`` (``iname``, ``state`` as a number: 0 INIT,
  1 BACKUP, 2 MASTER, 3 FAULT...).

These were checked against keepalived 2.2.7's own output. Differences, on purpose: the password
is never written (keepalived writes it in clear in the data and JSON files), and fields lvsd has
no equivalent for are left out. Everything is rendered from the status
:class:`~lvsd.status.model.Snapshot`, so the files agree with ``/status``. Files are written
atomically (temp file + rename) with mode 0600 like keepalived's umask 0177.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from lvsd.status.model import InstanceStatus, Snapshot, hostport

DATA_FILE = "keepalived.data"
CHECK_DATA_FILE = "keepalived_check.data"
STATS_FILE = "keepalived.stats"
JSON_FILE = "keepalived.json"

STATE_NUM = {"INIT": 0, "BACKUP": 1, "MASTER": 2, "FAULT": 3, "STOPPED": 97}

# codec InvalidReason value -> keepalived stats bucket
_PACKET_ERRORS = {"length": "Length", "truncated": "Length", "ttl": "TTL", "type": "Invalid Type",
                  "version": "Invalid Type", "advert_int": "Advertisement Interval",
                  "addr_list": "Address List", "addr_count": "Address List"}
_AUTH_ERRORS = {"auth_unsupported": "Invalid Type", "auth_type": "Type Mismatch",
                "auth_mismatch": "Failure"}


def _ctime(t: float) -> str:
    frac = f"{t % 1:.6f}"[1:]
    return time.strftime("%a %b %d %H:%M:%S", time.localtime(t)) + frac + \
        time.strftime(" %Y", time.localtime(t))


def _buckets(i: InstanceStatus) -> tuple[dict[str, int], dict[str, int]]:
    pkt = dict.fromkeys(("Length", "TTL", "Invalid Type", "Advertisement Interval",
                         "Address List"), 0)
    auth = dict.fromkeys(("Invalid Type", "Type Mismatch", "Failure"), 0)
    for reason, n in i.invalid_packets.items():
        if reason in _PACKET_ERRORS:
            pkt[_PACKET_ERRORS[reason]] += n
        elif reason in _AUTH_ERRORS:
            auth[_AUTH_ERRORS[reason]] += n
    return pkt, auth


def render_data(s: Snapshot) -> str:
    """``/tmp/keepalived.data`` layout (VRRP side)."""
    out = ["------< Global definitions >------",
           f" lvsd version = {s.process.version}",
           f" Config file = {s.config.file}",
           f" Config id = {s.config.config_id}",
           f" Data plane = {s.reconciler.dataplane}",
           "------< VRRP Topology >------"]
    for i in s.instances:
        last = i.transitions[-1].at if i.transitions else s.process.started_at
        out += [f" VRRP Instance = {i.name}",
                f"   VRRP Version = {i.version}"]
        if i.family == 6:
            out.append("   Using Native IPv6")
        out += [f"   State = {i.state}",
                f"   Last transition = {last:.6f} ({_ctime(last)})",
                f"   Interface = {i.interface or '(none)'}"]
        if i.state == "BACKUP" and i.master is not None:
            out += [f"   Master router = {i.master}",
                    f"   Master priority = {i.master_priority}"]
        adv = (f"{i.advert_int:g} sec" if i.version == 2
               else f"{round(i.advert_int * 1000)} milli-sec")
        out += [f"   Virtual Router ID = {i.vrid}",
                f"   Priority = {i.base_priority}",
                f"   Effective priority = {i.effective_priority}",
                f"   Advert interval = {adv}",
                f"   Virtual IP ({len(i.vips)}):"]
        for v in i.vips:
            out.append(f"     {v} dev {i.interface or '?'}{' set' if i.vips_held else ''}")
    groups = sorted({i.sync_group for i in s.instances if i.sync_group})
    if groups:
        out.append("------< VRRP Sync groups >------")
        for g in groups:
            members = [i for i in s.instances if i.sync_group == g]
            out.append(f" VRRP Sync Group = {g}, {members[0].state}")
            out += [f"   monitor = {m.name}" for m in members]
    return "\n".join(out) + "\n"


def render_check_data(s: Snapshot) -> str:
    """``/tmp/keepalived_check.data`` layout (checker side), approximated."""
    out = ["------< LVS Topology >------"]
    for vs in s.virtual_servers:
        out += [f" VS = {vs.ident}",
                f"   lb_algo = {vs.scheduler}",
                f"   lb_kind = {vs.lb_kind}",
                f"   quorum = {vs.quorum}, {'UP' if vs.quorum_up else 'DOWN'}",
                f"   alive real servers = {vs.alive}"]
        if vs.sorry_server:
            out.append(f"   sorry server = {vs.sorry_server}"
                       f"{' (active)' if vs.sorry_active else ''}")
        for rs in vs.real_servers:
            out += [f"   RS = {hostport(rs.address, rs.port)}",
                    f"     weight = {rs.configured_weight}",
                    f"     alive = {'yes' if rs.alive else 'no'}",
                    f"     set = {'yes' if rs.in_dataplane else 'no'}"]
    out.append("------< Health checkers >------")
    for c in s.checkers:
        out += [f" {c.real_server} in {c.vs}",
                f"   Checker = {c.checker}",
                f"   Up = {'unknown' if c.up is None else ('yes' if c.up else 'no')}"]
        if c.error:
            out.append(f"   Last error = {c.error}")
    return "\n".join(out) + "\n"


def render_stats(s: Snapshot) -> str:
    """``/tmp/keepalived.stats`` layout."""
    out: list[str] = []
    for i in s.instances:
        pkt, auth = _buckets(i)
        out += [f"VRRP Instance: {i.name}",
                "  Advertisements:",
                f"    Received: {i.adverts_received}",
                f"    Sent: {i.adverts_sent}",
                f"  Became master: {i.became_master}",
                f"  Released master: {i.released_master}",
                "  Packet Errors:"]
        out += [f"    {k}: {v}" for k, v in pkt.items()]
        out.append("  Authentication Errors:")
        out += [f"    {k}: {v}" for k, v in auth.items()]
        out += ["  Priority Zero:",
                f"    Received: {i.priority_zero_received}",
                f"    Sent: {i.priority_zero_sent}"]
    return "\n".join(out) + ("\n" if out else "")


def render_json(s: Snapshot) -> str:
    """``/tmp/keepalived.json`` (keepalived's v1 layout: a JSON array)."""
    arr: list[dict[str, Any]] = []
    for i in s.instances:
        pkt, auth = _buckets(i)
        last = i.transitions[-1].at if i.transitions else s.process.started_at
        data: dict[str, Any] = {
            "iname": i.name,
            "ifp_ifname": i.interface or "",
            "master_priority": i.master_priority or 0,
            "last_transition": last,
            "vrid": i.vrid,
            "base_priority": i.base_priority,
            "effective_priority": i.effective_priority,
            "vipset": i.vips_held,
            "adver_int": i.advert_int,
            "state": STATE_NUM.get(i.state, 0),
            "wantstate": STATE_NUM.get(i.state, 0),
            "version": i.version,
            "vips": list(i.vips),
        }
        stats = {
            "advert_rcvd": i.adverts_received,
            "advert_sent": i.adverts_sent,
            "become_master": i.became_master,
            "release_master": i.released_master,
            "packet_len_err": pkt["Length"],
            "advert_interval_err": pkt["Advertisement Interval"],
            "ip_ttl_err": pkt["TTL"],
            "invalid_type_rcvd": pkt["Invalid Type"],
            "addr_list_err": pkt["Address List"],
            "invalid_authtype": auth["Invalid Type"],
            "authtype_mismatch": auth["Type Mismatch"],
            "auth_failure": auth["Failure"],
            "pri_zero_rcvd": i.priority_zero_received,
            "pri_zero_sent": i.priority_zero_sent,
        }
        arr.append({"data": data, "stats": stats})
    return json.dumps(arr, separators=(",", ":"))


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def dump_data(s: Snapshot, directory: str = "/tmp") -> list[Path]:
    d = Path(directory)
    p1, p2 = d / DATA_FILE, d / CHECK_DATA_FILE
    write_atomic(p1, render_data(s))
    write_atomic(p2, render_check_data(s))
    return [p1, p2]


def dump_stats(s: Snapshot, directory: str = "/tmp") -> list[Path]:
    p = Path(directory) / STATS_FILE
    write_atomic(p, render_stats(s))
    return [p]


def dump_json(s: Snapshot, directory: str = "/tmp") -> list[Path]:
    p = Path(directory) / JSON_FILE
    write_atomic(p, render_json(s))
    return [p]
