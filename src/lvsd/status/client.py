"""``lvsd status`` and ``lvsd reload``: operator commands that talk to a running ``lvsd run``.

``lvsd status`` reads ``GET /status`` and prints the VRRP instances and an ``ipvsadm -Ln``-like
table with health columns: scheduler, its flags and persistence on the service line, forwarding
method, weight and connections per real server (``--stats`` / ``--rate``: the traffic counters
or rates instead, as ``ipvsadm -Ln --stats`` / ``--rate``; ``--json``: the raw document).

``lvsd reload`` subscribes to ``GET /events``, sends SIGHUP to the pid in ``--pid-file`` and
waits (bounded) for that reload's ``reload`` event, then prints it: the generation, the
diagnostics counts and what changed; exit 0 when applied, 1 when rejected (the old config keeps
running). Both use only the standard library (urllib), so they work without the daemon's
dependencies.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
import urllib.error
import urllib.request
from typing import Any

from lvsd.status.model import hostport

DEFAULT_LISTEN = "127.0.0.1:9330"
DEFAULT_PID_FILE = "/run/lvsd.pid"

FWD_NAMES = {"NAT": "Masq", "DR": "Route", "TUN": "Tunnel"}
#: ipvsadm -Ln --stats / --rate columns: (header, TrafficStats field)
STATS_COLUMNS = (("Conns", "conns"), ("InPkts", "inpkts"), ("OutPkts", "outpkts"),
                 ("InBytes", "inbytes"), ("OutBytes", "outbytes"))
RATE_COLUMNS = (("CPS", "cps"), ("InPPS", "inpps"), ("OutPPS", "outpps"), ("InBPS", "inbps"),
                ("OutBPS", "outbps"))


class ClientError(Exception):
    pass


def _url(listen: str, path: str) -> str:
    if listen.startswith(("http://", "https://")):
        return listen.rstrip("/") + path
    return f"http://{listen}{path}"


def fetch_status(listen: str, token: str | None = None, timeout: float = 5.0) -> dict[str, Any]:
    req = urllib.request.Request(_url(listen, "/status"))
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            body = json.loads(resp.read().decode())
    except urllib.error.HTTPError as exc:
        if exc.code == 401:
            raise ClientError(f"{listen}: unauthorized (use --token-file)") from None
        raise ClientError(f"{listen}: HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ClientError(f"cannot reach lvsd status at {listen}: {reason}") from None
    except ValueError as exc:
        raise ClientError(f"{listen}: bad JSON from /status: {exc}") from None
    if not isinstance(body, dict):
        raise ClientError(f"{listen}: unexpected /status document")
    return body


def _health(alive: bool | None) -> str:
    return "UP" if alive else ("pending" if alive is None else "DOWN")


def _rs_health(rs: dict[str, Any]) -> str:
    return "draining" if rs.get("draining") else _health(rs["alive"])


DIAGNOSTICS_SHOWN = 20


def format_diagnostics(cfg: dict[str, Any]) -> list[str]:
    """The running config's errors (what was skipped, as keepalived skips it) and warnings."""
    diags = cfg.get("diagnostics") or []
    if not diags:
        return []
    tot = cfg.get("diagnostics_total") or {}
    out = [f"config: {tot.get('error', 0)} error(s) skipped as keepalived does, "
           f"{tot.get('warning', 0)} warning(s)" + (" [strict]" if cfg.get("strict") else "")]
    errors = [d for d in diags if d["severity"] != "warning"]
    shown = (errors or diags)[:DIAGNOSTICS_SHOWN]
    for d in shown:
        where = f"({d['file']}: Line {d['line']}) " if d.get("file") and d.get("line") else ""
        out.append(f"  {d['severity'].upper():<7} {where}{d['message']}")
    rest = len(errors or diags) - len(shown)
    if rest > 0:
        out.append(f"  ... {rest} more (GET /status: config.diagnostics)")
    return out


def _ident(cfg: dict[str, Any]) -> str:
    """The director's name: its router_id (global_defs) first, what the operator named it;
    the config id (-i, default the host name, selects @conditional lines) when it differs,
    or alone when no router_id is set."""
    rid = cfg.get("router_id")
    if not rid:
        return f"config {cfg['config_id']}"
    if cfg["config_id"] and cfg["config_id"] != rid:
        return f"router_id {rid} (config id {cfg['config_id']})"
    return f"router_id {rid}"


