"""Host checks as ``keepalived -t`` does them: interfaces, addresses, script files, script users.

Theory of operation
-------------------
The loader checks a file on its own; some of what keepalived 2.2.7 reports depends on the
machine it runs on: which interfaces exist (and are loopback, up, multicast-capable, addressed),
which users and groups exist, and where the script files are and who may write to them. This
module is the pure half of those checks: :class:`HostFacts` is a typed record of what the host
looks like (gathered by :mod:`lvsd.config.hostfacts`, or built by hand in tests) and
:func:`check_host` turns a :class:`~lvsd.config.model.Config` plus facts into
:class:`~lvsd.config.model.Diagnostic` objects, in keepalived's words and classes:

* an interface named by ``vrrp_instance interface``, ``track_interface`` (instance and sync
  group) or a ``virtual_ipaddress ... dev`` that does not exist: keepalived reports it (GENERAL)
  and then "Non-existent interface specified in configuration" (BAD_IF): its VRRP process
  exits, so that one is FATAL and, as in keepalived, nothing of ``vrrp_complete_init`` follows
  (vrrp_if.c ``if_get_by_ifname``, vrrp_daemon.c ``start_vrrp``). With ``dynamic_interfaces``
  keepalived only logs that it will use the interface once created: a WARNING here;
* a loopback ``interface`` is ignored, which leaves the instance without one ("Unknown
  interface!", vrrp.c ``chk_min_cfg``: vrrp_complete_init fails, FATAL); an interface without
  multicast and no unicast peers disables the instance (ERROR);
* scripts: the default script user (``script_user``, else ``keepalived_script`` if it exists,
  else root; lib/notify.c ``get_default_script_user``), per-script users, then
  ``check_script_secure`` (lib/notify.c) on every script the process would run: not found, not
  executable for its uid:gid, and — when it runs as root — every path element owned by root and
  not group/world writable. What keepalived then does is mirrored per kind of script (a
  vrrp_script is removed with its track_script references, a MISC_CHECK checker is removed,
  a notify script is dropped), and without ``enable_script_security`` any script found makes
  "SECURITY VIOLATION - ..." (kind SECURITY, ``keepalived -t`` exit 6; keepalived still runs
  the scripts, as root);
* what keepalived only logs when it runs (``log_message``: the details of check_script_secure,
  a notify script dropped, ...; ``keepalived -t`` is silent about them) keeps keepalived's
  text and severity ERROR (keepalived runs without that script) with kind LOG;
* what ``keepalived -t`` does not see but makes an instance or checker fail at run time (no
  address on the interface, an interface down, a unicast_src_ip / checker bindto that is not a
  local address, a checker bind_if or lvs_sync_daemon interface that does not exist) is a
  WARNING of kind LVSD quoting the message keepalived logs when it happens.

``mode`` selects keepalived's processes: "full" (both), "vrrp-only" (``--vrrp``) or
"check-only" (``--check``); results come in keepalived's order (global, checker, VRRP).
"""

from __future__ import annotations

import ipaddress
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from lvsd.config.model import (
    Config,
    DiagKind,
    Diagnostic,
    Pos,
    Script,
    Severity,
    TrackRef,
    VirtualIp,
    VrrpInstance,
)

Mode = Literal["full", "vrrp-only", "check-only"]
MODES: tuple[Mode, ...] = ("full", "vrrp-only", "check-only")

DEFAULT_SCRIPT_USER = "keepalived_script"  # lib/notify.c get_default_script_user

# check_script_secure()'s flags (lib/notify.h)
SC_INSECURE = 0x01
SC_ISSCRIPT = 0x02
SC_INHIBIT = 0x04
SC_NOTFOUND = 0x08
SC_EXECUTABLE = 0x10
SC_SYSTEM = 0x40


# ------------------------------------------------------------------------------ the facts


@dataclass(frozen=True, slots=True)
class Interface:
    """One network interface as keepalived's netlink reader sees it."""

    name: str
    loopback: bool = False
    up: bool = True  # IFF_UP and IFF_RUNNING (keepalived IF_FLAGS_UP)
    multicast: bool = True  # IFF_MULTICAST
    addresses4: tuple[str, ...] = ()
    addresses6: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class FileStat:
    """``stat``/``lstat`` of one path: what check_script_secure looks at."""

    path: str
    mode: int
    uid: int = 0
    gid: int = 0


