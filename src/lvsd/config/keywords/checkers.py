"""Health checker blocks: ``TCP_CHECK``, ``HTTP_GET`` / ``SSL_GET`` (with ``url``),
``MISC_CHECK``, ``DNS_CHECK``, ``SMTP_CHECK``, ``UDP_CHECK``, ``PING_CHECK``, ``FILE_CHECK``,
``BFD_CHECK`` (keepalived check_api.c and check_tcp.c, check_http.c, check_misc.c,
check_dns.c, check_smtp.c, check_udp.c, check_ping.c, check_file.c, check_bfd.c).

Theory of operation
-------------------
Every checker's table is :data:`CHECK_COMMON` (check_api.c ``install_checker_common_keywords``:
connect_ip, connect_port, bindto, bind_port, bind_if, connect_timeout, fwmark, retry,
delay_before_retry, warmup, delay_loop, alpha, log_all_failures, plus two lvsd extensions) and
the checker's own keywords (:data:`CHECKER_TABLES`; HTTP_GET and SSL_GET share theirs and the
``url`` block's). :func:`read_checker` reads one block into a
:class:`~lvsd.config.model.Checker`: its kind-specific settings in a :class:`_CheckerKw`, the
inherited timing values as locals resolved at the end. Inheritance: checker, then real server
(:class:`RsDefaults`, which already holds what the real server took from its virtual server),
then the per-checker default: retry 1 (DNS_CHECK 3, MISC_CHECK 0), delay_before_retry 1 s
(HTTP_GET / SSL_GET 3 s, DNS_CHECK the delay_loop), warmup the delay_loop; ``nb_get_retry`` is
``retry``. A checker keepalived would drop (no url, no misc_path, no track_file, no BFD name)
is reported and dropped.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Literal, TypedDict, get_args

from lvsd.config.grammar import Node, Spec
from lvsd.config.keywords.common import (
    EXT,
    IPVS_FWMARK_MAX,
    IPVS_WEIGHT_LIMIT,
    L,
    Parts,
    Q,
    block,
    children,
    norm_ip,
    one_of,
    or_,
    table,
    words,
)
from lvsd.config.keywords.vrrp_track import track_file_by_name
from lvsd.config.model import (
    Checker,
    CheckKind,
    DiagKind,
    HttpUrl,
    Pos,
    Script,
    StatusCodeRange,
    Unsupported,
    VrrpTrackFile,
)

CHECKER_KINDS = {k.value: k for k in CheckKind}

CHECK_COMMON: dict[str, Spec] = {w: L for w in words(
    "connect_ip connect_port bindto bind_port bind_if connect_timeout fwmark retry "
    "delay_before_retry warmup delay_loop alpha log_all_failures")}
# lvsd extension: `rise N` consecutive successes bring a down checker back up (keepalived: 1)
CHECK_COMMON["rise"] = EXT
# keepalived's old name for `retry`, which tutorials teach for TCP_CHECK: keepalived 2.x knows
# it in HTTP_GET/SSL_GET only (their tables override this entry); lvsd applies it everywhere
CHECK_COMMON["nb_get_retry"] = EXT

_HTTP_GET = table({**CHECK_COMMON, "url": block("url"), **{w: L for w in words(
    "nb_get_retry virtualhost http_protocol enable_sni sni_name fast_recovery tls_compliant")}})

# the block tables: each checker's, then the url block of HTTP_GET / SSL_GET
CHECKER_TABLES: dict[str, dict[str, Spec]] = {
    "TCP_CHECK": table(dict(CHECK_COMMON)),
    "PING_CHECK": table(dict(CHECK_COMMON)),
    "HTTP_GET": _HTTP_GET,
    "url": table({w: L for w in words(
        "path digest status_code virtualhost regex regex_no_match regex_min_offset "
        "regex_max_offset tls_compliant regex_options")}, unsupported="regex_stack"),
    "MISC_CHECK": table({**CHECK_COMMON, "misc_path": Q, "misc_timeout": L,
                         "misc_dynamic": L, "user": L}),
    "DNS_CHECK": table({**CHECK_COMMON, "type": L, "name": L}),
    "SMTP_CHECK": table({**CHECK_COMMON, "helo_name": L}, unsupported_blocks="host"),
    "UDP_CHECK": table({**CHECK_COMMON, **{w: L for w in words(
        "payload require_reply min_reply_length max_reply_length")}}),
    "FILE_CHECK": table({"track_file": L, "weight": L}),
    "BFD_CHECK": table({"name": L, "alpha": L}),
    "SSL_GET": _HTTP_GET,
}

# The checkers whose reading depends on their keywords' words alone (and the real server's
# defaults): no position, script or other block kept in the model, only values. A real server
# of such checkers is read once per distinct body (keywords/lvs.py _real_server).
PLAIN_CHECKERS = frozenset(("TCP_CHECK", "PING_CHECK", "DNS_CHECK", "SMTP_CHECK", "UDP_CHECK"))
PLAIN_CHECKER_KEYWORDS = frozenset(words(
    "connect_ip connect_port bindto bind_port bind_if connect_timeout fwmark retry "
    "delay_before_retry warmup delay_loop alpha log_all_failures rise type name helo_name "
    "payload require_reply min_reply_length max_reply_length"))

# keepalived check_http.c regex_options (PCRE2 compile options) and how lvsd treats them
REGEX_OPTIONS = {"caseless": re.IGNORECASE, "dotall": re.DOTALL, "extended": re.VERBOSE,
                 "multiline": re.MULTILINE}
REGEX_OPTIONS_NOOP = frozenset(words(
    "no_auto_possess no_start_optimize no_dotstar_anchor auto_callout no_auto_capture "
    "never_backslash_c"))
REGEX_OPTIONS_KEEPALIVED = frozenset(words(
    "allow_empty_class alt_bsux dollar_endonly dupnames firstline match_unset_backref never_ucp "
    "never_utf ucp ungreedy utf alt_circumflex alt_verbnames use_offset_limit"))


def regex_flags(options: Iterable[str]) -> re.RegexFlag:
    """Python ``re`` flags for keepalived regex_options lvsd honours."""
    flags = re.RegexFlag(0)
    for o in options:
        flags |= REGEX_OPTIONS.get(o, re.RegexFlag(0))
    return flags


def read_hex(text: str, wildcards: bool) -> tuple[bytes, bytes | None] | None:
    """keepalived ``read_hex_str()`` (lib/parser.c): (data, mask) or None when invalid/empty.

    Hex digits, read two per octet; spaces and tabs separate groups, and a group with an odd
    number of digits ends with a one-digit octet (``1 23`` and ``0123`` are both 01 23).
    With ``wildcards``, an ``x``/``X`` nibble matches anything: its bits are set in the mask
    (None when there is no wildcard).
    """
    data = bytearray()
    mask = bytearray()
    i, n = 0, len(text)

    def nibble(ch: str) -> tuple[int, int] | None:
        if ch in "xX" and wildcards:
            return 0, 0x0F
        v = int(ch, 16) if ch in "0123456789abcdefABCDEF" else -1
        return (v, 0) if v >= 0 else None

    while True:
        while i < n and text[i] in " \t":
            i += 1
        if i >= n:
            break
        first = nibble(text[i])
        i += 1
        if first is None:
            return None
        val, m = first
        if i < n and text[i] != " ":
            second = nibble(text[i])
            i += 1
            if second is None:
                return None
            val, m = val << 4 | second[0], m << 4 | second[1]
        data.append(val)
        mask.append(m)
    if not data:
        return None
    return bytes(data), (bytes(mask) if any(mask) else None)


@dataclass(frozen=True, slots=True)
class RsDefaults:
    """What a checker inherits from its real server (and so from the virtual server)."""

    address: str
    port: int
    alpha: bool
    retry: int | None
    connect_timeout: float
    delay_loop: float
    warmup: float | None
    dbr: float | None
    virtualhost: str | None


class _CheckerKw(TypedDict, total=False):
    """The kind-specific :class:`~lvsd.config.model.Checker` fields a block sets."""

    bindto: str
    bind_port: int
    bind_if: str
    fwmark: int
    log_all_failures: bool
    virtualhost: str
    http_protocol: str
    enable_sni: bool
    sni_name: str
    tls_compliant: bool
    fast_recovery: bool
    misc_path: Script
    misc_timeout: float | None
    misc_dynamic: bool
    dns_type: str
    dns_name: str
    helo_name: str
    payload: bytes
    require_reply: bytes
    require_reply_mask: bytes | None
    min_reply_length: int
    max_reply_length: int
    track_file: str
    file_weight: int
    file_reverse: bool
    track_file_name: str
    bfd_name: str
    rise: int


_HttpFlag = Literal["enable_sni", "fast_recovery", "tls_compliant"]
_HTTP_FLAG: tuple[_HttpFlag, ...] = get_args(_HttpFlag)


class _UrlKw(TypedDict, total=False):
    digest: str
    virtualhost: str
    regex: str
    regex_no_match: bool
    regex_min_offset: int
    regex_max_offset: int
    tls_compliant: bool
    regex_options: tuple[str, ...]


def read_checker(p: Parts, node: Node, d: RsDefaults, rsname: str) -> Checker | None:
    c = p.ctx
    kind = CHECKER_KINDS[node.keyword]
    ctxname = f"{rsname} {node.keyword}"
    kw: _CheckerKw = {}
    user_args: list[str] | None = None  # MISC_CHECK `user` before misc_path: applied at the end
    min_pos: Pos | None = None
    tfile: VrrpTrackFile | None = None
    unsupported: list[Unsupported] = []
    connect_ip, connect_port = d.address, d.port
    retry: int | None = None
    dbr: float | None = None
    dl: float | None = None
    wu: float | None = None
    ct: float | None = None
    alpha: bool | None = None
    urls: list[HttpUrl] = []
    for ch in children(node):
        k = ch.keyword
        if ch.spec is not None and not ch.spec.supported:
            unsupported.append(c.unsupported_kw(ch, ctxname))
            continue
        if k == "connect_ip":
            ip = norm_ip(ch.args[0]) if ch.args else None
            if ip is None:
                c.err(ch.pos, f"Invalid connect_ip address {' '.join(ch.args)} - ignoring")
            else:
                connect_ip = ip
        elif k == "connect_port":
            # check_api.c co_port_handler()
            connect_port = or_(c.uint(ch, 1, 65535, " - Invalid checker connect_port '"
                                      f"{ch.args[0] if ch.args else ''}'"), connect_port)
        elif k == "bindto":
            ip = norm_ip(ch.args[0]) if ch.args else None
            if ip is None:
                c.err(ch.pos, f"Invalid bindto address {' '.join(ch.args)} - ignoring")
            else:
                kw["bindto"] = ip
        elif k == "bind_port":
            if (iv := c.uint(ch, 1, 65535, " - ignoring")) is not None:
                kw["bind_port"] = iv
        elif k == "bind_if":
            if (s := c.arg(ch)) is not None:
                kw["bind_if"] = s
        elif k == "fwmark":
            if (iv := c.uint(ch, 0, IPVS_FWMARK_MAX, " - ignoring")) is not None:
                kw["fwmark"] = iv
        elif k == "connect_timeout":  # check_api.c *_handler() messages
            ct = or_(c.timer_h(ch, "connect_timeout {} invalid - ignoring", 0.000001), ct)
        elif k == "retry":  # check_api.c retry_handler()
            retry = or_(c.uint_h(ch, 0, 2**32 - 1, "Invalid retry connection value '{}'"),
                        retry)
        elif k == "nb_get_retry":
            retry = or_(_nb_get_retry(p, ch, kind), retry)
        elif k == "delay_before_retry":
            dbr = or_(c.timer_h(ch, "Invalid delay_before_retry connection value '{}'"), dbr)
        elif k == "delay_loop":
            dl = or_(c.timer_h(ch, "delay_loop '{}' is invalid - ignoring", 0.000001), dl)
        elif k == "warmup":
            wu = or_(c.timer_h(ch, "Invalid warmup connection value '{}'"), wu)
        elif k == "alpha":
            alpha = c.flag(ch)
        elif k == "log_all_failures":
            if (fv := c.flag(ch)) is not None:
                kw["log_all_failures"] = fv
        elif k == "url":
            u = _url(p, ch)
            if u is not None:
                urls.append(u)
        elif k == "virtualhost" and node.keyword != "url":
            s = c.arg(ch)
            if s is not None:
                kw["virtualhost"] = s
        elif k == "http_protocol":
            s = c.arg(ch)
            if s in ("1.0", "1.1"):
                kw["http_protocol"] = s
            elif s in ("1.0C", "1.0c"):
                kw["http_protocol"] = "1.0C"
            elif s is not None:
                c.err(ch.pos, f"Invalid http_protocol version {s}")
        elif one_of(k, _HTTP_FLAG):
            if (fv := c.flag(ch)) is not None:
                kw[k] = fv
        elif k == "sni_name":
            # keepalived check_http.c: `sni_name NAME` sets the name and enables SNI; a bare
            # `sni_name` enables SNI with the virtual host rule (unless a name was given)
            if ch.args:
                kw["sni_name"] = ch.args[0]
            elif "sni_name" in kw:
                c.err(ch.pos, f"sni_name already specified as {kw['sni_name']} - ignoring "
                      "setting to default")
                continue
            kw["enable_sni"] = True
        elif k == "rise":
            if (iv := c.uint(ch, 1, 2**32 - 1, " - ignoring")) is not None:
                kw["rise"] = iv
        elif k == "misc_path":
            sc = c.script(ch)
            if sc is not None:
                kw["misc_path"] = sc
        elif k == "misc_timeout":
            iv = c.uint(ch, 0, 2**32 // 1000000, " - Invalid misc_timeout value")
            if iv is not None:
                kw["misc_timeout"] = float(iv)
        elif k == "misc_dynamic":
            if (fv := c.flag(ch)) is not None:
                kw["misc_dynamic"] = fv
        elif k == "user":
            mp = kw.get("misc_path")
            if ch.args and mp is not None:
                kw["misc_path"] = replace(mp, user=ch.args[0],
                                          group=ch.args[1] if len(ch.args) > 1 else None)
            elif ch.args:
                user_args = ch.args
        elif k == "type":
            s = (c.arg(ch) or "").upper()
            if s in ("A", "NS", "CNAME", "SOA", "MX", "TXT", "AAAA"):
                kw["dns_type"] = s
            elif ch.args:
                c.err(ch.pos, f"DNS_CHECK type {ch.args[0]} is not valid")
        elif k == "name":
            s = c.arg(ch)
            if s is not None:
                if kind is CheckKind.BFD_CHECK:
                    kw["bfd_name"] = s
                else:
                    kw["dns_name"] = s
        elif k == "helo_name":
            if (s := c.arg(ch)) is not None:
                kw["helo_name"] = s
        elif k == "payload":
            if not ch.args:
                c.err(ch.pos, "UDP_CHECK payload requires a payload")
                continue
            hx = read_hex(" ".join(ch.args), wildcards=False)
            if hx is None:
                c.err(ch.pos, "Invalid hex string for UDP_CHECK payload")
                continue
            kw["payload"] = hx[0]
        elif k == "require_reply":
            # keepalived check_udp.c: a reply is required; with data, the reply must start
            # with it (x/X nibbles are wildcards); without, any reply will do
            kw["require_reply"], kw["require_reply_mask"] = b"", None
            if not ch.args:
                continue
            hx = read_hex(" ".join(ch.args), wildcards=True)
            if hx is None:
                c.err(ch.pos, "Invalid hex string for UDP_CHECK reply")
                continue
            kw["require_reply"], kw["require_reply_mask"] = hx
        elif k in ("min_reply_length", "max_reply_length"):
            what = "min" if k.startswith("min") else "max"
            iv = c.uint(ch, 0, 65535, f" - UDP_CHECK {what} length not valid - must be "
                        "between 0 & 65535")
            if iv is not None and k == "min_reply_length":
                kw["min_reply_length"] = iv
                min_pos = ch.pos
            elif iv is not None:
                kw["max_reply_length"] = iv
        elif k == "track_file":
            s = c.arg(ch)
            if s is None:
                continue
            tf = track_file_by_name(p, s)
            if tf is None:
                c.err(ch.pos, f"track_file {s} not found")
                continue
            kw["track_file"], kw["track_file_name"] = tf.file, tf.name
            tfile = tf
        elif k == "weight":
            # check_file.c: weight -65535..65535 [reverse|noreverse], else the block's
            iv = c.sint(ch, -IPVS_WEIGHT_LIMIT, IPVS_WEIGHT_LIMIT)
            if iv is None:
                continue
            opt = ch.args[1] if len(ch.args) > 1 else "noreverse"
            if opt not in ("reverse", "noreverse"):
                c.err(ch.pos, f"unknown track file weight option {opt} - ignoring")
                continue
            kw["file_weight"], kw["file_reverse"] = iv, opt == "reverse"
    mp = kw.get("misc_path")
    if user_args is not None and mp is not None:
        kw["misc_path"] = replace(mp, user=user_args[0],
                                  group=user_args[1] if len(user_args) > 1 else None)
    # checker-specific validity (keepalived drops these checkers)
    if kind in (CheckKind.HTTP_GET, CheckKind.SSL_GET) and not urls:
        c.err(node.pos, "HTTP/SSL_GET checker has no urls specified - ignoring")
        return None
    if kind is CheckKind.MISC_CHECK and "misc_path" not in kw:
        c.err(node.pos, "No script path has been specified for MISC_CHECKER - skipping")
        return None
    if kind is CheckKind.FILE_CHECK and tfile is None:
        c.err(node.pos, "FILE_CHECK has no track_file specified - ignoring")
        return None
    if tfile is not None and "file_weight" not in kw:
        kw["file_weight"], kw["file_reverse"] = tfile.weight, tfile.weight_reverse
    lo, hi = kw.get("min_reply_length", 0), kw.get("max_reply_length", 255)
    if kind is CheckKind.UDP_CHECK and lo > hi:
        c.err(min_pos or node.pos,
              f"UDP_CHECK min_reply length {lo} > max_reply_length {hi} - will always fail")
    if kind is CheckKind.BFD_CHECK and "bfd_name" not in kw:
        c.err(node.pos, "BFD_CHECK has no name - ignoring")
        return None
    if kind is CheckKind.DNS_CHECK and "dns_name" not in kw:
        kw["dns_name"] = "."
    if kind is CheckKind.SMTP_CHECK and "helo_name" not in kw:
        kw["helo_name"] = "smtpchecker.keepalived.org"
    # inheritance: checker -> real_server -> virtual_server -> per-checker default
    # (tests of identity: hashing an enum member is a Python call, twice per checker)
    default_retry = 3 if kind is CheckKind.DNS_CHECK else 0 if kind is CheckKind.MISC_CHECK else 1
    default_dbr = (3.0 if kind is CheckKind.HTTP_GET or kind is CheckKind.SSL_GET
                   else 0.0 if kind is CheckKind.DNS_CHECK else 1.0)
    dl = dl if dl is not None else d.delay_loop
    if retry is None:
        retry = d.retry if d.retry is not None else default_retry
    if wu is None:
        wu = d.warmup if d.warmup is not None else dl
    if dbr is None:
        dbr = d.dbr if d.dbr is not None else (default_dbr or dl)
    if ct is None:
        ct = d.connect_timeout
    if kind is CheckKind.MISC_CHECK and kw.get("misc_timeout") in (None, 0.0):
        kw["misc_timeout"] = dl
    if urls and d.virtualhost is not None and "virtualhost" not in kw:
        kw["virtualhost"] = d.virtualhost
    return Checker(
        kind=kind,
        pos=node.pos,
        connect_ip=connect_ip,
        connect_port=connect_port,
        connect_timeout=ct,
        retry=retry,
        delay_before_retry=dbr,
        delay_loop=dl,
        warmup=wu,
        alpha=alpha if alpha is not None else d.alpha,
        urls=tuple(urls),
        unsupported=tuple(unsupported),
        **kw,
    )

def _nb_get_retry(p: Parts, ch: Node, kind: CheckKind) -> int | None:
    """``nb_get_retry N``: keepalived's old name for ``retry N``."""
    c = p.ctx
    arg = ch.args[0] if ch.args else ""
    if kind in (CheckKind.HTTP_GET, CheckKind.SSL_GET):
        # check_http.c http_get_retry_handler(): CONFIG_GENERAL_ERROR (not DEPRECATED)
        c.err(ch.pos, "nb_get_retry is deprecated - please use 'retry'")
        return c.uint(ch, 0, 2**32 - 1, f" - Invalid nb_get_retry value '{arg}'")
    # keepalived 2.x: not a keyword of this checker (check_tcp.c etc. do not install it)
    c.err(ch.pos, "Unknown keyword 'nb_get_retry'", DiagKind.UNKNOWN_KEYWORD)
    v = c.uint(ch, 0, 2**32 - 1, f" - Invalid retry connection value '{arg}'")
    if v is not None:
        c.warn(ch.pos, f"lvsd applies nb_get_retry {arg} in {kind.value} as 'retry {v}'; "
               "keepalived 2.x ignores it (its retry stays the checker's default) - write "
               f"'retry {v}'")
    return v