def service_line(vs: dict[str, Any]) -> str:
    """The service as ``ipvsadm -Ln`` prints it (ipvsadm.c print_service_entry): protocol and
    address, scheduler, its flags in parentheses, ``persistent T`` and ``mask M`` (only when
    not a single address), ``ops``."""
    services = ", ".join(vs["services"]) or vs["ident"]
    out = f"{services} {vs['scheduler']}"
    flags = [f for f in vs.get("flags") or () if f != "ops"]
    if flags:
        out += f" ({','.join(flags)})"
    if vs.get("persistence_timeout") is not None:
        out += f" persistent {vs['persistence_timeout']}"
        if vs.get("persistence_granularity"):
            out += f" mask {vs['persistence_granularity']}"
    if "ops" in (vs.get("flags") or ()):
        out += " ops"
    return out


def _num(v: int | None) -> str:
    return "-" if v is None else str(v)


def _traffic(st: dict[str, Any] | None, cols: tuple[tuple[str, str], ...]) -> str:
    return " ".join(f"{'-' if st is None else st[f]:>{max(len(h), 8)}}" for h, f in cols)


def _traffic_header(cols: tuple[tuple[str, str], ...]) -> str:
    return " ".join(f"{h:>{max(len(h), 8)}}" for h, _ in cols)


def format_status(s: dict[str, Any], view: str = "conns") -> str:
    """Human-readable status: instances, then an ``ipvsadm -Ln``-like table. ``view``: the
    real servers' columns, ``conns`` (Forward, Weight, ActiveConn, InActConn, health),
    ``stats`` (ipvsadm --stats) or ``rate`` (ipvsadm --rate)."""
    out: list[str] = []
    proc, cfg, rec = s["process"], s["config"], s["reconciler"]
    flags = ("" if proc["ready"] else " [starting]") + (" [stopping]" if proc["stopping"] else "")
    out.append(f"lvsd {proc['version']} pid {proc['pid']} ({proc['mode']}) {_ident(cfg)} "
               f"from {cfg['file']} generation {cfg['generation']}{flags}")
    if cfg["last_reload_ok"] is False:
        out.append("last reload REJECTED (old config still running):")
        out.extend(f"  {e}" for e in cfg["last_reload_errors"])
    out.extend(format_diagnostics(cfg))
    if s["instances"]:
        out.append("")
        out.append(f"{'VRRP Instance':<16} {'VRID':>4} {'Interface':<10} {'State':<7} "
                   f"{'Prio':>7} {'Master':<24} VIPs")
        for i in s["instances"]:
            master = i["master"] or "?"
            if i["master_priority"] is not None:
                master += f" ({i['master_priority']})"
            vips = " ".join(i["vips"]) + (" [held]" if i["vips_held"] else "")
            out.append(f"{i['name']:<16} {i['vrid']:>4} {i['interface'] or '-':<10} "
                       f"{i['state']:<7} {i['effective_priority']:>3}/{i['base_priority']:<3} "
                       f"{master:<24} {vips}")
            if i.get("fault_reasons"):
                out.append(f"{'':<16} FAULT: {'; '.join(i['fault_reasons'])}")
            if i["transitions"]:
                t = i["transitions"][-1]
                out.append(f"{'':<16} last: {t['old']} -> {t['new']} ({t['reason']}) at "
                           f"{time.strftime('%H:%M:%S', time.localtime(t['at']))}")
    if s["virtual_servers"]:
        out.append("")
        out.append(f"IP Virtual Server (lvsd, {rec['dataplane']} data plane)")
        out.extend(_conns_table(s["virtual_servers"]) if view == "conns"
                   else _traffic_table(s["virtual_servers"], view))
    out.extend(_bgp_lines(s.get("bgp")))
    out.append("")
    alarms = "; ".join(rec["alarms"]) or "none"
    out.append(f"reconciler: {rec['runs_total']} runs, {rec['ops_total']} ops, "
               f"{rec['repairs_total']} repairs, {rec['errors_total']} errors; alarms: {alarms}")
    return "\n".join(out)


def _bgp_lines(bgp: dict[str, Any] | None) -> list[str]:
    """The BGP announcement mode (docs/bgp.md): each route and each session."""
    if not bgp:
        return []
    bird = f"BIRD pid {bgp['bird_pid']}" if bgp["bird_running"] else "BIRD NOT RUNNING"
    out = ["", f"BGP announcements ({bird}, {bgp['bird_restarts']} restarts)"]
    for a in bgp["announcements"]:
        at = time.strftime("%H:%M:%S", time.localtime(a["since"]))
        out.append(f"  {a['name']:<16} {a['address']:<20} {a['state'].upper():<9} since {at}: "
                   f"{a['reason']}")
    for se in bgp["sessions"]:
        at = time.strftime("%H:%M:%S", time.localtime(se["since"]))
        out.append(f"  session {se['neighbor']:<24} {se['state']} since {at}")
    return out


