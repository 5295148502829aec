"""What every keyword reader shares: table shorthands, the value readers, the build state.

Theory of operation
-------------------
keepalived's lib/parser.c gives each subsystem's parser the same tools: ``install_keyword``
(here: a table of :class:`~lvsd.config.grammar.Spec` per block, built with :func:`table`),
``null_strvec`` (a missing value: :meth:`Ctx.arg`), ``read_unsigned_strvec`` /
``read_int_strvec`` / ``read_decimal_unsigned_strvec`` / ``read_timer`` (:meth:`Ctx.uint`,
:meth:`Ctx.sint`, :meth:`Ctx.timer`, :meth:`Ctx.read_num`), ``check_true_false``
(:meth:`Ctx.flag`) and ``report_config_error`` (:meth:`Ctx.err`, :meth:`Ctx.warn`,
:meth:`Ctx.fatal`). Every reader reports in keepalived's words and returns None for a bad
value, so the caller keeps its default (:func:`or_`) or skips the setting (:func:`put`).

:class:`Parts` is the state of one load: the model objects read so far (global_defs first;
instances and virtual servers are read after the whole file, as keepalived applies the globals
after reading it) plus what a later block needs from an earlier one (global smtp_alert
defaults, track_process lines resolved at the end). The subsystem readers
(:mod:`~lvsd.config.keywords.global_defs`, :mod:`~lvsd.config.keywords.vrrp_track`,
:mod:`~lvsd.config.keywords.vrrp_instance`, :mod:`~lvsd.config.keywords.lvs`,
:mod:`~lvsd.config.keywords.checkers`) are functions of it.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, TypeGuard, TypeVar

from lvsd.config.grammar import Kind, Node, Spec
from lvsd.config.lexer import Line, split_quoted
from lvsd.config.model import (
    BgpAnnounce,
    BgpSpeaker,
    DiagKind,
    Diagnostic,
    GlobalDefs,
    Pos,
    Protocol,
    RealServer,
    Script,
    Severity,
    Unsupported,
    VirtualServer,
    VirtualServerGroup,
    VrrpInstance,
    VrrpScript,
    VrrpSyncGroup,
    VrrpTrackFile,
    VrrpTrackProcess,
)

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

# ------------------------------------------------------------------------------- tables

L = Spec(Kind.LEAF)
Q = Spec(Kind.QUOTED)
V = Spec(Kind.VALUES)
UL = Spec(Kind.LEAF, supported=False)
UQ = Spec(Kind.QUOTED, supported=False)
UV = Spec(Kind.VALUES, supported=False)
US = Spec(Kind.SKIP, supported=False)
EXT = Spec(Kind.LEAF, extension=True)  # lvsd-only keyword (keepalived would reject it)


def block(table_name: str) -> Spec:
    """A keyword opening a block of the keywords of ``table_name``."""
    return Spec(Kind.BLOCK, table_name)


def words(s: str) -> list[str]:
    return s.split()


def table(supported: dict[str, Spec], unsupported: str = "",
          unsupported_values: str = "", unsupported_blocks: str = "") -> dict[str, Spec]:
    """A block's keyword table: the ``supported`` specs, then the keywords keepalived knows
    and lvsd does not implement (a leaf, a value block or any block)."""
    t = dict(supported)
    for w in words(unsupported):
        t.setdefault(w, UL)
    for w in words(unsupported_values):
        t.setdefault(w, UV)
    for w in words(unsupported_blocks):
        t.setdefault(w, US)
    return t


# ------------------------------------------------------------------------------ values

IPVS_SVC_PERSISTENT_TIMEOUT = 360  # libipvs.h: 6*60
LVS_MAX_TIMEOUT = 86400 * 31
IPVS_WEIGHT_LIMIT = 65535
IPVS_FWMARK_MAX = 0xFFFFFFFF
TIMER_MAX = 4294.967295 * 1000  # keepalived's TIMER_MAXIMUM, generous
DRAIN_MAX = 7 * 86400.0  # lvs_drain_on_remove: a week at most (a longer one is a typo)
DECIMAL_RE = re.compile(r"^[0-9]+(\.[0-9]{0,6})?$|^\.[0-9]{1,6}$")


# an IPv4 address as ipaddress.ip_address() accepts it and str() writes it back: four
# decimal octets 0-255 without leading zeros (the common case, read without the module)
_CANONICAL_V4_RE = re.compile(
    r"(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}"
    r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])")


def norm_ip(text: str) -> str | None:
    addr = text.split("%", 1)[0]
    if _CANONICAL_V4_RE.fullmatch(addr):
        return addr
    try:
        return str(ipaddress.ip_address(addr))
    except ValueError:
        return None


def stosockaddr(text: str) -> str | None:
    """keepalived ``inet_stosockaddr()`` (lib/utils.c): the address before any ``-`` (range) or
    else ``/`` (prefix length), which are dropped; None when it is not an address."""
    cut = text.find("-")
    if cut < 0:
        cut = text.find("/")
    addr = text if cut < 0 else text[:cut]
    if _CANONICAL_V4_RE.fullmatch(addr):
        return None if ":" in text else addr  # the family check below
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return None
    if (ip.version == 6) != (":" in text):  # the family comes from the whole text
        return None
    return str(ip)


def hmsg(node: Node, template: str) -> str:
    """A keepalived handler's own message for a bad value (``{}``: the value as written), in
    the `` - TEXT`` form the number readers of :class:`Ctx` take."""
    return " - " + template.format(node.args[0] if node.args else "")


def proto_str(protocol: Protocol | None) -> str:
    """lib/utils.c inet_sockaddrtotrio_r(): the protocol as keepalived prints it."""
    return protocol.value.lower() if protocol is not None else "none"


def true_false(text: str) -> bool | None:
    if text in ("true", "on", "yes"):
        return True
    if text in ("false", "off", "no"):
        return False
    return None


def fmt6(v: float) -> str:
    """A timer bound as keepalived prints it (``%lu.%06lu``: 0.000001, 4294.967295)."""
    micro = round(v * 1_000_000)
    return f"{micro // 1_000_000}.{micro % 1_000_000:06d}"


_T = TypeVar("_T")
_D = TypeVar("_D", bound="DataclassInstance")


def or_(value: _T | None, current: _T) -> _T:
    """A value read from the config, or the current one when it was bad (already reported)."""
    return current if value is None else value


def addr_port(args: list[str]) -> tuple[str, int] | None:
    """``IP [PORT]`` (port 0 when absent) of a virtual, real or sorry server; None if invalid.
    The address is read as check_parser.c reads it, with ``inet_stosockaddr()``: a ``/len`` or
    ``-range`` after it is dropped silently (``real_server 192.0.2.3/24 80`` is 192.0.2.3)."""
    ip = (stosockaddr(args[0]) or norm_ip(args[0])) if args else None
    if ip is None:
        return None
    if len(args) < 2:
        return ip, 0
    try:
        port = int(args[1])
    except ValueError:
        return None
    return (ip, port) if 0 <= port <= 65535 else None


def children(node: Node) -> list[Node]:
    return node.children or []


# ------------------------------------------------------------------------------ readers


@dataclass
class Ctx:
    diagnostics: list[Diagnostic]
    unsupported: list[Unsupported] = field(default_factory=list)
    _seen_unsupported: set[tuple[str, Pos]] = field(default_factory=set)

    def err(self, pos: Pos | None, msg: str, kind: DiagKind = DiagKind.GENERAL) -> None:
        """keepalived logs it and runs (report_config_error of a non-fatal class)."""
        self.diagnostics.append(Diagnostic(pos, Severity.ERROR, msg, kind))

    def warn(self, pos: Pos | None, msg: str, kind: DiagKind = DiagKind.LVSD) -> None:
        """An lvsd-only notice (keepalived is silent, or only logs without a config error)."""
        self.diagnostics.append(Diagnostic(pos, Severity.WARNING, msg, kind))

    def fatal(self, pos: Pos | None, msg: str, kind: DiagKind = DiagKind.FATAL) -> None:
        """keepalived would not run this config (see the table in the package docstring)."""
        self.diagnostics.append(Diagnostic(pos, Severity.FATAL, msg, kind))

    def unsupported_kw(self, node: Node, context: str) -> Unsupported:
        u = Unsupported(node.keyword, node.pos, context, tuple(node.args))
        key = (node.keyword, node.pos)
        if key not in self._seen_unsupported:
            self._seen_unsupported.add(key)
            self.warn(node.pos, f"keyword '{node.keyword}' is not supported by lvsd - ignored")
            self.unsupported.append(u)
        return u

    def block_name(self, node: Node, what: str) -> str | None:
        """The one name of a named block (``vrrp_instance NAME``), else an error."""
        if len(node.args) != 1:
            self.err(node.pos, f"{what} must have a name")
            return None
        return node.args[0]

    # -- value readers (keepalived's read_unsigned / read_timer wording)

    def arg(self, node: Node, idx: int = 0) -> str | None:
        if len(node.args) <= idx:
            # lib/parser.c null_strvec(): keepalived exits (KEEPALIVED_EXIT_CONFIG) - fatal
            self.fatal(node.pos, f"*** Configuration line starting `{node.keyword}` is missing a "
                       f"parameter after keyword `{node.keyword}` at word position {idx + 2}",
                       DiagKind.MISSING_PARAMETER)
            return None
        return node.args[idx]

    def _bad_number(self, node: Node, number_msg: str, default_msg: str) -> None:
        """keepalived's two lines: the number reader's (CONFIG_INVALID_NUMBER, lib/parser.c
        read_*_func) and then the handler's own (CONFIG_GENERAL_ERROR), when it has one."""
        if node.spec is not None and node.spec.extension:  # lvsd keyword: one lvsd line
            self.err(node.pos, f"{node.keyword}: {number_msg}{default_msg}",
                     DiagKind.INVALID_NUMBER)
            return
        self.err(node.pos, number_msg, DiagKind.INVALID_NUMBER)
        handler = default_msg.removeprefix(" - ")
        if handler and handler != "ignoring":
            self.err(node.pos, handler)

    def uint(self, node: Node, lo: int, hi: int, default_msg: str = "", idx: int = 0) -> int | None:
        """keepalived read_unsigned_strvec (or read_int_strvec when ``lo`` < 0);
        ``default_msg`` (`` - TEXT``) is the handler's own line that follows."""
        s = self.arg(node, idx)
        if s is None:
            return None
        try:
            v = int(s, 10)
        except ValueError:
            neg = lo >= 0 and s.lstrip(" \t").startswith("-")
            self._bad_number(node, f"{'negative' if neg else 'invalid'} number '{s}'",
                             default_msg)
            return None
        if lo >= 0 and v < 0:
            self._bad_number(node, f"negative number '{s}'", default_msg)
            return None
        if not lo <= v <= hi:
            self._bad_number(node, f"number '{s}' outside range [{lo}, {hi}]", default_msg)
            return None
        return v

    def uint_h(self, node: Node, lo: int, hi: int, template: str) -> int | None:
        """:meth:`uint` with the handler's line ``hmsg(node, template)``, formatted only for a
        bad value (a load of 37,000 real servers reads twice as many good ones)."""
        if node.args:
            try:
                v = int(node.args[0], 10)
            except ValueError:
                pass
            else:
                if lo <= v <= hi:
                    return v
        return self.uint(node, lo, hi, hmsg(node, template))

    def sint(self, node: Node, lo: int, hi: int, idx: int = 0, default_msg: str = "") -> int | None:
        return self.uint(node, lo, hi, default_msg, idx=idx)

    def timer(self, node: Node, lo: float = 0.0, hi: float = TIMER_MAX,
              default_msg: str = " - ignoring") -> float | None:
        """keepalived read_timer / read_decimal_unsigned_strvec (6 decimal places)."""
        s = self.arg(node)
        if s is None:
            return None
        if s.startswith("-"):
            self._bad_number(node, f"negative number '{s}'", default_msg)
            return None
        if not DECIMAL_RE.match(s):
            if node.spec is not None and node.spec.extension:
                self.err(node.pos, f"{node.keyword} '{s}' invalid{default_msg}",
                         DiagKind.INVALID_NUMBER)
            else:
                self._bad_number(node, f"invalid number '{s}'", default_msg)
            return None
        v = float(s)
        if not lo <= v <= hi:
            self._bad_number(node, f"number '{s}' outside range [{fmt6(lo)}, {fmt6(hi)}]",
                             default_msg)
            return None
        return v

    def timer_h(self, node: Node, template: str, lo: float = 0.0,
                hi: float = TIMER_MAX) -> float | None:
        """:meth:`timer` with the handler's line ``hmsg(node, template)``, formatted only for
        a bad value."""
        if node.args:
            s = node.args[0]
            if s[:1] != "-" and DECIMAL_RE.match(s):
                v = float(s)
                if lo <= v <= hi:
                    return v
        return self.timer(node, lo, hi, hmsg(node, template))

    def read_num(self, pos: Pos, text: str, lo: float, hi: float, kind: str) -> float | None:
        """keepalived lib/parser.c read_int / read_unsigned / read_decimal_unsigned (``kind``
        "int", "unsigned", "decimal"): their INVALID_NUMBER message, or the value."""
        num = DiagKind.INVALID_NUMBER
        if kind != "int" and text.lstrip().startswith("-"):
            self.err(pos, f"negative number '{text}'", num)
            return None
        ok = (DECIMAL_RE.match(text) if kind == "decimal"
              else re.fullmatch(r"[+-]?[0-9]+" if kind == "int" else r"\s*\+?[0-9]+", text))
        if not ok:
            self.err(pos, f"invalid number '{text}'", num)
            return None
        v = float(text) if kind == "decimal" else int(text)
        if not lo <= v <= hi:
            rng = f"[{lo:.6f}, {hi:.6f}]" if kind == "decimal" else f"[{lo:g}, {hi:g}]"
            self.err(pos, f"number '{text}' outside range {rng}", num)
            return None
        return v

    def flag(self, node: Node, invalid: str | None = None) -> bool | None:
        """A keyword that may carry an optional true/false/on/off/yes/no (check_true_false);
        ``invalid`` is the handler's message for anything else (default: the usual form)."""
        if not node.args:
            return True
        v = true_false(node.args[0])
        if v is None:
            self.err(node.pos, invalid if invalid is not None else
                     f"Invalid {node.keyword} parameter {node.args[0]} - ignoring")
        return v

    def script(self, node: Node) -> Script | None:
        rest = node.raw[len(node.keyword):].strip()
        toks, unmatched = split_quoted(rest)
        if unmatched:
            self.err(node.pos, f"String '{rest}': missing terminating quote")
        if not toks or not toks[0]:
            self.err(node.pos, f"{node.keyword}: script missing")
            return None
        # keepalived: `KEYWORD <cmd>|<"quoted cmd"> [user [group]]`; a quoted command is one
        # token; an unquoted line keeps its words as the command (misc_path, script).
        if rest[:1] in "\"'":
            cmd = toks[0]
            user = toks[1] if len(toks) > 1 else None
            group = toks[2] if len(toks) > 2 else None
        elif node.keyword in ("misc_path", "script"):
            cmd, user, group = " ".join(toks), None, None
        else:
            cmd = toks[0]
            user = toks[1] if len(toks) > 1 else None
            group = toks[2] if len(toks) > 2 else None
        return Script(cmd, node.pos, user, group)


