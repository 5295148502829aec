"""What VRRP instances track: ``vrrp_script``, ``vrrp_track_file`` / ``track_file``,
``vrrp_track_process`` and the references to them (keepalived vrrp_parser.c, vrrp_track.c,
track_file.c).

Theory of operation
-------------------
Each top-level tracking block has its table (:data:`VRRP_SCRIPT_TABLE`,
:data:`TRACK_FILE_TABLE`, :data:`TRACK_PROCESS_TABLE`) and a reader that appends one model
object to :class:`~lvsd.config.keywords.common.Parts` (a duplicate name is reported and the
second block ignored, as keepalived does). An instance's or sync group's ``track_script`` /
``track_file`` / ``track_interface`` lines become :class:`~lvsd.config.model.TrackRef`
(:func:`track_refs`, checked against the definitions once the whole file is read);
``track_process`` lines are kept as lines and resolved at the end by
:func:`track_process_refs`, since a ``vrrp_track_process`` may follow the instance naming it.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace
from typing import TypedDict

from lvsd.config.grammar import Node
from lvsd.config.keywords.common import L, Parts, Q, children, table, words
from lvsd.config.lexer import Line, split_quoted
from lvsd.config.model import (
    Script,
    TrackProcessRef,
    TrackRef,
    VrrpScript,
    VrrpTrackFile,
    VrrpTrackProcess,
)

VRRP_SCRIPT_TABLE = table({"script": Q, **{w: L for w in words(
    "interval timeout weight rise fall user init_fail")}})
TRACK_FILE_TABLE = table({w: L for w in words("file weight init_file")})
# keepalived vrrp_parser.c vrrp_tprocess_*_handler
TRACK_PROCESS_TABLE = table({"process": Q, **{w: L for w in words(
    "param_match weight quorum quorum_max delay terminate_delay fork_delay full_command")}})


class _ScriptKw(TypedDict, total=False):
    interval: float
    timeout: float
    weight: int
    weight_reverse: bool
    rise: int
    fall: int
    user: str
    init_fail: bool


def read_vrrp_script(p: Parts, node: Node) -> None:
    """``vrrp_script NAME { ... }`` (vrrp_parser.c vrrp_vscript_*_handler)."""
    c = p.ctx
    name = c.block_name(node, "vrrp_script")
    if name is None:
        return
    if any(s.name == name for s in p.vrrp_scripts):
        c.err(node.pos, f"vrrp_script {name} already defined - ignoring")
        return
    script: Script | None = None
    kw: _ScriptKw = {}
    for ch in children(node):
        k = ch.keyword
        if k == "script":
            script = c.script(ch)
        elif k == "interval":
            if (tv := c.timer(ch, 0.001, 2**32 / 1000)) is not None:
                kw["interval"] = tv
        elif k == "timeout":
            if (tv := c.timer(ch, 0.001, 2**32 / 1000)) is not None:
                kw["timeout"] = tv
        elif k == "weight":
            iv = c.sint(ch, -253, 253)
            if iv is not None:
                kw["weight"] = iv
                if len(ch.args) > 1 and ch.args[1] == "reverse":
                    kw["weight_reverse"] = True
        elif k in ("rise", "fall"):
            if (iv := c.uint(ch, 1, 2**31 - 1, " - ignoring")) is not None:
                if k == "rise":
                    kw["rise"] = iv
                else:
                    kw["fall"] = iv
        elif k == "user":
            if ch.args:
                kw["user"] = ch.args[0]
        elif k == "init_fail":
            kw["init_fail"] = True
    if script is None:  # vrrp_parser.c vrrp_vscript_end_handler(), at the block's '}'
        c.err(node.end_pos or node.pos, f"No script set for vrrp_script {name} - removing")
        return
    vs = VrrpScript(name=name, script=script, pos=node.pos, **kw)
    if vs.timeout is None:  # keepalived: a timeout of 0 means the interval
        vs = replace(vs, timeout=vs.interval)
    p.vrrp_scripts.append(vs)


class _TrackProcessKw(TypedDict, total=False):
    params: tuple[str, ...]
    param_match: str
    full_command: bool
    weight: int
    weight_reverse: bool
    quorum: int
    quorum_max: int
    terminate_delay: float
    fork_delay: float


def read_track_process(p: Parts, node: Node) -> None:
    """``vrrp_track_process`` (keepalived vrrp_parser.c vrrp_tprocess_*_handler)."""
    c = p.ctx
    name = c.block_name(node, "vrrp_track_process")
    if name is None:
        return
    if any(t.name == name for t in p.track_processes):
        c.err(node.pos, f"vrrp_track_process {name} already defined - ignoring")
        return
    kw: _TrackProcessKw = {}
    path: str | None = None
    weight_set = False
    for ch in children(node):
        k = ch.keyword
        if k == "process":
            toks, _ = split_quoted(ch.raw[len(k):].strip())
            if not toks:
                c.arg(ch)
                continue
            if path is not None:
                c.err(ch.pos, f"Process already set for track process {name} - ignoring "
                      f"{toks[0]}")
                continue
            path = toks[0]
            if len(toks) > 1:
                kw["params"] = tuple(toks[1:])
                kw.setdefault("param_match", "exact")
                kw["full_command"] = True
        elif k == "param_match":
            if not ch.args:
                kw["param_match"] = "exact"
            elif ch.args[0] in ("initial", "partial"):
                kw["param_match"] = ch.args[0]
            else:
                c.err(ch.pos, f"Invalid param_match type {ch.args[0]} - ignoring")
                continue
            kw["full_command"] = True
        elif k == "weight":
            if not ch.args:
                c.err(ch.pos, f"No weight specified for track process {name} - ignoring")
                continue
            if weight_set:
                c.err(ch.pos, f"Weight already set for track process {name} - ignoring "
                      f"{ch.args[0]}")
                continue
            wv = c.read_num(ch.pos, ch.args[0], -254, 254, "int")
            if wv is None:
                c.err(ch.pos, f"Weight ({ch.args[0]}) for vrrp_track_process {name} must "
                      "be between [-254..254] inclusive. Ignoring...")
                continue
            w = int(wv)
            if len(ch.args) > 1:
                if ch.args[1] == "reverse":
                    kw["weight_reverse"] = True
                else:
                    c.err(ch.pos, f"vrrp_track_process {name} unknown weight option "
                          f"{ch.args[1]}")
            kw["weight"] = w
            weight_set = w != 0  # keepalived tests the value: a 0 may be set again
        elif k in ("quorum", "quorum_max"):
            lo = 1 if k == "quorum" else 0
            qv = c.read_num(ch.pos, ch.args[0], lo, 65535, "unsigned") if ch.args \
                else c.arg(ch)
            if not isinstance(qv, int):
                label = "Quorum" if k == "quorum" else "quorum_max"
                c.err(ch.pos, f"{label} ({ch.args[0] if ch.args else ''}) for "
                      f"vrrp_track_process {name} must be between [{lo}..65535] "
                      "inclusive. Ignoring...")
                continue
            q = qv
            quorum = kw.get("quorum", 1)
            qmax = kw.get("quorum_max")
            if k == "quorum":
                if qmax is not None and q > qmax:
                    c.err(ch.pos, "Quorum is greater than quorum_max - ignoring")
                    continue
                kw["quorum"] = q
            else:
                # keepalived: quorum_max 0 is allowed when quorum is not set above 1
                if (q or quorum > 1) and q < quorum:
                    c.err(ch.pos, "quorum_max is less than quorum - ignoring")
                    continue
                kw["quorum_max"] = q
                if q == 0:
                    kw["quorum"] = 0
                elif not quorum:
                    kw["quorum"] = 1
        elif k in ("delay", "terminate_delay", "fork_delay"):
            s = ch.args[0] if ch.args else ""
            dv = c.read_num(ch.pos, s, 0.000001, 3600, "decimal")
            if dv is None:
                prefix = "" if k == "delay" else k[:-5]
                c.err(ch.pos, f"{prefix}delay ({s}) for vrrp_track_process {name} must be "
                      "between [0.000001..3600] inclusive. Ignoring...")
                continue
            if k != "fork_delay":
                kw["terminate_delay"] = float(dv)
            if k != "terminate_delay":
                kw["fork_delay"] = float(dv)
        elif k == "full_command":
            kw["full_command"] = True
    if path is None:
        # keepalived vrrp_tprocess_end_handler runs at the closing brace
        c.err(node.end_pos or node.pos, f"track process '{name}' process name not specified")
        return
    p.track_processes.append(VrrpTrackProcess(name=name, process=path, pos=node.pos, **kw))


def track_process_refs(p: Parts, owner: str, lines: list[Line]) -> tuple[TrackProcessRef, ...]:
    """``track_process { NAME [weight W [reverse|noreverse]] }`` (keepalived vrrp_track.c
    alloc_track_process)."""
    c = p.ctx
    defs = {t.name: t for t in p.track_processes}
    out: list[TrackProcessRef] = []
    for ln in lines:
        t = ln.tokens
        tp = defs.get(t[0])
        if tp is None:
            c.err(ln.pos, f"({owner}) track process {t[0]} not found, ignoring...")
            continue
        if any(r.name == t[0] for r in out):
            c.err(ln.pos, f"({owner}) duplicate track_process {t[0]} - ignoring")
            continue
        weight, reverse = tp.weight, tp.weight_reverse
        if len(t) >= 2:
            if t[1] != "weight":
                c.err(ln.pos, f"({owner}) unknown track process option {t[1]} - ignoring")
                continue
            if len(t) == 2:
                c.err(ln.pos, f"({owner}) weight without value specified for track process "
                      f"{t[0]} - ignoring")
                continue
            wv = c.read_num(ln.pos, t[2], -254, 254, "int")
            if wv is None:
                c.err(ln.pos, f"({owner}) weight for track process {t[0]} must be in "
                      "[-254..254] inclusive. Ignoring...")
            weight = tp.weight if wv is None else int(wv)
            if len(t) >= 4:
                if t[3] in ("reverse", "noreverse"):
                    reverse = t[3] == "reverse"
                else:
                    c.err(ln.pos, f"({owner}) unknown track_process {t[0]} weight option "
                          f"{t[3]} - ignoring")
        out.append(TrackProcessRef(t[0], weight, reverse, tp, ln.pos))
    return tuple(out)


def read_track_file(p: Parts, node: Node) -> None:
    """``vrrp_track_file NAME`` / ``track_file NAME`` (keepalived track_file.c)."""
    c = p.ctx
    name = c.block_name(node, node.keyword)
    if name is None:
        return
    path: str | None = None
    weight = 1
    reverse = False
    init: int | None = None
    for ch in children(node):
        if ch.keyword == "file":
            path = c.arg(ch)
        elif ch.keyword == "weight":
            iv = c.sint(ch, -254, 254)
            if iv is not None:
                weight = iv
            if len(ch.args) > 1:  # track_file.c: `weight N reverse`
                if ch.args[1] == "reverse":
                    reverse = True
                else:
                    c.err(ch.pos, f"track_file {name} unknown weight option {ch.args[1]}")
        elif ch.keyword == "init_file":
            init = 0
            if ch.args:
                with contextlib.suppress(ValueError):
                    init = int(ch.args[0])
    if path is None:
        c.err(node.pos, f"No file set for track_file {name} - ignoring")
        return
    p.track_files.append(VrrpTrackFile(name, path, weight, init, node.pos,
                                       weight_reverse=reverse))


def track_file_by_name(p: Parts, name: str) -> VrrpTrackFile | None:
    for t in p.track_files:
        if t.name == name:
            return t
    return None


def track_refs(p: Parts, ch: Node, owner: str) -> tuple[TrackRef, ...]:
    """``track_interface`` / ``track_script`` / ``track_file`` lines: ``NAME [weight W
    [reverse]]``."""
    out: list[TrackRef] = []
    for ln in ch.values or []:
        name = ln.tokens[0]
        weight: int | None = None
        reverse = False
        if len(ln.tokens) >= 3 and ln.tokens[1] == "weight":
            try:
                weight = int(ln.tokens[2])
                if not -254 <= weight <= 254:
                    raise ValueError
            except ValueError:
                p.ctx.err(ln.pos, f"({owner}) {ch.keyword} {name}: weight "
                          f"'{ln.tokens[2]}' invalid - ignoring weight")
                weight = None
            reverse = len(ln.tokens) >= 4 and ln.tokens[3] == "reverse"
        elif len(ln.tokens) > 1:
            p.ctx.err(ln.pos, f"({owner}) {ch.keyword} {name}: unknown option "
                      f"'{ln.tokens[1]}'")
        out.append(TrackRef(name, weight, reverse, ln.pos))
    return tuple(out)