def _conns_table(vss: list[dict[str, Any]]) -> list[str]:
    """``ipvsadm -Ln`` with health: settings, forwarding, weight, connections, why."""
    out = ["Prot LocalAddress:Port Scheduler Flags",
           f"  -> {'RemoteAddress:Port':<28} {'Forward':<7} {'Weight':>6} "
           f"{'ActiveConn':>10} {'InActConn':>9}  {'Health':<7} Why"]
    for vs in vss:
        quorum = f"quorum {'up' if vs['quorum_up'] else 'DOWN'} {vs['alive']}/{vs['quorum']}"
        if vs["sorry_server"]:
            quorum += f" sorry {vs['sorry_server']}{' ACTIVE' if vs['sorry_active'] else ''}"
        out.append(f"{service_line(vs)}  [{quorum}]")
        for rs in vs["real_servers"]:
            # the data plane's forwarding method; the configured one when it holds none
            fwd = rs.get("forward") or FWD_NAMES.get(vs["lb_kind"], vs["lb_kind"])
            w, ac, ic = (_num(rs["dataplane_weight"]), _num(rs["active_conns"]),
                         _num(rs["inactive_conns"]))
            why = rs["reason"]
            missing = [c for c in rs["failed_checkers"] if c not in why]
            if missing:
                why = f"{', '.join(missing)}: {why}"
            if rs.get("draining_until") is not None:
                until = time.strftime("%H:%M:%S", time.localtime(rs["draining_until"]))
                why = f"{why} until {until}"
            out.append(f"  -> {hostport(rs['address'], rs['port']):<28} {fwd:<7} {w:>6} "
                       f"{ac:>10} {ic:>9}  {_rs_health(rs):<7} {why}".rstrip())
    return out


def _traffic_table(vss: list[dict[str, Any]], view: str) -> list[str]:
    """``ipvsadm -Ln --stats`` / ``--rate``: each service's counters, then its servers'."""
    cols = RATE_COLUMNS if view == "rate" else STATS_COLUMNS
    out = [f"{'Prot LocalAddress:Port':<34} {_traffic_header(cols)}", "  -> RemoteAddress:Port"]
    for vs in vss:
        out.append(f"{service_line(vs):<34} {_traffic(vs.get('stats'), cols)}")
        for rs in vs["real_servers"]:
            out.append(f"  -> {hostport(rs['address'], rs['port']):<30} "
                       f"{_traffic(rs.get('stats'), cols)}")
    return out


def _token(path: str | None) -> str | None:
    if not path:
        return None
    from lvsd.status.app import read_token_file  # aiohttp import only when asked

    return read_token_file(path)