def _url(p: Parts, node: Node) -> HttpUrl | None:
    c = p.ctx
    regex_pos: Pos | None = node.pos
    kw: _UrlKw = {}
    path: str | None = None
    codes: list[StatusCodeRange] = []
    for ch in children(node):
        k = ch.keyword
        if ch.spec is not None and not ch.spec.supported:
            c.unsupported_kw(ch, "url")
            continue
        if k == "path":
            path = or_(c.arg(ch), path)
        elif k == "digest":
            s = c.arg(ch)
            if s is None:
                continue
            if not re.fullmatch(r"[0-9a-fA-F]{32}", s):
                c.err(ch.pos, f"digest '{s}' is not a valid MD5 digest - ignoring")
                continue
            kw["digest"] = s.lower()
        elif k == "status_code":
            for s in ch.args:
                m = re.fullmatch(r"(\d+)(?:-(\d+))?", s)
                lo = int(m.group(1)) if m else 0
                hi = int(m.group(2)) if m and m.group(2) else lo
                if not m or not (100 <= lo <= hi <= 599):
                    c.err(ch.pos, f"Invalid HTTP_GET status code '{s}'")
                    continue
                codes.append(StatusCodeRange(lo, hi))
        elif k == "virtualhost":
            s = c.arg(ch)
            if s is not None:
                kw["virtualhost"] = s
        elif k == "regex":
            s = c.arg(ch)
            if s is not None:
                kw["regex"] = s
                regex_pos = ch.pos
        elif k == "regex_no_match":
            kw["regex_no_match"] = True
        elif k == "regex_options":
            opts = list(kw.get("regex_options", ()))
            for o in ch.args:
                if o in REGEX_OPTIONS:
                    if o not in opts:
                        opts.append(o)
                elif o in REGEX_OPTIONS_NOOP:
                    pass  # tunes PCRE2's matcher, not what matches
                elif o in REGEX_OPTIONS_KEEPALIVED:
                    c.warn(ch.pos, f"regex option '{o}' is not supported by lvsd - ignored")
                else:  # keepalived ignores unknown options silently: an lvsd notice
                    c.warn(ch.pos, f"unknown regex option '{o}' - ignored")
            kw["regex_options"] = tuple(opts)
        elif k == "tls_compliant":
            if (fv := c.flag(ch)) is not None:
                kw["tls_compliant"] = fv
        elif k in ("regex_min_offset", "regex_max_offset"):
            iv = c.uint(ch, 0, 2**31 - 1, " - ignoring")
            if iv is not None and k == "regex_min_offset":
                kw["regex_min_offset"] = iv
            elif iv is not None:
                kw["regex_max_offset"] = iv
    if path is None:
        c.err(node.pos, "HTTP/SSL_GET checker url has no path - ignoring")
        return None
    rx = kw.get("regex")
    if rx is not None:
        try:
            re.compile(rx, regex_flags(kw.get("regex_options", ())))
        except re.error as e:  # keepalived check_http.c: the regex is dropped
            c.err(regex_pos, f"Invalid regex: '{rx}' at offset {e.pos}: {e.msg}")
            del kw["regex"]
    if not codes:
        codes = [StatusCodeRange(200, 299)]
    return HttpUrl(path=path, status_codes=tuple(codes), pos=node.pos, **kw)
