"""Load a keepalived.conf into the typed model: ``load(path)`` / ``loads(text)``.

Theory of operation
-------------------
lexer (files, includes, parameters, conditionals, comments, braces) -> grammar (keyword
tables, blocks) -> keyword handlers (model objects, defaults, inheritance). Every stage
appends :class:`~lvsd.config.model.Diagnostic` objects instead of raising; the result is
always a :class:`~lvsd.config.model.Config`. A missing or unreadable main file is one
FATAL diagnostic; anything unexpected inside the loader (a bug) becomes one FATAL
diagnostic naming the last position read, never a traceback.

Hostile files (devices, FIFOs, sockets, directories, executables, oversized files, include
bombs) are refused by the lexer before anything is read from them (see
:mod:`lvsd.config.lexer` for the limits); a refusal that stops reading (a FATAL from the
lexer) returns the diagnostics up to it and an empty model -- what follows would only be
the noise of a half-read file.

Secrets: every value given to ``auth_pass`` or ``password`` -- found by the lexer on any
line, however malformed, and in the built model -- is replaced by ``<redacted>`` in every
diagnostic message and in the arguments of unsupported keywords before the
:class:`~lvsd.config.model.Config` is returned, whichever stage built the message. Values
of 4 characters or more are redacted wherever they occur; shorter ones only as a whole
word (so a password ``1`` does not blank out every digit).

The config id used by ``@ID`` conditionals defaults to the first label of the host name,
as keepalived's ``-i`` default does.
"""

from __future__ import annotations

import dataclasses
import gc
import os
import re
import socket
from collections.abc import Iterable, Iterator

from lvsd.config.grammar import Parser
from lvsd.config.keywords import TABLES, Builder, Ctx
from lvsd.config.lexer import Lexer, LexState, Line, decode
from lvsd.config.model import Config, DiagKind, Diagnostic, Severity
from lvsd.config.secrets import REDACTED, config_secrets


def default_config_id() -> str:
    try:
        return socket.gethostname().split(".", 1)[0]
    except OSError:  # pragma: no cover - gethostname does not fail on Linux
        return ""


def _secret_pattern(secrets: Iterable[str]) -> re.Pattern[str] | None:
    parts = []
    for s in sorted({s for s in secrets if s}, key=len, reverse=True):
        e = re.escape(s)
        parts.append(e if len(s) >= 4 else rf"(?<![A-Za-z0-9_.:/-]){e}(?![A-Za-z0-9_.:/-])")
    return re.compile("|".join(parts)) if parts else None


def _redacted(config: Config, state: LexState) -> Config:
    """``config`` with every known secret value replaced in messages and unsupported args."""
    secrets = set(state.secrets)
    secrets.update(config_secrets(config))
    pattern = _secret_pattern(secrets)
    if pattern is None:
        return config

    def clean(text: str) -> str:
        return pattern.sub(REDACTED, text)

    diags = tuple(
        dataclasses.replace(d, message=clean(d.message)) if pattern.search(d.message) else d
        for d in config.diagnostics)
    unsupported = tuple(
        dataclasses.replace(u, args=tuple(clean(a) for a in u.args))
        if any(pattern.search(a) for a in u.args) else u
        for u in config.unsupported)
    return dataclasses.replace(config, diagnostics=diags, unsupported=unsupported)


def _run(state: LexState, batches: Iterator[list[Line]], source: str,
         config_id: str) -> Config:
    ctx = Ctx(state.diagnostics)
    builder = Builder(ctx)
    # The model is acyclic; the cyclic GC only rescans the growing heap while loading
    # (halves the time of a 37,000 real server load).
    gc_was_enabled = gc.isenabled()
    gc.disable()
    parser = Parser(TABLES, state)
    try:
        nodes = parser.parse(batches)
        if state.aborted:  # reading stopped at a FATAL: the rest would be noise
            return _redacted(Config(
                source=source, config_id=config_id,
                diagnostics=tuple(state.diagnostics[:state.abort_mark]),
                files=tuple(dict.fromkeys(state.files))), state)
        builder.build(nodes)
        # the keyword tree is garbage now: freed before the collector runs again, so its first
        # pass (over everything allocated while it was off) does not walk it
        del nodes
        builder.finish_vrrp()
    except RecursionError:
        state.diag(parser.last_pos, Severity.FATAL,
                   "configuration nested too deeply - cannot load")
    except Exception as exc:  # the loader must never raise
        state.diag(parser.last_pos, Severity.FATAL,
                   f"internal error while loading the configuration ({type(exc).__name__}: "
                   f"{exc}) - please report this with the file")
    finally:
        if gc_was_enabled:
            if not gc.get_freeze_count():
                # What was allocated while the collector was off (the model, kept) goes straight
                # to the oldest generation: freeze + unfreeze moves every tracked object there
                # without a pass. Otherwise the first young pass after the load walks all of it
                # (0.1-0.3 s for 37,000 real servers). Not when the process keeps a frozen
                # generation (daemon/core.py freezes its running config): unfreeze would undo it.
                gc.freeze()
                gc.unfreeze()
            gc.enable()
    return _redacted(Config(
        source=source,
        config_id=config_id,
        global_defs=builder.global_defs,
        vrrp_scripts=tuple(builder.vrrp_scripts),
        vrrp_track_files=tuple(builder.track_files),
        vrrp_instances=tuple(builder.instances),
        vrrp_sync_groups=tuple(builder.sync_groups),
        virtual_server_groups=tuple(builder.vsgs),
        virtual_servers=tuple(builder.virtual_servers),
        unsupported=tuple(ctx.unsupported),
        diagnostics=tuple(state.diagnostics),
        files=tuple(dict.fromkeys(state.files)),
        bgp_speaker=builder.bgp_speaker,
        bgp_announces=tuple(builder.bgp_announces),
    ), state)


def load(path: str | os.PathLike[str], *, config_id: str | None = None) -> Config:
    """Load ``path`` (and what it includes). Never raises."""
    cid = default_config_id() if config_id is None else config_id
    try:
        spath = os.fspath(path)
    except TypeError as exc:
        return Config(source=repr(path), config_id=cid, diagnostics=(
            Diagnostic(None, Severity.FATAL, f"invalid configuration file name: {exc}"),))
    if not spath or "\x00" in spath:
        return Config(source=repr(spath), config_id=cid, diagnostics=(
            Diagnostic(None, Severity.FATAL, f"invalid configuration file name {spath!r}",
                       DiagKind.FILE_NOT_FOUND),))
    state = LexState(config_id=cid)
    lexer = Lexer(state)  # refuses a missing, non-regular, executable or oversized file
    return _run(state, lexer.batches_from_file(spath, None), spath, cid)


def loads(text: str | bytes, *, name: str = "<string>", config_id: str | None = None,
          base_dir: str = ".") -> Config:
    """Load configuration text; includes resolve relative to ``base_dir``. Never raises."""
    cid = default_config_id() if config_id is None else config_id
    state = LexState(config_id=cid)
    lexer = Lexer(state)
    if isinstance(text, bytes):
        text = decode(text, name, state)
    return _run(state, lexer.batches_from_text(text, name, base_dir), name, cid)
