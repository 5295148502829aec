"""FILE_CHECK: a tracked file's integer decides state and weight (keepalived
``check_file.c`` / ``track_file.c``).

The loader has already resolved the checker's ``track_file NAME`` to the block's file
(``Checker.track_file``) and weight (``file_weight``/``file_reverse``: the checker's own
``weight N [reverse]``, else the block's).

The file's first bytes are read as an integer (C ``strtol`` base 0: ``12``, ``0x1f``, ``-3``,
``010``); a missing, empty or unreadable file counts as 0. With ``weight`` 0 the checker is
down while the value is non-zero. Otherwise ``value × weight`` (negated with ``reverse``; clamped
to 32 bits) is added to the real server's weight, and a result at or below -2^31 (FAULT) takes
the checker down. Reading is instant, so the tracker's retry rules are bypassed by the scheduler:
FILE_CHECK is re-read every delay_loop (keepalived uses inotify; lvsd polls) and its result is
the state. A read that fails for a local reason (EMFILE, ENOMEM) is no value at all: the
checker keeps its state until the next read.
"""

from __future__ import annotations

import re
import time

from lvsd.checks.result import LOCAL_ERRNOS, ProbeResult, os_failure
from lvsd.config.model import Checker

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1
_NUM = re.compile(rb"\s*([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)")


def strtol(data: bytes) -> int:
    m = _NUM.match(data)
    if not m:
        return 0
    sign, digits = m.group(1), m.group(2)
    if digits[:2].lower() == b"0x":
        v = int(digits, 16)
    elif digits.startswith(b"0") and len(digits) > 1:
        v = int(digits, 8)
    else:
        v = int(digits)
    return -v if sign == b"-" else v


def read_value(path: str) -> tuple[int, str]:
    """(value, problem): a file that cannot be read counts as 0 and says why.

    Raises OSError for a local error (:data:`~lvsd.checks.result.LOCAL_ERRNOS`: out of
    descriptors or memory): that says nothing about the file."""
    try:
        with open(path, "rb") as f:
            data = f.read(127)
    except OSError as e:
        if e.errno in LOCAL_ERRNOS:
            raise
        return 0, f" ({e.strerror or e}: counted as 0)"
    return strtol(data), ""


def judge(value: int, weight: int, reverse: bool = False) -> tuple[bool, int | None]:
    """(up, weight offset) for a file value."""
    if weight == 0:
        return (value == 0) != reverse, None
    w = value * weight * (-1 if reverse else 1)
    w = max(INT32_MIN, min(INT32_MAX, w))
    if w <= INT32_MIN:
        return False, None
    return True, w


def probe_sync(ck: Checker) -> ProbeResult:
    t0 = time.monotonic()
    if ck.track_file is None:
        return ProbeResult(False, "no track_file", 0.0, started=t0)
    try:
        value, problem = read_value(ck.track_file)
    except OSError as e:  # EMFILE: the value is unknown, not 0; the checker keeps its state
        return os_failure(e, t0)
    up, offset = judge(value, ck.file_weight if ck.file_weight is not None else 1,
                       ck.file_reverse)
    reason = f"file value {value}{problem}" + (f" (weight {offset:+d})" if offset else "")
    return ProbeResult(up, reason, time.monotonic() - t0, weight=offset, started=t0)
