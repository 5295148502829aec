"""``lvsd run``: its arguments (lvsd's own and keepalived's command line), and the entry point
that runs a :class:`Daemon`.

keepalived's flags are accepted with keepalived's meaning where lvsd has one (keepalived 2.2.7
keepalived/core/main.c ``parse_cmdline`` and ``usage``), so a keepalived unit file's
``ExecStart=/usr/sbin/keepalived --dont-fork $DAEMON_ARGS`` works with ``keepalived`` replaced
by ``lvsd run``:

* meaning kept: ``-f/--use-file``, ``-P/--vrrp``, ``-C/--check``, ``-l/--log-console``,
  ``-S/--log-facility``, ``-G/--no-syslog``, ``-g/--log-file``, ``-u/--umask``, ``-p/--pid``,
  ``-i/--config-id``, ``-t/--config-test[=FILE]``, ``-d/--dump-conf`` (to the log),
  ``-v/--version``, ``--signum=SIGFUNC``;
* already what lvsd does, so accepted silently: ``-n/--dont-fork`` (lvsd never forks),
  ``-R/--dont-respawn`` (no children), ``-B/--no_bfd`` (no BFD), ``--all`` (one process runs
  both halves), ``-I/--dont-release-ipvs`` (lvsd leaves the IPVS table on stop unless
  ``lvs_flush_on_stop``), ``-D/--log-detail`` (lvsd's log always carries that detail),
  ``--flush-log-file`` (every record is flushed);
* not implemented: accepted with one warning line each (``IGNORED``);
* refused with one line, because ignoring them would do something else than asked:
  ``-s/--namespace`` and ``-T/--genhash``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys

from lvsd.cli import _LazyVersion
from lvsd.daemon.logsetup import FACILITY_DAEMON, SECRET_FILTER, parse_facility, setup_logging
from lvsd.daemon.options import DEFAULT_CONFIG, DEFAULT_PID_FILE, DEFAULT_STATUS_LISTEN, Options

log = logging.getLogger(__name__)

DEFAULT_LOG_FILE = "/tmp/lvsd.log"  # keepalived: <tmp_dir>/keepalived.log

# dest -> (the flag as the warning names it, why lvsd ignores it)
IGNORED: dict[str, tuple[str, str]] = {
    "snmp": ("--snmp", "SNMP is not implemented; use /metrics (Prometheus) or /status"),
    "snmp_agent_socket": ("--snmp-agent-socket", "SNMP is not implemented"),
    "release_vips": ("--release-vips", "VIPs are released only when an instance leaves MASTER"),
    "dont_release_vrrp": ("--dont-release-vrrp",
                          "a stopping master always sends priority 0 and removes its VIPs"),
    "address_monitoring": ("--address-monitoring", "address changes are not logged"),
    "vrrp_pid": ("--vrrp_pid", "lvsd is one process: its pid is in the -p/--pid file"),
    "checkers_pid": ("--checkers_pid", "lvsd is one process: its pid is in the -p/--pid file"),
    "bfd_pid": ("--bfd_pid", "lvsd is one process and has no BFD"),
    "core_dump": ("--core-dump", "core dumps are the system's default"),
    "core_dump_pattern": ("--core-dump-pattern", "core dumps are the system's default"),
    "all_config": ("--all-config", "a missing include is reported by the loader as usual"),
    "mem_check_log": ("--mem-check-log", "no malloc checking in Python"),
    "no_mem_check": ("--no-mem-check", "no malloc checking in Python"),
    "config_fd": ("--config-fd", "keepalived-internal option"),
    "perf": ("--perf", "no perf support"),
    "debug": ("--debug", "use --verbose for debug logging"),
}

# keepalived's --signum names (lib/signals.c get_signum) and the signal lvsd handles for each
SIGNUMS: dict[str, int] = {
    "STOP": signal.SIGTERM, "RELOAD": signal.SIGHUP, "DATA": signal.SIGUSR1,
    "STATS": signal.SIGUSR2, "JSON": signal.SIGRTMIN + 2,
}


def mode_of(a: argparse.Namespace) -> str:
    return "vrrp-only" if a.vrrp_only else ("check-only" if a.check_only else "full")


def options_from_args(a: argparse.Namespace) -> Options:
    listen = None if a.status_listen in ("", "none", "off") else a.status_listen
    return Options(config_file=a.config_file, config_id=a.config_id, dataplane=a.dataplane,
                   status_listen=listen, status_token_file=a.status_token_file,
                   pid_file=a.pid_file or None, log_format=a.log_format, mode=mode_of(a),
                   dump_dir=a.dump_dir, vrrp_transport=a.vrrp_transport,
                   sweep_interval=a.sweep, stop_timeout=a.stop_timeout, nft_table=a.nft_table,
                   verbose=a.verbose, strict=a.strict)


def ignored_flags(a: argparse.Namespace) -> list[str]:
    """One warning line per keepalived flag given that lvsd does not implement."""
    out = []
    for dest, (flag, why) in IGNORED.items():
        value = getattr(a, dest, None)
        if value not in (None, False):
            out.append(f"lvsd ignores keepalived's {flag}: {why}")
    return out


def parse_umask(text: str) -> int | None:
    """``-u MASK`` as keepalived reads it (main.c ``set_umask``: ``strtoll(arg, 0)``, so 0x..
    is hex and a leading 0 octal), None when invalid."""
    t = text.strip()
    try:
        if t.lower().startswith("0x"):
            v = int(t[2:], 16)
        elif len(t) > 1 and t.startswith("0"):
            v = int(t[1:], 8)
        else:
            v = int(t, 10)
    except ValueError:
        return None
    return v if 0 <= v <= 0o777 else None


def signum(name: str) -> int:
    """``--signum=SIGFUNC``: print the signal number for SIGFUNC as keepalived does
    (main.c: ``printf("%d\\n")``, exit 0; unknown: "Unknown sigfunc %s", exit 1)."""
    if name == "STATS_CLEAR":
        # keepalived's SIGRTMAX-1: lvsd does not handle it, and its default action would
        # terminate lvsd, so no number is printed
        print("lvsd does not implement STATS_CLEAR (no signal clears its statistics)",
              file=sys.stderr)
        return 1
    sig = SIGNUMS.get(name)
    if sig is None:
        print(f"Unknown sigfunc {name}", file=sys.stderr)
        return 1
    print(int(sig))
    return 0


def config_test(a: argparse.Namespace) -> int:
    """``-t/--config-test[=FILE]``: the check of ``lvsd check-config`` and its exit code; with
    FILE, stderr is appended to FILE (main.c case 't': O_APPEND|O_CREAT|O_NOFOLLOW, 0644)."""
    if a.config_test:
        try:
            fd = os.open(a.config_test, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW,
                         0o644)
        except OSError as exc:
            # main.c: "Unable to open config-test log file %s %d - %m", exit(EXIT_FAILURE)
            print(f"Unable to open config-test log file {a.config_test} {exc.errno} - "
                  f"{exc.strerror}", file=sys.stderr)
            return 1
        sys.stderr.flush()
        os.dup2(fd, 2)
        os.close(fd)
    from lvsd.config.checkcmd import check_file

    return int(check_file(a.config_file, config_id=a.config_id, dataplane=a.dataplane,
                          mode=mode_of(a), strict=a.strict))


def dump_conf(opts: Options) -> None:
    """``-d/--dump-conf``: the configuration as lvsd resolved it, to the log (keepalived:
    check_daemon.c / vrrp_daemon.c ``dump_data_check(NULL)`` / ``dump_data_vrrp(NULL)`` log it
    after reading it). One record per object, one per real server; secrets redacted."""
    from lvsd.config.dump import to_json
    from lvsd.config.loader import load
    from lvsd.daemon.configinfo import config_secrets

    cfg = load(opts.config_file, config_id=opts.config_id)
    SECRET_FILTER.secrets.update(config_secrets(cfg))
    data = to_json(cfg)
    log.info("------< lvsd configuration %s (config id '%s') >------", cfg.source,
             cfg.config_id)
    for key, value in data.items():
        if key in ("diagnostics", "source", "config_id"):
            continue
        items = value if isinstance(value, list) else [value]
        for item in items:
            rs = item.pop("real_servers", None) if isinstance(item, dict) else None
            log.info("%s %s", key, json.dumps(item, separators=(",", ":")))
            for r in rs or ():
                log.info("  real_server %s", json.dumps(r, separators=(",", ":")))
    log.info("------< end of configuration >------")


def cmd_run(a: argparse.Namespace) -> int:
    if a.signum is not None:
        return signum(a.signum)
    if a.genhash:
        print("lvsd has no genhash mode: use keepalived's genhash tool to compute url digests",
              file=sys.stderr)
        return 1
    if a.namespace is not None:
        print(f"lvsd does not switch network namespaces (--namespace {a.namespace}): run it "
              f"as 'ip netns exec {a.namespace} lvsd run ...'", file=sys.stderr)
        return 1
    if a.umask is not None:
        mask = parse_umask(a.umask)
        if mask is None:  # main.c set_umask: a message, and the umask is left as it is
            print(f"Invalid --umask option {a.umask}", file=sys.stderr)
        else:
            os.umask(mask)
    if a.config_test is not None:
        return config_test(a)
    facility = FACILITY_DAEMON
    if a.log_facility is not None:
        parsed = parse_facility(a.log_facility)
        if parsed is None:  # main.c: reported, and the default facility is kept
            print(f"Invalid log facility '{a.log_facility}'", file=sys.stderr)
        else:
            facility = parsed
    opts = options_from_args(a)
    logfile = None if a.log_file is None else (a.log_file or DEFAULT_LOG_FILE)
    try:
        setup_logging(opts.log_format, opts.verbose, syslog=not a.no_syslog,
                      facility=facility, console=a.log_console, logfile=logfile)
    except OSError as exc:
        print(f"lvsd: log file {logfile}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    for line in ignored_flags(a):
        log.warning("%s", line)
    if a.dump_conf:
        dump_conf(opts)
    from lvsd.daemon.core import Daemon
    from lvsd.daemon.limits import raise_nofile_limit

    raise_nofile_limit()  # before anything is opened (keepalived set_max_file_limit)
    try:
        return asyncio.run(Daemon(opts).run())
    except KeyboardInterrupt:  # a second Ctrl-C during shutdown
        return 130


def _keepalived_args(p: argparse.ArgumentParser) -> None:
    k = p.add_argument_group(
        "keepalived's command line",
        "accepted with keepalived's meaning; see docs/migration.md for each flag")
    k.add_argument("-l", "--log-console", action="store_true",
                   help="also log to the console (stderr)")
    k.add_argument("-D", "--log-detail", action="count", default=0,
                   help="accepted: lvsd's log always has keepalived's -D detail")
    k.add_argument("-S", "--log-facility", metavar="FACILITY",
                   help="syslog facility LOG_LOCAL0..7, user or daemon (default)")
    k.add_argument("-G", "--no-syslog", action="store_true", help="don't log via syslog")
    k.add_argument("-g", "--log-file", nargs="?", const="", metavar="FILE",
                   help=f"also log to FILE (default {DEFAULT_LOG_FILE})")
    k.add_argument("--flush-log-file", action="store_true",
                   help="accepted: every record is flushed")
    k.add_argument("-u", "--umask", metavar="MASK",
                   help="umask for file creation (numeric; default: inherited)")
    k.add_argument("-n", "--dont-fork", action="store_true", help="accepted: lvsd never forks")
    k.add_argument("-R", "--dont-respawn", action="store_true",
                   help="accepted: lvsd has no child processes")
    k.add_argument("-B", "--no_bfd", action="store_true", help="accepted: lvsd has no BFD")
    k.add_argument("--all", action="store_true", dest="run_all",
                   help="accepted: one process runs VRRP and the checkers")
    k.add_argument("-I", "--dont-release-ipvs", action="store_true",
                   help="accepted: lvsd leaves the IPVS table on stop (unless "
                        "lvs_flush_on_stop) and adopts it on start")
    k.add_argument("-d", "--dump-conf", action="store_true",
                   help="dump the configuration to the log at start")
    k.add_argument("-t", "--config-test", nargs="?", const="", metavar="LOG_FILE",
                   help="check the configuration as 'lvsd check-config' does and exit with its "
                        "code; output to stderr, or appended to LOG_FILE")
    k.add_argument("--signum", metavar="SIGFUNC",
                   help="print the signal number for STOP, RELOAD, DATA, STATS, JSON")
    k.add_argument("-s", "--namespace", metavar="NAME",
                   help="refused: use 'ip netns exec NAME lvsd run ...'")
    k.add_argument("-T", "--genhash", action="store_true", help="refused: no genhash mode")
    ignored = k.add_argument  # accepted, one warning each (IGNORED)
    ignored("-x", "--snmp", action="store_true", help="ignored (no SNMP)")
    ignored("-A", "--snmp-agent-socket", metavar="FILE", help="ignored (no SNMP)")
    ignored("-X", "--release-vips", action="store_true", help="ignored")
    ignored("-V", "--dont-release-vrrp", action="store_true", help="ignored")
    ignored("-a", "--address-monitoring", action="store_true", help="ignored")
    ignored("-r", "--vrrp_pid", metavar="FILE", help="ignored: one process, see -p")
    ignored("-c", "--checkers_pid", metavar="FILE", help="ignored: one process, see -p")
    ignored("-b", "--bfd_pid", metavar="FILE", help="ignored: no BFD")
    ignored("-m", "--core-dump", action="store_true", help="ignored")
    ignored("-M", "--core-dump-pattern", nargs="?", const="core", metavar="PATN",
            help="ignored")
    ignored("-e", "--all-config", action="store_true", help="ignored")
    ignored("-L", "--mem-check-log", action="store_true", help="ignored")
    ignored("--no-mem-check", action="store_true", help="ignored")
    ignored("--config-fd", metavar="FD", help=argparse.SUPPRESS)
    ignored("--perf", nargs="?", const="run", metavar="PERF_TYPE", help="ignored")
    ignored("--debug", nargs="?", const="", metavar="OPTS", help="ignored (see --verbose)")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "run", help="run the director (VRRP + health checks + pool)",
        description="Run lvsd: VRRP instances, health checkers and the pool reconciler in one "
                    "process. Signals: HUP reload, TERM/INT stop, USR1/USR2/RTMIN+2 write "
                    "keepalived's data/stats/JSON dumps. keepalived's command-line flags are "
                    "accepted (`lvsd run` can replace `keepalived` in a unit file).")
    p.add_argument("-v", "--version", action=_LazyVersion, version="lvsd")
    p.add_argument("-f", "--use-file", dest="config_file", default=DEFAULT_CONFIG,
                   metavar="FILE", help=f"keepalived-syntax config (default {DEFAULT_CONFIG})")
    p.add_argument("-i", "--config-id", help="id for @ID conditionals (default: short host name)")
    p.add_argument("--strict", action="store_true",
                   help="lvsd extension: refuse to start (and reject a reload) on any config "
                        "error, not only on what keepalived itself would not run")
    p.add_argument("--dataplane", choices=("ipvs", "nftables", "memory"), default="ipvs",
                   help="where the pool is programmed (default ipvs)")
    p.add_argument("--status-listen", default=DEFAULT_STATUS_LISTEN, metavar="HOST:PORT",
                   help=f"status endpoint address (default {DEFAULT_STATUS_LISTEN}; 'off' to "
                        "disable)")
    p.add_argument("--status-token-file", metavar="FILE",
                   help="require 'Authorization: Bearer TOKEN' (token read from FILE; "
                        "default: none, no token asked)")
    p.add_argument("-p", "--pid", "--pid-file", dest="pid_file", metavar="FILE",
                   default=DEFAULT_PID_FILE,
                   help=f"pid file (default {DEFAULT_PID_FILE}; '' for none); a live pid in "
                        "it means lvsd is already running and this one refuses to start")
    p.add_argument("--log-format", choices=("text", "json"), default="text",
                   help="format of the stderr/console log (default text; syslog records are "
                        "always text)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("-P", "--vrrp", "--vrrp-only", dest="vrrp_only", action="store_true",
                   help="run only VRRP (keepalived --vrrp)")
    g.add_argument("-C", "--check", "--check-only", dest="check_only", action="store_true",
                   help="run only checks and pool (keepalived --check)")
    p.add_argument("--dump-dir", default="/tmp",
                   help="where SIGUSR1/SIGUSR2/SIGRTMIN+2 write keepalived's dump files "
                        "(default /tmp)")
    p.add_argument("--vrrp-transport", choices=("raw", "udp"), default="raw",
                   help="raw IP protocol 112 (default, keepalived-compatible) or UDP "
                        "(lvsd extension)")
    p.add_argument("--sweep", type=float, default=10.0,
                   help="seconds between data plane sweeps (drift repair), default 10")
    p.add_argument("--stop-timeout", type=float, default=10.0,
                   help="upper bound for a graceful stop, seconds (default 10)")
    p.add_argument("--nft-table", default="lvsd",
                   help="nftables table name (inet family; default lvsd)")
    p.add_argument("--verbose", action="store_true", help="debug logging (default: info)")
    _keepalived_args(p)
    p.set_defaults(func=cmd_run)