@dataclass(frozen=True, slots=True)
class ScriptFile:
    """Where a script's command (its first word, ``args[0]``) leads on this host.

    ``path`` is the file keepalived ends up with (PATH search for a bare name, then
    ``realpath``); None when it is not found: ``in_path`` False for a bare name not in PATH,
    else ``error`` is the reason (strerror). ``target`` is ``stat`` of the file; ``chain`` is
    ``lstat`` of every prefix of ``path`` from ``/`` to the file itself.
    """

    name: str
    path: str | None
    error: str | None = None
    in_path: bool = True
    target: FileStat | None = None
    chain: tuple[FileStat, ...] = ()


@dataclass(frozen=True, slots=True)
class HostFacts:
    """What :func:`check_host` needs to know about the host (or a network namespace).

    ``interfaces`` None means they could not be read (interface checks are skipped).
    ``users`` maps each existing user name to ``(uid, primary gid)``, ``groups`` each existing
    group name to its gid: a name absent from them does not exist. ``scripts`` is keyed by the
    script command's first word; a command absent from it is not checked.
    """

    interfaces: Mapping[str, Interface] | None = None
    users: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    groups: Mapping[str, int] = field(default_factory=dict)
    scripts: Mapping[str, ScriptFile] = field(default_factory=dict)
    nonlocal_bind4: bool = False  # net.ipv4.ip_nonlocal_bind
    nonlocal_bind6: bool = False  # net.ipv6.ip_nonlocal_bind
    our_uid: int = 0
    our_gid: int = 0


@dataclass(frozen=True, slots=True)
class Needs:
    """What the shell has to look up for a config: from :func:`needs`."""

    scripts: frozenset[str]  # first words of script commands
    users: frozenset[str]
    groups: frozenset[str]


# ------------------------------------------------------------------------------ script uses


@dataclass(frozen=True, slots=True)
class _Use:
    """One script keepalived would run, with what it does when the script is bad."""

    what: str  # "vrrp_script", "misc", "notify", "fifo"
    script: Script
    side: str  # "vrrp", "check" or "both" (the global notify_fifo_script)
    owner: str = ""  # vrrp_script name; fifo type ("", "vrrp_", "lvs_")
    user: str | None = None  # explicit user (vrrp_script `user`, or the script's own)
    group: str | None = None


_UseKey = tuple[str, str, Pos, str]


def _key(u: _Use) -> _UseKey:
    """The identity of a use: the global notify_fifo_script is one script for both sides."""
    return (u.what, u.owner, u.script.pos, u.script.command)


def args_of(command: str) -> list[str]:
    """A command line split as keepalived splits it (quotes and escapes): the same split the
    script runner execs (:func:`lvsd.scriptrun.words.split_words`), so the file checked here is
    the file run."""
    from lvsd.scriptrun.words import ScriptParseError, split_words

    try:
        return split_words(command)
    except ScriptParseError:
        return command.split()


def first_word(script: Script) -> str | None:
    args = args_of(script.command)
    return args[0] if args else None


def cmd_str(command: str, first: str | None = None) -> str:
    """keepalived's ``cmd_str``: each word in single quotes (not a leading < or > redirection);
    ``first`` replaces the first word (keepalived rewrites it to the resolved path)."""
    args = args_of(command)
    if first is not None and args:
        args[0] = first
    out = []
    for i, a in enumerate(args):
        out.append(a if i == 0 and a[:1] in ("<", ">") else f"'{a}'")
    return " ".join(out)


_INSTANCE_NOTIFY = ("notify_backup", "notify_master", "notify_fault", "notify_stop",
                    "notify_deleted", "notify", "notify_master_rx_lower_pri")
_GROUP_NOTIFY = ("notify_backup", "notify_master", "notify_fault", "notify_stop", "notify")


def _vrrp_uses(cfg: Config) -> list[_Use]:
    """The VRRP process's scripts in check_vrrp_script_security()'s order (vrrp.c)."""
    uses: list[_Use] = []
    for vs in cfg.vrrp_scripts:
        uses.append(_Use("vrrp_script", vs.script, "vrrp", vs.name, vs.user))
    for inst in cfg.vrrp_instances:
        for f in _INSTANCE_NOTIFY:
            s = getattr(inst, f)
            if isinstance(s, Script):
                uses.append(_Use("notify", s, "vrrp", user=s.user, group=s.group))
    for sg in cfg.vrrp_sync_groups:
        for f in _GROUP_NOTIFY:
            s = getattr(sg, f)
            if isinstance(s, Script):
                uses.append(_Use("notify", s, "vrrp", user=s.user, group=s.group))
    g = cfg.global_defs
    for s, t, side in ((g.notify_fifo_script, "", "both"),
                       (g.vrrp_notify_fifo_script, "vrrp_", "vrrp")):
        if s is not None:
            uses.append(_Use("fifo", s, side, t, s.user, s.group))
    return uses