def copier(cls: type[_D], *changed: str) -> Callable[..., _D]:
    """``f(obj, *values)``: a new ``cls`` with the fields ``changed`` set to ``values`` and the
    others as in ``obj`` -- what ``dataclasses.replace(obj, ...)`` gives, for a frozen slots
    dataclass without ``__post_init__`` (nothing runs at construction but the stores).

    The copy is filled in a mutable twin class with the same slots and then given ``cls`` as
    its class (CPython checks the layouts are the same): a frozen class's ``__init__`` stores
    each field through a descriptor call, which for the 42 fields of a ``Checker`` costs four
    times as much, and a 37,000 real server load copies 74,000 objects.
    """
    names = tuple(f.name for f in fields(cls))
    assert set(changed) <= set(names) and not hasattr(cls, "__post_init__")
    assert cls.__dict__.get("__slots__") == names and cls.__bases__ == (object,)
    twin = type(f"_{cls.__name__}Draft", (), {"__slots__": names})
    ns: dict[str, Any] = {"_cls": cls, "_twin": twin, "_new": object.__new__}
    exec(f"def copy(_o, {', '.join(changed)}):\n    _d = _new(_twin)\n"
         + "".join(f"    _d.{n} = {n if n in changed else '_o.' + n}\n" for n in names)
         + "    _d.__class__ = _cls\n    return _d\n", ns)
    fn: Callable[..., _D] = ns["copy"]
    return fn


