"""Logging of the daemon, where keepalived logs: syslog, plus the console when that helps.

Theory of operation
-------------------
keepalived logs to syslog (``openlog(ident, LOG_PID, facility)`` in keepalived's lib/logger.c),
facility ``daemon`` unless ``-S/--log-facility`` picks LOCAL0..7 (keepalived/core/main.c
``parse_cmdline``); ``-l/--log-console`` also writes to the console; ``-G/--no-syslog`` turns
syslog off. lvsd does the same with one ident, ``lvsd`` (one process where keepalived has
``Keepalived``, ``Keepalived_vrrp`` and ``Keepalived_healthcheckers``):

* **syslog**: RFC 3164 datagrams ``<PRI>Mmm dd hh:mm:ss lvsd[PID]: message`` on ``/dev/log``
  (what glibc's ``syslog()`` sends), PRI = facility * 8 + severity. On unless ``-G``. Where
  ``/dev/log`` does not exist (containers), lvsd logs to stderr instead, with one warning.
* **stderr** (text, or ``--log-format json``): on with ``-l``, with ``-G``, when syslog is not
  available, and whenever stderr is *not* systemd's journal stream. Under systemd
  (``$JOURNAL_STREAM`` names our stderr) the syslog copy already reaches the journal, with its
  facility and ident, so stderr stays quiet: ``journalctl -u lvsd`` shows each line once.
  Outside systemd (a terminal, a pipe, a container runtime) stderr carries every line as well.

Every handler masks known secrets (``SECRET_FILTER``: the ``auth_pass`` values of every config
read). ``LVSD_SYSLOG_SOCKET`` overrides the ``/dev/log`` path; it exists for the test suite
(tests/netns/test_syslog.py binds its own datagram socket) and is documented in
docs/operations.md as such.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import socket
import sys
import time
from dataclasses import dataclass

from lvsd.status.model import scrub  # the log masks secrets as /status does

SYSLOG_SOCKET = "/dev/log"
SYSLOG_SOCKET_ENV = "LVSD_SYSLOG_SOCKET"  # test suite only: another path than /dev/log
SYSLOG_IDENT = "lvsd"

# syslog facilities (RFC 3164 §4.1.1): keepalived's -S accepts 0..7 (LOG_LOCAL0..7),
# local0..local7, "daemon" and "user" (keepalived/core/main.c LOG_FACILITY[], facility_names[])
FACILITY_DAEMON = 3
FACILITY_USER = 1
FACILITY_LOCAL0 = 16


def parse_facility(text: str) -> int | None:
    """keepalived's ``-S`` argument as a syslog facility code, None when it is not one.

    keepalived/core/main.c ``parse_cmdline`` case 'S': ``read_unsigned(optarg, 0, 7)``, or
    ``local`` followed by 0..7, or one of the names ``daemon``/``user``.
    """
    digits = text[5:] if text.startswith("local") else text
    if digits.isdigit() and digits.isascii() and int(digits) <= 7:
        return FACILITY_LOCAL0 + int(digits)
    return {"daemon": FACILITY_DAEMON, "user": FACILITY_USER}.get(text)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "ts": round(record.created, 6),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            "pid": record.process,
        }
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out)


class SecretFilter(logging.Filter):
    """Masks every known secret (auth_pass values of every config ever loaded) in log records."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            msg = record.getMessage()
            masked = scrub(msg, self.secrets)
            if masked != msg:
                record.msg, record.args = masked, None
        return True


SECRET_FILTER = SecretFilter()
# the last setup_logging() arguments (JSON-able), handed to child processes
CURRENT: dict[str, object] = {}


class Rfc3164Formatter(logging.Formatter):
    """``Mmm dd hh:mm:ss IDENT[PID]: message`` (local time, day padded with a space, as glibc's
    ``syslog()`` writes it to /dev/log; the handler prepends ``<PRI>``)."""

    def __init__(self, ident: str = SYSLOG_IDENT) -> None:
        super().__init__()
        self.ident = ident

    def format(self, record: logging.LogRecord) -> str:
        t = time.localtime(record.created)
        stamp = f"{time.strftime('%b', t)} {t.tm_mday:2d} {time.strftime('%H:%M:%S', t)}"
        msg = record.getMessage()
        if record.exc_info:
            msg = f"{msg}: {self.formatException(record.exc_info)}"
        # one record, one line: keepalived's log lines never span lines either
        msg = msg.replace("\n", " | ")
        return f"{stamp} {self.ident}[{record.process}]: {msg}"