def _check_uses(cfg: Config) -> list[_Use]:
    """The checker process's scripts in check_check_script_security()'s order (check_data.c):
    every MISC_CHECK first, then quorum_up/down and notify_up/down, then the FIFO scripts."""
    uses: list[_Use] = []
    for vs in cfg.virtual_servers:
        for rs in vs.real_servers:
            for ch in rs.checkers:
                if ch.misc_path is not None:
                    mp = ch.misc_path
                    uses.append(_Use("misc", mp, "check", user=mp.user, group=mp.group))
    for vs in cfg.virtual_servers:
        for s in (vs.quorum_up, vs.quorum_down):
            if s is not None:
                uses.append(_Use("notify", s, "check", user=s.user, group=s.group))
        for rs in vs.real_servers:
            for s in (rs.notify_up, rs.notify_down):
                if s is not None:
                    uses.append(_Use("notify", s, "check", user=s.user, group=s.group))
    g = cfg.global_defs
    for s, t, side in ((g.notify_fifo_script, "", "both"),
                       (g.lvs_notify_fifo_script, "lvs_", "check")):
        if s is not None:
            uses.append(_Use("fifo", s, side, t, s.user, s.group))
    return uses


def _sides(mode: str) -> tuple[bool, bool]:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    return mode != "vrrp-only", mode != "check-only"  # (check, vrrp)


def needs(cfg: Config, *, mode: str = "full") -> Needs:
    """The script commands, users and groups :func:`check_host` will ask the facts about."""
    want_check, want_vrrp = _sides(mode)
    uses = (_check_uses(cfg) if want_check else []) + (_vrrp_uses(cfg) if want_vrrp else [])
    scripts = {w for u in uses if (w := first_word(u.script)) is not None}
    g = cfg.global_defs
    users = {u.user for u in uses if u.user} | {DEFAULT_SCRIPT_USER}
    groups = {u.group for u in uses if u.group}
    if g.script_user:
        users.add(g.script_user)
    if g.script_group:
        groups.add(g.script_group)
    return Needs(frozenset(scripts), frozenset(users), frozenset(groups))


# ------------------------------------------------------------------------------ helpers


def _dynamic_interfaces(cfg: Config) -> bool:
    if getattr(cfg.global_defs, "dynamic_interfaces", False):
        return True
    return any(u.keyword == "dynamic_interfaces" and u.context == "global_defs"
               for u in cfg.unsupported)


def _order(cfg: Config) -> dict[str, int]:
    return {f: i for i, f in enumerate(cfg.files or (cfg.source,))}


def _sorted(diags: list[Diagnostic], cfg: Config) -> list[Diagnostic]:
    order = _order(cfg)

    def key(d: Diagnostic) -> tuple[int, int]:
        if d.pos is None:
            return (len(order) + 1, 0)
        return (order.get(d.pos.file, len(order)), d.pos.line)

    return sorted(diags, key=key)


def _vip_text(v: VirtualIp) -> str:
    full = 32 if v.family == 4 else 128
    return v.address if v.prefixlen == full else v.cidr


def _is_executable(st: FileStat, uid: int, gid: int) -> bool:
    """lib/notify.c is_executable()."""
    m = st.mode
    return bool((uid == 0 and m & (stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH))
                or (uid == st.uid and m & stat.S_IXUSR)
                or (uid != st.uid and ((gid == st.gid and m & stat.S_IXGRP)
                                       or (gid != st.gid and m & stat.S_IXOTH))))


def _link_local(addr: str) -> bool:
    try:
        return ipaddress.ip_address(addr.split("%", 1)[0]).is_link_local
    except ValueError:
        return False


def _same_addr(addr: str, among: Iterable[str]) -> bool:
    try:
        ip = ipaddress.ip_address(addr.split("%", 1)[0])
    except ValueError:
        return True  # not ours to judge (the loader reported it)
    for a in among:
        try:
            if ipaddress.ip_address(a.split("%", 1)[0]) == ip:
                return True
        except ValueError:
            continue
    return False


def _local(addr: str, facts: HostFacts) -> bool:
    """Whether ``addr`` can be bound here (an address of any interface, or nonlocal bind)."""
    try:
        ip = ipaddress.ip_address(addr.split("%", 1)[0])
    except ValueError:
        return True  # not ours to judge (the loader reported it)
    if facts.nonlocal_bind4 if ip.version == 4 else facts.nonlocal_bind6:
        return True
    if ip.is_loopback:
        return True
    return any(_same_addr(addr, itf.addresses4 + itf.addresses6)
               for itf in (facts.interfaces or {}).values())


