"""Gather :class:`~lvsd.config.hostcheck.HostFacts` for a config on this machine.

Theory of operation
-------------------
The thin I/O shell of the host checks: :func:`gather` asks :func:`~lvsd.config.hostcheck.needs`
what the config names, then reads

* the interfaces of the current network namespace, or of ``netns`` (``ip -j [-n NS] addr``):
  name, loopback, up and running, multicast, IPv4/IPv6 addresses;
* ``net.ipv4/ipv6.ip_nonlocal_bind`` there (a unicast_src_ip / bindto that is not local can
  still be bound when set);
* the users and groups named (``pwd``/``grp``; the default ``keepalived_script`` too);
* for each script command, where it leads as keepalived's ``check_script_secure`` finds it
  (lib/notify.c: PATH search for a bare name, ``realpath``) and ``lstat`` of every element of
  the resulting path.

Nothing here decides anything; :func:`~lvsd.config.hostcheck.check_host` does. The one
approximation: keepalived resolves a script as the script's user (seteuid); this shell looks
as the user running it (root), so a directory the script user cannot search is not noticed.
"""

from __future__ import annotations

import errno
import grp
import json
import os
import pwd
import subprocess
from collections.abc import Iterable
from typing import Any

from lvsd.config.hostcheck import (
    MODES,
    FileStat,
    HostFacts,
    Interface,
    ScriptFile,
    needs,
)
from lvsd.config.model import Config


class HostFactsError(RuntimeError):
    """The interfaces could not be read (no ``ip``, no such namespace, ...)."""


def _ip(argv: list[str], netns: str | None) -> str:
    cmd = ["ip", *(["-n", netns] if netns else []), *argv]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise HostFactsError(f"cannot run {' '.join(cmd)}: {exc}") from None
    if proc.returncode != 0:
        raise HostFactsError(f"{' '.join(cmd)} failed: {proc.stderr.strip()}")
    return proc.stdout


def parse_ip_addr_json(text: str) -> dict[str, Interface]:
    """``ip -j addr show`` output -> interfaces by name."""
    try:
        links: Any = json.loads(text or "[]")
    except ValueError as exc:
        raise HostFactsError(f"unreadable 'ip -j addr' output: {exc}") from None
    out: dict[str, Interface] = {}
    for link in links if isinstance(links, list) else []:
        if not isinstance(link, dict) or "ifname" not in link:
            continue
        flags = set(link.get("flags") or ())
        a4: list[str] = []
        a6: list[str] = []
        for a in link.get("addr_info") or ():
            if not isinstance(a, dict) or "local" not in a:
                continue
            (a4 if a.get("family") == "inet" else a6).append(str(a["local"]))
        # keepalived IF_FLAGS_UP: IFF_UP and IFF_RUNNING; ip shows RUNNING as the oper state
        running = link.get("operstate") in ("UP", "UNKNOWN") and "NO-CARRIER" not in flags
        out[str(link["ifname"])] = Interface(
            name=str(link["ifname"]),
            loopback="LOOPBACK" in flags or link.get("link_type") == "loopback",
            up="UP" in flags and running,
            multicast="MULTICAST" in flags,
            addresses4=tuple(a4),
            addresses6=tuple(a6),
        )
    return out


def read_interfaces(netns: str | None = None) -> dict[str, Interface]:
    return parse_ip_addr_json(_ip(["-j", "addr", "show"], netns))


def _nonlocal_bind(netns: str | None) -> tuple[bool, bool]:
    files = ["/proc/sys/net/ipv4/ip_nonlocal_bind", "/proc/sys/net/ipv6/ip_nonlocal_bind"]
    values: list[bool] = []
    if netns is None:
        for f in files:
            try:
                with open(f) as fh:
                    values.append(fh.read().strip() not in ("", "0"))
            except OSError:
                values.append(False)
        return values[0], values[1]
    try:
        proc = subprocess.run(["ip", "netns", "exec", netns, "cat", *files], capture_output=True,
                              text=True, timeout=30, check=False)
        words = proc.stdout.split()
    except (OSError, subprocess.TimeoutExpired):
        words = []
    words += ["0"] * (2 - len(words))
    return words[0] != "0", words[1] != "0"


def _stat(path: str, *, follow: bool) -> FileStat | None:
    try:
        st = os.stat(path) if follow else os.lstat(path)
    except OSError:
        return None
    return FileStat(path, st.st_mode, st.st_uid, st.st_gid)


def _prefixes(path: str) -> list[str]:
    """``/``, ``/a``, ``/a/b``, ... ``path``: what lib/notify.c check_security() walks."""
    parts = [p for p in path.split("/") if p]
    return ["/"] + ["/" + "/".join(parts[:i]) for i in range(1, len(parts) + 1)]


def script_file(word: str, search_path: str | None = None) -> ScriptFile:
    """Where a script's first word leads (lib/notify.c find_path + realpath + stat)."""
    candidate = word
    if "/" not in word:
        path = search_path if search_path is not None else (
            os.environ.get("PATH") or os.confstr("CS_PATH") or "/bin:/usr/bin")
        found = None
        denied = False
        for d in path.split(":"):
            cand = f"{d}/{word}" if d else word
            st = _stat(cand, follow=True)
            if st is None:
                continue
            if not (st.mode & 0o170000 == 0o100000 and st.mode & 0o111):
                denied = True
                continue
            found = cand
            break
        if found is None:
            return ScriptFile(word, None, os.strerror(errno.EACCES) if denied else None,
                              in_path=False)
        candidate = found
    try:
        real = os.path.realpath(candidate, strict=True)
    except OSError as exc:
        return ScriptFile(word, None, exc.strerror or str(exc))
    chain = []
    for p in _prefixes(real):
        st = _stat(p, follow=False)
        if st is None:
            break
        chain.append(st)
    return ScriptFile(word, real, None, True, _stat(real, follow=True), tuple(chain))


def _users(names: Iterable[str]) -> dict[str, tuple[int, int]]:
    out: dict[str, tuple[int, int]] = {}
    for n in names:
        try:
            pw = pwd.getpwnam(n)
        except (KeyError, ValueError):
            continue
        out[n] = (pw.pw_uid, pw.pw_gid)
    return out


def _groups(names: Iterable[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for n in names:
        try:
            out[n] = grp.getgrnam(n).gr_gid
        except (KeyError, ValueError):
            continue
    return out


def gather(cfg: Config, *, mode: str = "full", netns: str | None = None) -> HostFacts:
    """The facts :func:`~lvsd.config.hostcheck.check_host` needs for ``cfg``, read here (or
    in network namespace ``netns``). Raises :class:`HostFactsError` when the interfaces
    cannot be read."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    n = needs(cfg, mode=mode)
    interfaces = read_interfaces(netns)
    nl4, nl6 = _nonlocal_bind(netns)
    return HostFacts(
        interfaces=interfaces,
        users=_users(n.users),
        groups=_groups(n.groups),
        scripts={w: script_file(w) for w in sorted(n.scripts)},
        nonlocal_bind4=nl4,
        nonlocal_bind6=nl6,
        our_uid=os.getuid(),
        our_gid=os.getgid(),
    )