def cmd_status(args: argparse.Namespace) -> int:
    try:
        s = fetch_status(args.status_listen, _token(args.token_file))
    except Exception as exc:  # ClientError / TokenError: one line, no traceback
        print(f"lvsd status: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(s, indent=2))
    else:
        print(format_status(s, "rate" if args.rate else "stats" if args.stats else "conns"))
    return 0


def read_pid(path: str) -> int:
    try:
        text = open(path, encoding="ascii").read().strip()  # noqa: SIM115
    except OSError as exc:
        raise ClientError(f"pid file {path}: {exc.strerror or exc}") from None
    try:
        pid = int(text)
    except ValueError:
        raise ClientError(f"pid file {path}: not a pid: {text[:40]!r}") from None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        raise ClientError(f"pid file {path}: process {pid} is not running") from None
    return pid


class EventStream:
    """``GET /events`` read one message at a time with the standard library. Opening it
    returns once the daemon has sent its first message, i.e. once this reader is subscribed:
    every event published after that reaches it."""

    def __init__(self, listen: str, token: str | None, read_timeout: float) -> None:
        req = urllib.request.Request(_url(listen, "/events"))
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            self._resp = urllib.request.urlopen(req, timeout=read_timeout)
        except urllib.error.HTTPError as exc:
            raise ClientError(f"{listen}: /events: HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ClientError(f"cannot reach lvsd status at {listen}: {reason}") from None
        self.next()  # "retry: ..." and a comment: sent once subscribed (status/app.py)

    def next(self) -> tuple[str | None, str]:
        """The next message: (event type or None for a comment/keepalive, data). Raises
        ClientError at the end of the stream or when nothing, not even the daemon's keepalive,
        arrives within the read timeout (a timed-out socket cannot be read again)."""
        event: str | None = None
        data: list[str] = []
        while True:
            try:
                raw = self._resp.readline()
            except TimeoutError:
                raise ClientError("no event from the daemon within the read timeout") from None
            if not raw:
                raise ClientError("the daemon closed /events")
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if not line:
                return event, "\n".join(data)
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "event":
                event = value
            elif name == "data":
                data.append(value)

    def close(self) -> None:
        self._resp.close()


#: the daemon sends a keepalive comment every 15 s (status/app.py KEEPALIVE_SECONDS)
EVENTS_READ_TIMEOUT = 20.0


def reload_and_wait(pid_file: str, listen: str, token: str | None,
                    timeout: float = 30.0) -> dict[str, Any]:
    """SIGHUP the daemon and wait for its ``reload`` event: the event's data (``ok``,
    ``generation``; applied: ``diagnostics``, ``warnings``, ``changes``; rejected:
    ``errors``). Bounded by ``timeout`` plus at most one keepalive interval."""
    pid = read_pid(pid_file)
    stream = EventStream(listen, token, min(timeout, EVENTS_READ_TIMEOUT))
    try:
        os.kill(pid, signal.SIGHUP)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            event, data = stream.next()
            if event == "reload":
                try:
                    doc = json.loads(data)
                except ValueError as exc:
                    raise ClientError(f"{listen}: bad reload event: {exc}") from None
                if isinstance(doc, dict):
                    return doc
    finally:
        stream.close()
    raise ClientError(f"no reload result from {listen} within {timeout:.0f} s")


def format_reload(ev: dict[str, Any], ident: str | None = None) -> list[str]:
    """``lvsd reload``'s reply from the reload event: outcome, generation, diagnostics
    counts, what changed (applied) or why it was refused (rejected). ``ident``: whom it
    names, ``router_id R`` or ``config ID`` (:func:`_ident`)."""
    if not ev.get("ok"):
        return ["reload REJECTED, the previous config keeps running "
                f"(generation {ev.get('generation')}):",
                *(f"  {e}" for e in ev.get("errors") or ())]
    diag = ev.get("diagnostics") or {}
    counts = ", ".join(f"{diag.get(k, 0)} {k}(s)" for k in ("error", "warning"))
    who = f"{ident} " if ident else ""
    out = [f"reload applied: {who}generation {ev.get('generation')} "
           f"(diagnostics: {counts})"]
    changes = ev.get("changes") or []
    out.append("  changed:" if changes else "  nothing changed")
    out.extend(f"    {c}" for c in changes)
    out.extend(f"  warning: {w}" for w in ev.get("warnings") or ())
    return out


def cmd_reload(args: argparse.Namespace) -> int:
    try:
        token = _token(args.token_file)
        ev = reload_and_wait(args.pid_file, args.status_listen, token, args.timeout)
    except Exception as exc:  # ClientError / TokenError: one line, no traceback
        print(f"lvsd reload: {exc}", file=sys.stderr)
        return 1
    ident = None
    if ev.get("ok"):
        try:
            ident = _ident(fetch_status(args.status_listen, token)["config"])
        except ClientError:
            ident = None  # the event said it all; the name is a nicety
    print("\n".join(format_reload(ev, ident)))
    return 0 if ev.get("ok") else 1


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--status-listen", "-s", default=DEFAULT_LISTEN, metavar="HOST:PORT",
                   help=f"the daemon's status endpoint (default {DEFAULT_LISTEN}) or a URL")
    p.add_argument("--token-file", metavar="FILE",
                   help="file holding the status endpoint's bearer token (default: none)")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("status", help="show a running lvsd's state",
                              description="Show the VRRP instances and the pool as ipvsadm -Ln "
                                          "shows it (scheduler, flags, persistence, "
                                          "forwarding, weights, connections) with health.")
    _common(p)
    view = p.add_mutually_exclusive_group()
    view.add_argument("--json", action="store_true", help="print the /status JSON document")
    view.add_argument("--stats", action="store_true",
                      help="traffic counters per service and server (ipvsadm -Ln --stats)")
    view.add_argument("--rate", action="store_true",
                      help="traffic rates per second (ipvsadm -Ln --rate)")
    p.set_defaults(func=cmd_status)
    r = subparsers.add_parser("reload", help="reload a running lvsd's config (SIGHUP)",
                              description="Send SIGHUP and report whether the new config "
                                          "was applied or rejected, and what it changed.")
    _common(r)
    r.add_argument("--pid-file", default=DEFAULT_PID_FILE,
                   help=f"the daemon's pid file (default {DEFAULT_PID_FILE})")
    r.add_argument("--timeout", type=float, default=30.0,
                   help="seconds to wait for the result (default 30)")
    r.set_defaults(func=cmd_reload)