class QuietSysLogHandler(logging.handlers.SysLogHandler):
    """SysLogHandler that never prints a traceback when the syslog daemon goes away: the
    standard handler already reconnects once per record; a record it still cannot send is
    dropped, and the first drop says so on stderr in one line."""

    dropped = 0

    def handleError(self, record: logging.LogRecord) -> None:
        self.dropped += 1
        if self.dropped == 1:
            err = sys.exc_info()[1]
            print(f"lvsd: syslog socket {self.address}: {err}; syslog records are being "
                  "dropped", file=sys.stderr)


@dataclass(frozen=True)
class LogPlan:
    """Where log records go: decided from the flags and the environment (pure)."""

    syslog: bool
    stderr: bool
    warning: str | None = None  # one line to log once the handlers exist


def plan_logging(*, no_syslog: bool, console: bool, syslog_available: bool,
                 stderr_is_journal: bool, syslog_path: str = SYSLOG_SOCKET) -> LogPlan:
    """The destinations for ``-G``/``-l`` given what the host offers (see the module doc)."""
    if no_syslog:
        return LogPlan(syslog=False, stderr=True)
    if not syslog_available:
        return LogPlan(syslog=False, stderr=True,
                       warning=f"syslog socket {syslog_path} not available: logging to "
                               "stderr only")
    return LogPlan(syslog=True, stderr=console or not stderr_is_journal)


def stderr_is_journal() -> bool:
    """True when stderr is systemd-journald's stream for this service ($JOURNAL_STREAM holds
    ``DEVICE:INODE`` of it, systemd.exec(5))."""
    value = os.environ.get("JOURNAL_STREAM", "")
    dev, _, ino = value.partition(":")
    if not (dev.isdigit() and ino.isdigit()):
        return False
    try:
        st = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError):
        return False
    return st.st_dev == int(dev) and st.st_ino == int(ino)


def syslog_path() -> str:
    return os.environ.get(SYSLOG_SOCKET_ENV) or SYSLOG_SOCKET


def _syslog_handler(path: str, facility: int) -> QuietSysLogHandler | None:
    # SysLogHandler itself tolerates a missing socket (it retries on every record): probe
    # first, so that a host without a syslog daemon logs to stderr instead, once warned
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as probe:
            probe.connect(path)
        h = QuietSysLogHandler(address=path, facility=facility, socktype=socket.SOCK_DGRAM)
    except OSError:
        return None
    h.append_nul = False  # glibc's syslog() sends no NUL
    return h


def _stream_handler(fmt: str) -> logging.Handler:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(
            "%(asctime)s lvsd[%(process)d] %(levelname)s %(name)s: %(message)s"))
    return handler


def setup_logging(fmt: str, verbose: bool = False, *, syslog: bool = False,
                  facility: int = FACILITY_DAEMON, console: bool = False,
                  logfile: str | None = None, quiet: bool = False) -> LogPlan:
    """Install the root handlers. ``syslog=False`` (the default, for other callers) logs to
    stderr only, as before; ``lvsd run`` passes ``syslog=not -G``, ``console=-l``.
    ``quiet``: do not log the plan's warning (a child process repeating its parent's set-up).
    The arguments are kept in :data:`CURRENT` for child processes (the VRRP child)."""
    CURRENT.clear()
    CURRENT.update(fmt=fmt, verbose=verbose, syslog=syslog, facility=facility, console=console,
                   logfile=logfile)
    path = syslog_path()
    handlers: list[logging.Handler] = []
    sys_handler = _syslog_handler(path, facility) if syslog else None
    plan = plan_logging(no_syslog=not syslog, console=console,
                        syslog_available=sys_handler is not None,
                        stderr_is_journal=stderr_is_journal(), syslog_path=path)
    if sys_handler is not None:
        sys_handler.setFormatter(Rfc3164Formatter())
        handlers.append(sys_handler)
    if plan.stderr:
        handlers.append(_stream_handler(fmt))
    if logfile:
        # -g/--log-file: also append to FILE; WatchedFileHandler reopens it after logrotate
        fh = logging.handlers.WatchedFileHandler(logfile)
        fh.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(
            "%(asctime)s lvsd[%(process)d] %(levelname)s %(name)s: %(message)s"))
        handlers.append(fh)
    for h in handlers:
        h.addFilter(SECRET_FILTER)
    root = logging.getLogger()
    root.handlers[:] = handlers
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    if plan.warning and not quiet:
        logging.getLogger(__name__).warning("%s", plan.warning)
    return plan
