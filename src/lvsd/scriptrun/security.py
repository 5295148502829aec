"""``enable_script_security`` at exec time: refuse a script file that became unsafe.

keepalived checks its scripts when it loads a configuration (start and reload:
lib/notify.c ``check_script_secure``, called from vrrp.c ``check_vrrp_script_security`` and
check_data.c ``check_check_script_security``) and never again; lvsd does the same at load
(:mod:`lvsd.config.hostcheck` removes what keepalived would not run). lvsd adds one cheap
re-check before each start of a script that runs with root privileges: the ``lstat`` of each
element of its path (a handful of system calls, nothing next to a fork and exec), so a script
or directory made writable by others *after* the load is not run as root. The rule is
keepalived's ``check_security()``:

* only when the script needs protection: it runs as uid 0 or gid 0, or the file is set-uid
  root / set-gid root and executable (``check_script_secure``'s ``need_script_protection``);
* every element of the path (the path as written, PATH-resolved for a bare name, then its
  ``realpath`` if different) from ``/``: directories (all but the last), the last a regular
  file or a symbolic link, owned by root, and -- for a file or a directory without the
  sticky bit -- neither group-writable with a non-root group nor world-writable.

The refusal is keepalived's log line ``Unsafe permissions found for script '...' -
disabling.`` (or ``Wrong file type found in script path '...'.``); a script whose file is gone
is refused with ``check_script_secure could not find script '...' - disabling``.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Callable

from lvsd.scriptrun.identity import Identity

__all__ = ["insecure_reason", "path_problem"]

Lstat = Callable[[str], os.stat_result]


def _prefixes(path: str) -> list[str]:
    """``/``, ``/a``, ``/a/b``, ... ``path``: what lib/notify.c check_security() walks."""
    parts = [p for p in path.split("/") if p]
    return ["/"] + ["/" + "/".join(parts[:i]) for i in range(1, len(parts) + 1)]


def path_problem(filename: str, lstat: Lstat = os.lstat) -> str | None:
    """lib/notify.c check_security(): keepalived's message for an unsafe path, or None."""
    elems = _prefixes(filename)
    for i, p in enumerate(elems):
        last = i == len(elems) - 1
        try:
            st = lstat(p)
        except OSError:
            return f"check_script_secure could not find script '{filename}' - disabling"
        m = st.st_mode
        if (not last and not stat.S_ISDIR(m)) or (
                last and not stat.S_ISREG(m) and not stat.S_ISLNK(m)):
            return f"Wrong file type found in script path '{filename}'."
        writable_kind = (stat.S_ISDIR(m) and not m & stat.S_ISVTX) or stat.S_ISREG(m)
        if st.st_uid != 0 or (writable_kind and (
                (st.st_gid != 0 and m & stat.S_IWGRP) or m & stat.S_IWOTH)):
            return f"Unsafe permissions found for script '{filename}' - disabling."
    return None


def _needs_protection(ident: Identity, st: os.stat_result) -> bool:
    """check_script_secure's need_script_protection (the file's own x bits are for exec)."""
    m = st.st_mode
    return (ident.uid == 0 or ident.gid == 0
            or (st.st_uid == 0 and bool(m & stat.S_IXUSR) and bool(m & stat.S_ISUID))
            or (st.st_gid == 0 and bool(m & stat.S_IXGRP) and bool(m & stat.S_ISGID)))


def insecure_reason(program: str, ident: Identity) -> str | None:
    """Why ``program`` (a script's first word) must not run as ``ident`` under script
    security, or None. A bare name is looked up in PATH as exec will."""
    path = program if "/" in program else shutil.which(program)
    if path is None:
        return None  # exec reports it
    try:
        st = os.stat(path)
    except OSError:
        return None  # exec reports it
    if not _needs_protection(ident, st):
        return None
    # check_script_secure: the path with its directories resolved (keeping the file's own
    # name when that is the same file), and the real file when it differs
    real = os.path.realpath(path)
    shown = os.path.join(os.path.dirname(real), os.path.basename(path))
    try:
        same = os.path.samefile(shown, real)
    except OSError:
        same = False
    first = shown if same else real
    for candidate in dict.fromkeys((first, real)):
        reason = path_problem(candidate)
        if reason is not None:
            return reason
    return None