# ------------------------------------------------------------------------------ the check


class _Checker:
    def __init__(self, cfg: Config, facts: HostFacts, mode: str) -> None:
        self.cfg = cfg
        self.facts = facts
        self.want_check, self.want_vrrp = _sides(mode)
        self.security = cfg.global_defs.enable_script_security
        self.dynamic = _dynamic_interfaces(cfg)
        # the default script user: (uid, gid) once resolved; None after it failed
        self._default: tuple[int, int] | None = None
        self._default_state = "unset"  # "unset" | "set" | "failed"
        # the scripts keepalived would not run (position, command): see HostResult
        self.dropped: set[tuple[Pos, str]] = set()

    # -------------------------------------------------------------- diagnostics

    @staticmethod
    def _d(pos: Pos | None, msg: str, sev: Severity = Severity.ERROR,
           kind: DiagKind = DiagKind.GENERAL) -> Diagnostic:
        return Diagnostic(pos, sev, msg, kind)

    @staticmethod
    def _log(pos: Pos | None, msg: str, sev: Severity = Severity.ERROR) -> Diagnostic:
        """A line keepalived only logs (at run time; ``keepalived -t`` is silent)."""
        return Diagnostic(pos, sev, msg, DiagKind.LOG)

    # -------------------------------------------------------------- users

    def _uid_gid(self, user: str, group: str | None) -> tuple[int, int] | None:
        """lib/notify.c set_uid_gid(): None when the user or group does not exist."""
        ug = self.facts.users.get(user)
        if ug is None:
            return None
        if group is not None:
            gid = self.facts.groups.get(group)
            if gid is None:
                return None
            return ug[0], gid
        return ug

    def global_script_user(self) -> list[Diagnostic]:
        """global_parser.c script_user_handler -> set_default_script_user()."""
        g = self.cfg.global_defs
        if not g.script_user:
            return []
        self._default_state = "set"
        self._default = self._uid_gid(g.script_user, g.script_group)
        if self._default is None:
            self._default_state = "failed"
            return [self._d(g.pos, "Error setting global script uid/gid")]
        return []

    def default_user(self, pos: Pos, out: list[Diagnostic]) -> tuple[int, int] | None:
        """lib/notify.c get_default_script_user(): keepalived_script if it exists, else our
        own uid/gid; with script security a missing keepalived_script is an error (once)."""
        if self._default_state == "unset":
            self._default_state = "set"
            self._default = self.facts.users.get(DEFAULT_SCRIPT_USER)
            if self._default is None:
                if self.security:
                    out.append(self._d(pos, f"Unable to set default user {DEFAULT_SCRIPT_USER} "
                                            "for script"))
                    self._default_state = "failed"
                else:
                    self._default = (self.facts.our_uid, self.facts.our_gid)
        return self._default if self._default_state == "set" else None

    def resolve_users(self, uses: Iterable[_Use], out: list[Diagnostic]
                      ) -> dict[_UseKey, tuple[int, int]]:
        """Parse-time uid:gid of each use; a use that fails is dropped with keepalived's
        message (vrrp_parser.c vrrp_script, check_misc.c, lib/notify.c notify_script_init)."""
        resolved: dict[_UseKey, tuple[int, int]] = {}
        for u in uses:
            s = u.script
            word = first_word(s) or s.command
            typ = f"{u.owner}notify_fifo" if u.what == "fifo" else "notify"
            # (vrrp_script, misc, notify) messages when the user cannot be set
            if u.user:
                ug = self._uid_gid(u.user, u.group)
                msgs = (f"Unable to set uid/gid for script {cmd_str(s.command)}",
                        f"Failed to set uid/gid for misc checker script {cmd_str(s.command)}"
                        " - removing",
                        f"Invalid user/group for {typ} script {word} - ignoring")
            else:
                ug = self.default_user(s.pos, out)
                msgs = (f"Unable to set default user for vrrp script {u.owner} - removing",
                        f"Unable to set default user for misc script {cmd_str(s.command)}"
                        " - removing",
                        f"Failed to set default user for {typ} script {word} - ignoring")
            if ug is None:
                if u.what == "vrrp_script":
                    out.append(self._d(s.pos, msgs[0]))
                elif u.what == "misc":
                    out.append(self._d(s.pos, msgs[1]))
                else:  # notify_script_init: logged only
                    out.append(self._log(s.pos, msgs[2]))
                self.dropped.add((s.pos, s.command))
                continue
            resolved[_key(u)] = ug
        return resolved

    # -------------------------------------------------------------- script files

    def script_secure(self, u: _Use, ug: tuple[int, int], out: list[Diagnostic]) -> int:
        """lib/notify.c check_script_secure(): the flags, and keepalived's log lines."""
        s = u.script
        word = first_word(s)
        if word is None:
            return 0
        if word.startswith("<") and word[1:].lstrip(" \t").startswith("/"):
            return SC_SYSTEM
        sf = self.facts.scripts.get(word)
        if sf is None:
            return 0  # not looked up: nothing to say
        if sf.path is None:
            if not sf.in_path and sf.error:
                out.append(self._log(s.pos, f"Permissions failure for script {word} in path - "
                                          "disabling"))
            elif not sf.in_path:
                out.append(self._log(s.pos, f"Cannot find script {word} in path - disabling"))
            else:
                out.append(self._log(s.pos, f"Script {word} cannot be accessed - "
                                          f"{sf.error or 'No such file or directory'}"))
            return SC_NOTFOUND
        path = sf.path
        if "/" not in word:
            out.append(self._log(s.pos, f"WARNING - script `{word}` resolved by path search to "
                                      f"`{path}`. Please specify full path.", Severity.WARNING))
        if sf.target is None:
            out.append(self._log(s.pos, f"Unable to access script `{path}` - disabling"))
            return SC_NOTFOUND
        flags = SC_ISSCRIPT
        uid, gid = ug
        need_protection = False
        t = sf.target
        if _is_executable(t, uid, gid):
            flags |= SC_EXECUTABLE
            if (uid == 0 or gid == 0
                    or (t.uid == 0 and t.mode & stat.S_IXUSR and t.mode & stat.S_ISUID)
                    or (t.gid == 0 and t.mode & stat.S_IXGRP and t.mode & stat.S_ISGID)):
                need_protection = True
        else:
            out.append(self._log(s.pos, f"WARNING - script '{path}' is not executable for "
                                      f"uid:gid {uid}:{gid} - disabling."))
        if not need_protection:
            return flags
        return flags | self._path_security(path, sf.chain, s.pos, out)

    def _path_security(self, filename: str, chain: tuple[FileStat, ...], pos: Pos,
                       out: list[Diagnostic]) -> int:
        """lib/notify.c check_security(): every element of the path owned by root, and not
        group (non-root group) or world writable unless a sticky directory."""
        if not chain:
            out.append(self._log(pos, f"check_script_secure could not find script '{filename}' "
                                    "- disabling"))
            return SC_NOTFOUND
        for i, st in enumerate(chain):
            last = i == len(chain) - 1
            m = st.mode
            if (not last and not stat.S_ISDIR(m)) or (
                    last and not stat.S_ISREG(m) and not stat.S_ISLNK(m)):
                out.append(self._log(pos, f"Wrong file type found in script path '{filename}'."))
                return SC_INHIBIT
            writable_kind = (stat.S_ISDIR(m) and not m & stat.S_ISVTX) or stat.S_ISREG(m)
            if st.uid != 0 or (writable_kind and (
                    (st.gid != 0 and m & stat.S_IWGRP) or m & stat.S_IWOTH)):
                if self.security:
                    out.append(self._log(pos, f"Unsafe permissions found for script '{filename}'"
                                            " - disabling."))
                    return SC_INSECURE | SC_INHIBIT
                out.append(self._log(pos, f"Unsafe permissions found for script '{filename}'."))
                return SC_INSECURE
        return 0

    def scripts_security(self, uses: list[_Use], resolved: Mapping[_UseKey, tuple[int, int]],
                         side: str, out: list[Diagnostic]) -> set[str]:
        """check_vrrp_script_security() / check_check_script_security(): check each script,
        drop the bad ones as keepalived does; the names of vrrp_scripts removed."""
        flags_all = 0
        removed: set[str] = set()
        for u in uses:
            ug = resolved.get(_key(u))
            if ug is None:
                continue
            flags = self.script_secure(u, ug, out)
            flags_all |= flags
            s = u.script
            # what keepalived then does not run: vrrp.c check_track_script_secure,
            # check_misc.c check_misc_script_security, lib/notify.c check_notify_script_secure
            runnable = SC_EXECUTABLE | SC_SYSTEM if u.what in ("vrrp_script", "misc") \
                else SC_EXECUTABLE
            if flags & (SC_INHIBIT | SC_NOTFOUND) or not flags & runnable:
                self.dropped.add((s.pos, s.command))
            if u.what == "vrrp_script":
                # vrrp.c check_track_script_secure
                if flags & SC_INHIBIT:
                    out.append(self._d(None, f"Disabling track script {u.owner} due to "
                                             "insecure"))
                    removed.add(u.owner)
                elif flags & SC_NOTFOUND:
                    out.append(self._d(None, f"Disabling track script {u.owner} since not "
                                             "found/accessible"))
                    removed.add(u.owner)
                elif not flags & (SC_EXECUTABLE | SC_SYSTEM):
                    removed.add(u.owner)
            elif u.what == "misc":
                # check_misc.c check_misc_script_security (logged, the checker is removed)
                sf = self.facts.scripts.get(first_word(s) or "")
                shown = cmd_str(s.command, sf.path if sf is not None else None)
                if flags & SC_INHIBIT:
                    out.append(self._log(s.pos, f"Disabling misc script {shown} due to insecure"))
                elif flags & SC_NOTFOUND:
                    out.append(self._log(s.pos, f"Disabling misc script {shown} since not "
                                              "found/accessible"))
        if not self.security and flags_all & SC_ISSCRIPT:
            what = "check scripts" if side == "check" else "scripts"
            extra = " There are insecure scripts." if flags_all & SC_INSECURE else ""
            out.append(self._d(None, f"SECURITY VIOLATION - {what} are being executed but "
                                     f"script_security not enabled.{extra}",
                               kind=DiagKind.SECURITY))
        return removed

    def track_refs_removed(self, removed: set[str], out: list[Diagnostic]) -> None:
        """vrrp_track.c alloc_track_script: a reference to a removed vrrp_script."""
        if not removed:
            return
        owners: list[tuple[str, tuple[TrackRef, ...]]] = [
            (i.name, i.track_scripts) for i in self.cfg.vrrp_instances]
        owners += [(g.name, g.track_scripts) for g in self.cfg.vrrp_sync_groups]
        for name, refs in owners:
            for ref in refs:
                if ref.name in removed:
                    out.append(self._d(ref.pos, f"({name}) track script {ref.name} not found, "
                                                "ignoring..."))

    # -------------------------------------------------------------- interfaces (VRRP)

    def interfaces_parse(self, out: list[Diagnostic], notices: list[Diagnostic]
                         ) -> tuple[bool, dict[str, str | None]]:
        """Parse-time interface lookups (vrrp_parser.c vrrp_int_handler, vrrp_ipaddress.c
        ``dev``, vrrp_track.c alloc_track_if). Returns (a non-existent interface was
        named, the interface each instance is left with)."""
        itfs = self.facts.interfaces
        assert itfs is not None
        missing = False
        announced: set[str] = set()
        left: dict[str, str | None] = {}

        def absent(name: str, pos: Pos, msg: str, waits: str = "") -> None:
            nonlocal missing
            if self.dynamic:
                # vrrp_if.c if_get_by_ifname (IF_CREATE_IF_DYNAMIC): logged, not an error
                if name not in announced:
                    announced.add(name)
                    notices.append(self._d(
                        pos, f"Configuration specifies interface {name} which doesn't currently"
                             f" exist - will use if created{waits}", Severity.WARNING,
                        DiagKind.LVSD))
                return
            missing = True
            out.append(self._d(pos, msg))

        for inst in self.cfg.vrrp_instances:
            left[inst.name] = inst.interface
            if inst.interface is not None:
                ipos = inst.interface_pos or inst.pos
                itf = itfs.get(inst.interface)
                if itf is None:
                    absent(inst.interface, ipos, f"WARNING - interface {inst.interface} for "
                           f"vrrp_instance {inst.name} doesn't exist",
                           f" ({inst.name} waits in FAULT until it does)")
                    if not self.dynamic:
                        left[inst.name] = None
                elif itf.loopback:
                    out.append(self._d(ipos, f"({inst.name}) cannot use a loopback interface "
                                             f"({inst.interface}) for vrrp - ignoring"))
                    left[inst.name] = None
            for v in inst.virtual_ipaddresses + inst.virtual_ipaddresses_excluded:
                if v.dev is not None and v.dev not in itfs:
                    absent(v.dev, v.pos, f"WARNING - interface {v.dev} for ip address "
                           f"{_vip_text(v)} doesn't exist")
            for ref in inst.track_interfaces:
                if ref.name not in itfs:
                    absent(ref.name, ref.pos, f"({inst.name}) tracked interface {ref.name} "
                           "doesn't exist")
        for sg in self.cfg.vrrp_sync_groups:
            for ref in sg.track_interfaces:
                if ref.name not in itfs:
                    absent(ref.name, ref.pos, f"({sg.name}) tracked interface {ref.name} "
                           "doesn't exist")
        return missing, left

    def complete_init(self, left: Mapping[str, str | None], out: list[Diagnostic],
                      notices: list[Diagnostic]) -> None:
        """The host-dependent part of vrrp.c vrrp_complete_init(): chk_min_cfg, then per
        instance vrrp_complete_instance (multicast), then set_vrrp_src_addr and the run-time
        FAULT reasons keepalived only logs.

        In 2.2.7 VRRP_FLAG_UNICAST is only set inside vrrp_complete_instance, so chk_min_cfg
        wants an interface even for a unicast instance, and the strict-mode "Unicast peers are
        not supported" test before it never fires (``keepalived -t`` accepts both)."""
        itfs = self.facts.interfaces or {}
        for inst in self.cfg.vrrp_instances:
            if inst.interface is None:
                return  # chk_min_cfg fails: the loader reported "Unknown interface!"
            if left.get(inst.name) is None:
                # the interface was ignored (loopback): vrrp_complete_init fails, the VRRP
                # process exits
                out.append(self._d(None, f"({inst.name}) Unknown interface!", Severity.FATAL))
                return
        for inst in self.cfg.vrrp_instances:
            ifname = left.get(inst.name)
            itf = itfs.get(ifname) if ifname is not None else None
            if itf is None:
                continue  # dynamic_interfaces: not there yet (reported as a notice)
            unicast = bool(inst.unicast_peers)
            if not itf.multicast and not unicast:
                out.append(self._d(None, f"({inst.name}) interface {itf.name} does not support "
                                         "multicast, specify unicast peers - disabling"))
            self._runtime_faults(inst, itf, inst.unicast_src_ip or inst.mcast_src_ip, unicast,
                                 notices)
        for sg in self.cfg.vrrp_sync_groups:
            for ref in sg.track_interfaces:
                self._tracked_down(sg.name, ref, notices)

    def _runtime_faults(self, inst: VrrpInstance, itf: Interface, src: str | None,
                        unicast: bool, notices: list[Diagnostic]) -> None:
        """What keepalived -t does not say but makes the instance start in FAULT."""
        ipos = inst.interface_pos or inst.pos
        if src is None:
            # vrrp.c set_vrrp_src_addr + vrrp_track.c initialise_vrrp_tracking_priorities
            vips = {v.address for v in inst.virtual_ipaddresses}
            if inst.family == 4:
                usable = [a for a in itf.addresses4 if a not in vips]
            else:
                usable = [a for a in itf.addresses6 if _link_local(a)]
            if not usable:
                notices.append(self._d(
                    ipos, f"({inst.name}) entering FAULT state (no IPv{inst.family} address for "
                          f"interface) - {itf.name} has no "
                          f"{'IPv4' if inst.family == 4 else 'IPv6 link-local'} address",
                    Severity.WARNING, DiagKind.LVSD))
        elif unicast and not _local(src, self.facts):
            # vrrp.c open_vrrp_read_socket: bind(unicast_src) fails -> FAULT
            notices.append(self._d(
                inst.pos, f"({inst.name}): entering FAULT state (src address not configured) - "
                          f"bind unicast_src {src} failed: Cannot assign requested address",
                Severity.WARNING, DiagKind.LVSD))
        elif not unicast and not _same_addr(src, itf.addresses4 + itf.addresses6):
            kw = "unicast_src_ip" if inst.unicast_src_ip else "mcast_src_ip"
            notices.append(self._d(
                inst.pos, f"({inst.name}) {kw} {src} is not an address of interface "
                          f"{itf.name} - adverts are sent from it anyway",
                Severity.WARNING, DiagKind.LVSD))
        if not itf.up and not inst.dont_track_primary:
            notices.append(self._d(
                ipos, f"({inst.name}): entering FAULT state (interface {itf.name} down)",
                Severity.WARNING, DiagKind.LVSD))
        for ref in inst.track_interfaces:
            self._tracked_down(inst.name, ref, notices)

    def _tracked_down(self, name: str, ref: TrackRef, notices: list[Diagnostic]) -> None:
        """vrrp_track.c initialise_interface_tracking_priorities: an unweighted tracked
        interface that is down puts the instance in FAULT at start."""
        itf = (self.facts.interfaces or {}).get(ref.name)
        if itf is not None and not itf.up and not ref.weight:
            notices.append(self._d(
                ref.pos, f"({name}): entering FAULT state (interface {ref.name} down)",
                Severity.WARNING, DiagKind.LVSD))

    # -------------------------------------------------------------- checkers, sync daemon

    def check_side_notices(self, notices: list[Diagnostic]) -> None:
        """core/layer4.c socket_bind_connect: a checker whose bind_if or bindto cannot be
        used never connects ("... Rescheduling."): the real server keeps its initial state."""
        itfs = self.facts.interfaces
        for vs in self.cfg.virtual_servers:
            for rs in vs.real_servers:
                for ch in rs.checkers:
                    if ch.bind_if and itfs is not None and ch.bind_if not in itfs:
                        notices.append(self._d(
                            ch.pos, f"Checker can't bind to device {ch.bind_if}: No such device"
                                    f" - {ch.label} never runs", Severity.WARNING,
                            DiagKind.LVSD))
                    if ch.bindto and itfs is not None and not _local(ch.bindto, self.facts):
                        notices.append(self._d(
                            ch.pos, "Checker bind failed: Cannot assign requested address "
                                    f"({ch.bindto}) - {ch.label} never runs", Severity.WARNING,
                            DiagKind.LVSD))

    def sync_daemon_notice(self, notices: list[Diagnostic]) -> None:
        sd = self.cfg.global_defs.lvs_sync_daemon
        itfs = self.facts.interfaces
        if sd is not None and itfs is not None and sd.interface not in itfs:
            notices.append(self._d(
                sd.pos, f"lvs_sync_daemon interface {sd.interface} doesn't exist - the IPVS "
                        "sync daemon cannot start", Severity.WARNING, DiagKind.LVSD))

    # -------------------------------------------------------------- all of it

    def run(self) -> list[Diagnostic]:
        out: list[Diagnostic] = []
        notices: list[Diagnostic] = []
        cfg = self.cfg
        out += self.global_script_user()
        check_uses = _check_uses(cfg) if self.want_check else []
        vrrp_uses = _vrrp_uses(cfg) if self.want_vrrp else []
        # the global notify_fifo_script is parsed once, with global_defs (before either side)
        fifo = [u for u in check_uses + vrrp_uses if u.side == "both"][:1]
        resolved = self.resolve_users(fifo, out)
        if self.want_check:
            parse: list[Diagnostic] = []
            resolved.update(self.resolve_users(
                [u for u in check_uses if u.side != "both"], parse))
            out += _sorted(parse, cfg)
            if cfg.virtual_servers:
                self.scripts_security(check_uses, resolved, "check", out)
            self.check_side_notices(notices)
        if self.want_vrrp:
            parse = []
            resolved.update(self.resolve_users(
                [u for u in vrrp_uses if u.side != "both"], parse))
            self.track_refs_removed({u.owner for u in vrrp_uses if u.what == "vrrp_script"
                                     and _key(u) not in resolved}, parse)
            missing = False
            left: dict[str, str | None] = {i.name: i.interface for i in cfg.vrrp_instances}
            if self.facts.interfaces is not None:
                missing, left = self.interfaces_parse(parse, notices)
            out += _sorted(parse, cfg)
            if missing:
                # vrrp_daemon.c start_vrrp: the VRRP process stops here (before
                # vrrp_complete_init, so neither script security nor instance checks follow)
                out.append(self._d(None, "Non-existent interface specified in configuration",
                                   Severity.FATAL, DiagKind.BAD_IF))
            elif cfg.vrrp_instances:
                self.scripts_security(vrrp_uses, resolved, "vrrp", out)
                if self.facts.interfaces is not None:
                    self.complete_init(left, out, notices)
            self.sync_daemon_notice(notices)
        return _dedupe(out + notices)


def _dedupe(diags: list[Diagnostic]) -> list[Diagnostic]:
    seen: set[Diagnostic] = set()
    out = []
    for d in diags:
        if d not in seen:
            seen.add(d)
            out.append(d)
    return out


@dataclass(frozen=True, slots=True)
class HostResult:
    """:func:`host_result`: the diagnostics, and the scripts keepalived would not run on this
    host (each as its ``(pos, command)``): lvsd removes them from the config it runs
    (:func:`lvsd.config.prune.without_scripts`), as keepalived frees them."""

    diagnostics: tuple[Diagnostic, ...]
    dropped_scripts: frozenset[tuple[Pos, str]] = frozenset()


def host_result(cfg: Config, facts: HostFacts, *, mode: str = "full") -> HostResult:
    """keepalived's host-dependent checks of ``cfg`` against ``facts`` (see the module doc)."""
    c = _Checker(cfg, facts, mode)
    diags = c.run()
    return HostResult(tuple(diags), frozenset(c.dropped))


def check_host(cfg: Config, facts: HostFacts, *, mode: str = "full") -> list[Diagnostic]:
    """The diagnostics of :func:`host_result`."""
    return list(host_result(cfg, facts, mode=mode).diagnostics)
