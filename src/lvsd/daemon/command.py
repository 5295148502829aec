"""``lvsd run``: its arguments, and the entry point that runs a :class:`Daemon`."""

from __future__ import annotations

import argparse
import asyncio

from lvsd.daemon.core import Daemon
from lvsd.daemon.logsetup import setup_logging
from lvsd.daemon.options import DEFAULT_CONFIG, DEFAULT_PID_FILE, DEFAULT_STATUS_LISTEN, Options


def options_from_args(a: argparse.Namespace) -> Options:
    mode = "vrrp-only" if a.vrrp_only else ("check-only" if a.check_only else "full")
    listen = None if a.status_listen in ("", "none", "off") else a.status_listen
    return Options(config_file=a.config_file, config_id=a.config_id, dataplane=a.dataplane,
                   status_listen=listen, status_token_file=a.status_token_file,
                   pid_file=a.pid_file or None, log_format=a.log_format, mode=mode,
                   dump_dir=a.dump_dir, vrrp_transport=a.vrrp_transport,
                   sweep_interval=a.sweep, stop_timeout=a.stop_timeout, nft_table=a.nft_table,
                   verbose=a.verbose)


def cmd_run(a: argparse.Namespace) -> int:
    opts = options_from_args(a)
    setup_logging(opts.log_format, opts.verbose)
    try:
        return asyncio.run(Daemon(opts).run())
    except KeyboardInterrupt:  # a second Ctrl-C during shutdown
        return 130


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "run", help="run the director (VRRP + health checks + pool)",
        description="Run lvsd: VRRP instances, health checkers and the pool reconciler in one "
                    "process. Signals: HUP reload, TERM/INT stop, USR1/USR2/RTMIN+2 write "
                    "keepalived's data/stats/JSON dumps.")
    p.add_argument("-f", "--use-file", dest="config_file", default=DEFAULT_CONFIG,
                   metavar="FILE", help=f"keepalived-syntax config (default {DEFAULT_CONFIG})")
    p.add_argument("-i", "--config-id", help="id for @ID conditionals (default: short host name)")
    p.add_argument("--dataplane", choices=("ipvs", "nftables", "memory"), default="ipvs",
                   help="where the pool is programmed (default ipvs)")
    p.add_argument("--status-listen", default=DEFAULT_STATUS_LISTEN, metavar="HOST:PORT",
                   help=f"status endpoint address (default {DEFAULT_STATUS_LISTEN}; 'off' to "
                        "disable)")
    p.add_argument("--status-token-file", metavar="FILE",
                   help="require 'Authorization: Bearer TOKEN' (token read from FILE)")
    p.add_argument("-p", "--pid-file", metavar="FILE", default=DEFAULT_PID_FILE,
                   help=f"pid file (default {DEFAULT_PID_FILE}; '' for none); a live pid in "
                        "it means lvsd is already running and this one refuses to start")
    p.add_argument("--log-format", choices=("text", "json"), default="text")
    g = p.add_mutually_exclusive_group()
    g.add_argument("-P", "--vrrp-only", "--vrrp", action="store_true",
                   help="run only VRRP (keepalived --vrrp)")
    g.add_argument("-C", "--check-only", "--check", action="store_true",
                   help="run only checks and pool (keepalived --check)")
    p.add_argument("--dump-dir", default="/tmp", help="where SIGUSR1/SIGUSR2/SIGRTMIN+2 "
                                                      "write keepalived's dump files")
    p.add_argument("--vrrp-transport", choices=("raw", "udp"), default="raw",
                   help="raw IP protocol 112 (default, keepalived-compatible) or UDP "
                        "(lvsd extension)")
    p.add_argument("--sweep", type=float, default=10.0,
                   help="seconds between data plane sweeps (drift repair), default 10")
    p.add_argument("--stop-timeout", type=float, default=10.0,
                   help="upper bound for a graceful stop, seconds (default 10)")
    p.add_argument("--nft-table", default="lvsd", help="nftables table name (inet family)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.set_defaults(func=cmd_run)
