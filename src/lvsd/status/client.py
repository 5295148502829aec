"""``lvsd status`` and ``lvsd reload``: operator commands that talk to a running ``lvsd run``.

``lvsd status`` reads ``GET /status`` and prints the VRRP instances and an ``ipvsadm -Ln``-like
table with health columns (``--json``: the raw document). ``lvsd reload`` sends SIGHUP to the pid
in ``--pid-file`` and waits (bounded) until ``/status`` reports the outcome of that reload,
then prints it: exit 0 when applied, 1 when rejected (the old config keeps running).
Both use only the standard library (urllib), so they work without the daemon's dependencies.
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


def format_status(s: dict[str, Any]) -> str:
    """Human-readable status: instances, then an ``ipvsadm -Ln``-like table."""
    out: list[str] = []
    proc, cfg, rec = s["process"], s["config"], s["reconciler"]
    flags = ("" if proc["ready"] else " [starting]") + (" [stopping]" if proc["stopping"] else "")
    out.append(f"lvsd {proc['version']} pid {proc['pid']} ({proc['mode']}) config "
               f"{cfg['config_id']} from {cfg['file']} generation {cfg['generation']}{flags}")
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
        out.append("Prot LocalAddress:Port Scheduler Flags")
        out.append(f"  -> {'RemoteAddress:Port':<28} {'Forward':<7} {'Weight':>6} "
                   f"{'ActiveConn':>10} {'InActConn':>9}  {'Health':<7} Why")
        for vs in s["virtual_servers"]:
            services = ", ".join(vs["services"]) or vs["ident"]
            flags = f"quorum {'up' if vs['quorum_up'] else 'DOWN'} {vs['alive']}/{vs['quorum']}"
            if vs["sorry_server"]:
                flags += f" sorry {vs['sorry_server']}{' ACTIVE' if vs['sorry_active'] else ''}"
            out.append(f"{services} {vs['scheduler']} ({flags})")
            fwd = FWD_NAMES.get(vs["lb_kind"], vs["lb_kind"])
            for rs in vs["real_servers"]:
                w = "-" if rs["dataplane_weight"] is None else str(rs["dataplane_weight"])
                ac = "-" if rs["active_conns"] is None else str(rs["active_conns"])
                ic = "-" if rs["inactive_conns"] is None else str(rs["inactive_conns"])
                why = rs["reason"]
                missing = [c for c in rs["failed_checkers"] if c not in why]
                if missing:
                    why = f"{', '.join(missing)}: {why}"
                if rs.get("draining_until") is not None:
                    until = time.strftime("%H:%M:%S", time.localtime(rs["draining_until"]))
                    why = f"{why} until {until}"
                out.append(f"  -> {hostport(rs['address'], rs['port']):<28} {fwd:<7} {w:>6} "
                           f"{ac:>10} {ic:>9}  {_rs_health(rs):<7} {why}".rstrip())
    out.append("")
    alarms = "; ".join(rec["alarms"]) or "none"
    out.append(f"reconciler: {rec['runs_total']} runs, {rec['ops_total']} ops, "
               f"{rec['repairs_total']} repairs, {rec['errors_total']} errors; alarms: {alarms}")
    return "\n".join(out)


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
        print(format_status(s))
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


def reload_and_wait(pid_file: str, listen: str, token: str | None,
                    timeout: float = 30.0) -> tuple[bool, dict[str, Any]]:
    """SIGHUP the daemon and wait for ``/status`` to show the outcome. (applied?, config)."""
    pid = read_pid(pid_file)
    before = fetch_status(listen, token)["config"]
    os.kill(pid, signal.SIGHUP)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.1)
        try:
            cfg = fetch_status(listen, token)["config"]
        except ClientError:
            continue
        if cfg["reloads_total"] > before["reloads_total"]:
            return bool(cfg["last_reload_ok"]), cfg
    raise ClientError(f"no reload result from {listen} within {timeout:.0f} s")


def cmd_reload(args: argparse.Namespace) -> int:
    try:
        ok, cfg = reload_and_wait(args.pid_file, args.status_listen, _token(args.token_file),
                                  args.timeout)
    except Exception as exc:
        print(f"lvsd reload: {exc}", file=sys.stderr)
        return 1
    if ok:
        print(f"reload applied: config {cfg['config_id']} generation {cfg['generation']}")
        for w in cfg["warnings"]:
            print(f"  warning: {w}")
        return 0
    print("reload REJECTED, the previous config keeps running:")
    for e in cfg["last_reload_errors"]:
        print(f"  {e}")
    return 1


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--status-listen", "-s", default=DEFAULT_LISTEN, metavar="HOST:PORT",
                   help=f"the daemon's status endpoint (default {DEFAULT_LISTEN}) or a URL")
    p.add_argument("--token-file", metavar="FILE", help="bearer token for the status endpoint")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("status", help="show a running lvsd's state",
                              description="Show VRRP instances and the pool with health.")
    _common(p)
    p.add_argument("--json", action="store_true", help="print the /status JSON document")
    p.set_defaults(func=cmd_status)
    r = subparsers.add_parser("reload", help="reload a running lvsd's config (SIGHUP)",
                              description="Send SIGHUP and report whether the new config "
                                          "was applied or rejected.")
    _common(r)
    r.add_argument("--pid-file", default=DEFAULT_PID_FILE, help=f"default {DEFAULT_PID_FILE}")
    r.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the result")
    r.set_defaults(func=cmd_reload)