# ------------------------------------------------------------------------------ state

# a real server read once (keywords/lvs.py _real_server): the model object and, per checker,
# the index of its node among the real server's and whether it set connect_ip / connect_port
RsTemplate = tuple[RealServer, tuple[tuple[int, bool, bool], ...]]


@dataclass
class Parts:
    """The model objects of one load, as far as they are read (see the module docstring)."""

    ctx: Ctx
    global_defs: GlobalDefs = field(default_factory=GlobalDefs)
    # global_defs smtp_alert / smtp_alert_checker: the defaults of instances and servers
    global_smtp_alert: bool | None = None
    global_smtp_alert_checker: bool | None = None
    vrrp_scripts: list[VrrpScript] = field(default_factory=list)
    track_files: list[VrrpTrackFile] = field(default_factory=list)
    track_processes: list[VrrpTrackProcess] = field(default_factory=list)
    instances: list[VrrpInstance] = field(default_factory=list)
    sync_groups: list[VrrpSyncGroup] = field(default_factory=list)
    vsgs: list[VirtualServerGroup] = field(default_factory=list)
    virtual_servers: list[VirtualServer] = field(default_factory=list)
    # track_process lines per ("i", instance) / ("g", sync group), resolved by finish_vrrp
    tp_lines: dict[tuple[str, str], list[Line]] = field(default_factory=dict)
    # real servers read once, reused for identical ones (keywords/lvs.py _real_server): per
    # virtual server defaults, per body
    rs_templates: dict[object, dict[tuple[str | tuple[str, ...], ...], RsTemplate]] = field(
        default_factory=dict)
    bgp_speaker: BgpSpeaker | None = None  # lvsd extension (keywords/bgp.py)
    bgp_announces: list[BgpAnnounce] = field(default_factory=list)


_K = TypeVar("_K", bound=str)


def one_of(key: str, names: tuple[_K, ...]) -> TypeGuard[_K]:
    """``key in names``, telling the type checker so (``names``: a tuple of literal keys)."""
    return key in names
