"""keepalived.conf lexer: files -> logical lines of tokens, a list of lines at a time.

Theory of operation
-------------------
This mirrors keepalived's ``lib/parser.c`` ``read_line()`` / ``decomment()`` /
``alloc_strvec_r()`` (2.x), re-implemented from its behaviour, in this order for each
physical line:

0. physical lines end at ``\\n`` only, as keepalived's ``fgets()`` does; trailing ``\\r``
   characters go (CRLF files). U+0085, U+2028, U+2029, ``\\f``, ``\\v`` and ``\\x1c``-``\\x1e``
   inside a line stay part of it (``str.splitlines`` would break there, turning the rest of
   a GBK or latin-1 comment into config and shifting every later line number);
1. decode (UTF-8; on failure latin-1 with one warning per file), strip CR/LF; a
   non-breaking space (U+00A0) is treated as whitespace with one warning per file
   (keepalived would take it as part of a keyword and report ``Unknown keyword``);
2. ``decomment``: leading blanks go, ``#`` and ``!`` outside ``"..."`` start a comment
   (``\\#`` / ``\\!`` escape them), trailing blanks go, a trailing ``\\`` is kept;
3. multi-line ``$NAME=VALUE \\`` definitions swallow continuation lines;
4. ``@ID line`` keeps ``line`` only when the config id is ``ID``; ``@^ID line`` only when
   it is not;
5. ``$NAME=VALUE`` defines a parameter; ``$NAME`` / ``${NAME}`` are replaced when defined
   (undefined ones stay literal, as in keepalived); multi-line values expand to lines;
6. ``include``/``includer``/``includem``/``includew``/``includeb``/``includea FILE``: glob
   and ``{a,b}`` brace expansion relative to the including file's directory; the matched
   files are read in sorted order in place of the line. A plain ``include`` that matches
   nothing is a warning (keepalived: ``No config files matched``); the ``r``/``a`` etc.
   variants make it an error, as keepalived's ``include_check`` does;
7. ``{`` and ``}`` outside quotes split the line: every brace becomes its own logical
   line, exactly as keepalived's ``line_residue`` handling does (so ``track_script{``,
   ``url { path / }`` and ``}}`` all work).

Tokens are whitespace separated; ``"..."`` is one token (without the quotes), an
unmatched ``"`` reports ``Unmatched quote`` and drops the rest of the line. Each logical
line keeps its raw text so script keywords can re-tokenise it with ``'...'`` quoting.

Cost
----
A large generated file (37,000 real servers, 314,000 lines) is mostly plain lines: words and
braces. Facts about the whole text (ASCII, no quote, comment, escape or parameter anywhere) let
such a line be read with ``str.strip``/``str.split`` alone; identical lines share their tokens;
the lines go to the grammar as one list per slice of text (``batches_from_*``), never one
generator step per line, and a :class:`Line` keeps its file and line number, building its
:class:`~lvsd.config.model.Pos` only when one is asked for. A list is handed on before any line
whose reading may add a diagnostic, so messages keep the order of a line-at-a-time reading.

Hostile files
-------------
Every file (the main one and each include) is ``stat()``-ed before it is opened and must be
a regular, non-executable file, as keepalived's ``check_glob_file()`` demands (lib/parser.c);
it is then opened ``O_NONBLOCK`` (a FIFO swapped in after the ``stat`` cannot block) and the
opened descriptor is ``fstat()``-ed again, so a device, FIFO, socket or directory is never
read. Refusals use keepalived's words: ``Configuration file 'F/' is a directory - skipping``,
``Configuration file 'F' is not a regular non-executable file - skipping``. For the main file
they are FATAL (keepalived exits); for an include they are what keepalived's
``file_config_error(INCLUDE_R, ...)`` makes them: with ``includer``/``m``/``w``/``b``/``a``
FATAL (``config_file_error`` is set and keepalived exits), with plain ``include`` an ERROR
(keepalived logs it and runs without the file) -- a directory matched by a plain ``include``
is only a WARNING (``conf.d/*`` matching a sub-directory is common and harmless).

Files are read in 1 MiB chunks, never with an unbounded ``read()``. lvsd-only limits (keepalived
has none; each is FATAL and stops reading at once, the diagnostics that follow are dropped):

* ``MAX_FILE_BYTES`` = 64 MiB per file (the ``stat`` size is checked before reading too);
* ``MAX_TOTAL_BYTES`` = 256 MiB over all files read, counting a file each time it is included;
* ``MAX_FILES`` = 10,000 files read (each inclusion counts);
* ``MAX_INCLUDE_DEPTH`` = 32 nested includes;
* ``MAX_MATCHES`` = 100,000 paths from all include patterns (brace expansions and glob
  matches) together.

A file that includes itself (directly or through others) is skipped with an ERROR.

Secrets
-------
``auth_pass`` and ``password`` values (:data:`lvsd.config.secrets.SECRET_KEYWORDS`) never
appear in a message: the lexer's own messages
that quote a line (``Unterminated quote``, ``Unmatched quote``) show ``auth_pass <redacted>``
instead, and every value given to those keywords is collected in :attr:`LexState.secrets`
(also from malformed lines) so the loader can redact it from every other diagnostic.
"""

from __future__ import annotations

import glob
import itertools
import os
import re
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from lvsd.config.model import DiagKind, Diagnostic, Pos, Severity
from lvsd.config.secrets import REDACTED, SECRET_KEYWORDS, secret_words

# a secret keyword, also one run into what follows it (secrets.secret_keyword), starts so
_SECRET_PREFIXES = tuple(SECRET_KEYWORDS)
_SECRET_INITIALS = frozenset(kw[0] for kw in SECRET_KEYWORDS)

MAX_INCLUDE_DEPTH = 32
MAX_FILES = 10_000
MAX_FILE_BYTES = 64 << 20
MAX_TOTAL_BYTES = 256 << 20
MAX_MATCHES = 100_000
_CHUNK = 1 << 20  # read size, and the slice of text split into lines at a time
_WS = " \t\f\v\r\n"
_DEF_RE = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)[ \t]*=")
_REF_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")
_INCLUDE_RE = re.compile(r"^include([rmwba]?)[ \t]+(.*)$")
_SPECIAL_RE = re.compile(r'[!#"\\]')
# what makes a line more than words and braces (with a leading @, ~ or include): quotes,
# comments, escapes, parameters
_PLAIN_SPECIAL_RE = re.compile(r'[!#"\\$]')
_WORD_RE = re.compile(r"[^ \t\f\v\r\n]+")
_BRACE_SPLIT_RE = re.compile(r"[ \t]*([{}])[ \t]*")
# what keeps a text off the plain-line path (see Lexer.batches_from_text): whitespace that
# str.split() and _WORD_RE treat differently or that makes a line blank, NUL, and a '\r'
# that read_line() would not strip (not at a line end). Looked for with `in` (a fast scan
# of a big file; a character class search of the regex engine is 20 times slower).
_SLOW_CHARS = "\x00\f\v\x1c\x1d\x1e\x1f"
_LONE_CR_RE = re.compile(r"\r(?![\r\n]|\Z)")
_PLAIN_SPECIALS = '!#"\\$'  # _PLAIN_SPECIAL_RE's characters
# distinct plain lines whose tokens are kept for the next identical line (a generated file
# repeats most of its lines: ``weight 1``, ``retry 3``)
_SEEN_MAX = 1 << 16


@dataclass(slots=True)
class Line:
    """One logical line: tokens (quotes removed), raw text and where it is: ``file`` (the
    same string object for every line of one reading of a file) and ``lineno``; :attr:`pos`
    builds the :class:`Pos` when asked (most lines of a big file are never asked)."""

    tokens: list[str]
    raw: str
    file: str
    lineno: int

    @property
    def pos(self) -> Pos:
        return Pos(self.file, self.lineno)

    @property
    def word(self) -> str:
        return self.tokens[0] if self.tokens else ""


@dataclass
class LexState:
    config_id: str | None
    diagnostics: list[Diagnostic] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    defs: dict[str, list[str]] = field(default_factory=dict)
    block_depth: int = 0
    # values given to auth_pass / password anywhere (also on malformed lines): redact them
    secrets: set[str] = field(default_factory=set)
    secret_next: bool = False  # a secret keyword without a value: the next words are secret
    # set by a FATAL that stops reading: diagnostics[:abort_mark] are the meaningful ones
    aborted: bool = False
    abort_mark: int = 0
    # the decommented text of each physical line starting with "~" (``~SEQ``), before the
    # split at braces, by position: see :meth:`line_text`
    tilde_lines: dict[Pos, str] = field(default_factory=dict)
    # some text read has ``~SEQ`` in it: the grammar looks for ~SEQ lines to expand
    seq_lines: bool = False
    # how to re-read a configuration file (bounded, regular files only); tests may replace it
    read_file: Callable[[str], bytes] | None = field(default_factory=lambda: read_config_bytes)

    def line_text(self, pos: Pos) -> str | None:
        """The decommented physical line at ``pos`` if it starts with ``~`` (a ``~SEQ`` line,
        before the lexer split it at braces); None otherwise."""
        return self.tilde_lines.get(pos)

    def diag(self, pos: Pos | None, sev: Severity, msg: str,
             kind: DiagKind = DiagKind.GENERAL) -> None:
        self.diagnostics.append(Diagnostic(pos, sev, msg, kind))

    def abort(self, pos: Pos | None, msg: str, kind: DiagKind = DiagKind.FATAL) -> None:
        """One FATAL diagnostic, then nothing more is read."""
        self.diag(pos, Severity.FATAL, msg, kind)
        if not self.aborted:
            self.aborted = True
            self.abort_mark = len(self.diagnostics)

    def note_secret(self, value: str) -> None:
        """Remember a secret value (and its quote-stripped words) for redaction."""
        value = value.strip(_WS)
        if not value:
            return
        self.secrets.add(value)
        bare = value.translate(_UNQUOTE)
        self.secrets.add(bare.strip(_WS))
        self.secrets.update(_WORD_RE.findall(bare))
        self.secrets.discard("")


_UNQUOTE = str.maketrans({'"': " ", "'": " ", "{": " ", "}": " "})
_SECRET_LINE_RE = re.compile(
    r"^(?P<pre>(?:@\^?[^ \t]*[ \t]+)?[ \t]*)(?P<kw>"
    + "|".join(sorted(map(re.escape, SECRET_KEYWORDS))) + r")(?=[ \t\f\v\r\"]|$)"
    r"(?P<rest>.*)$", re.DOTALL)


def redact_line(text: str, state: LexState) -> str:
    """``text`` as it may be shown in a message: a secret keyword's value is replaced by
    ``<redacted>`` (and remembered in ``state.secrets``); any other line is unchanged."""
    if not any(kw in text for kw in SECRET_KEYWORDS):
        return text
    m = _SECRET_LINE_RE.match(text)
    if m is None:
        return text
    state.note_secret(m.group("rest"))
    return f"{m.group('pre')}{m.group('kw')} {REDACTED}"


def physical_chunks(text: str) -> Iterator[list[str]]:
    """Split ``text`` at ``\\n`` only (keepalived's ``fgets()``), one list of lines per slice.

    Unlike ``str.splitlines`` this keeps U+0085, U+2028, U+2029, ``\\f``, ``\\v`` and
    ``\\x1c``-``\\x1e`` inside the line, and never holds more than about ``_CHUNK`` characters
    of split lines at once (a file of newlines does not become a list of millions).
    """
    n = len(text)
    start = 0
    while start < n:
        nl = text.find("\n", start + _CHUNK) if start + _CHUNK < n else -1
        if nl < 0:  # the last slice: a final newline ends the last line, it starts none
            chunk = text[start:-1] if text.endswith("\n") else text[start:]
            start = n
        else:
            chunk = text[start:nl]
            start = nl + 1
        yield chunk.split("\n")


def decode(data: bytes | bytearray, name: str, state: LexState) -> str:
    """UTF-8, else latin-1 (every byte maps) with a warning naming the first bad byte."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        state.diag(
            Pos(name, line),
            Severity.WARNING,
            f"file is not valid UTF-8 (byte 0x{data[exc.start]:02x}); read as latin-1",
        )
        text = data.decode("latin-1")
    if text.startswith("\ufeff"):
        text = text[1:]
    return text


def decomment(s: str) -> tuple[str, bool]:
    """keepalived's decomment(): returns (text, unterminated_quote)."""
    s = s.lstrip(" \t")
    if _SPECIAL_RE.search(s) is None:  # fast path: nothing to interpret
        return s.rstrip(" \t"), False
    out: list[str] = []
    quote = False
    i = 0
    n = len(s)
    cont = False
    while i < n:
        c = s[i]
        if c == '"':
            quote = not quote
            out.append(c)
        elif c == "\\":
            if i + 1 < n:
                if not quote and s[i + 1] in "#!":
                    out.append(s[i + 1])
                else:
                    out.append(s[i : i + 2])
                i += 2
                continue
            cont = True
            break
        elif not quote and c in "#!":
            break
        else:
            out.append(c)
        i += 1
    text = "".join(out).rstrip(" \t")
    if cont:
        text += "\\"
    return text, quote


def split_tokens(text: str) -> tuple[list[str], bool]:
    """keepalived's alloc_strvec_r(): returns (tokens, unmatched_quote)."""
    if '"' not in text:
        return _WORD_RE.findall(text), False
    toks: list[str] = []
    i = 0
    n = len(text)
    while True:
        while i < n and text[i] in _WS:
            i += 1
        if i >= n:
            break
        if text[i] == '"':
            j = text.find('"', i + 1)
            if j < 0:
                return toks, True
            toks.append(text[i + 1 : j])
            i = j + 1
        else:
            j = i
            while j < n and text[j] not in _WS and text[j] != '"':
                j += 1
            toks.append(text[i:j])
            i = j
    return toks, False


def split_quoted(text: str) -> tuple[list[str], bool]:
    """Tokenise a script line: ``"..."`` and ``'...'`` quoting, backslash escapes."""
    toks: list[str] = []
    cur: list[str] = []
    have = False
    quote = ""
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if quote:
            if c == quote:
                quote = ""
            elif c == "\\" and quote == '"' and i + 1 < n:
                i += 1
                cur.append(text[i])
            else:
                cur.append(c)
        elif c in "\"'":
            quote = c
            have = True
        elif c == "\\" and i + 1 < n:
            i += 1
            cur.append(text[i])
            have = True
        elif c in _WS:
            if have:
                toks.append("".join(cur))
                cur = []
                have = False
        else:
            cur.append(c)
            have = True
        i += 1
    if have or quote:
        toks.append("".join(cur))
    return toks, bool(quote)


class TooManyMatches(ValueError):
    """An include pattern expands to more than the allowed number of paths."""


def brace_expand(pattern: str, limit: int | None = None) -> list[str]:
    """Shell-style ``{a,b}`` expansion (nested, left to right).

    With ``limit``, raises :class:`TooManyMatches` as soon as more than ``limit`` patterns
    would result (``{a,b}{a,b}...`` doubles with each group).
    """
    depth = 0
    start = -1
    for i, c in enumerate(pattern):
        if c == "{":
            if depth == 0:
                start = i
            depth += 1
        elif c == "}" and depth > 0:
            depth -= 1
            if depth == 0:
                body = pattern[start + 1 : i]
                parts: list[str] = []
                d = 0
                last = 0
                for j, ch in enumerate(body):
                    if ch == "{":
                        d += 1
                    elif ch == "}":
                        d -= 1
                    elif ch == "," and d == 0:
                        parts.append(body[last:j])
                        last = j + 1
                parts.append(body[last:])
                if len(parts) == 1:
                    return [pattern]
                pre, post = pattern[:start], pattern[i + 1 :]
                out: list[str] = []
                for p in parts:
                    out.extend(brace_expand(pre + p + post, limit))
                    if limit is not None and len(out) > limit:
                        raise TooManyMatches(pattern)
                return out
    return [pattern]


def _split_braces(text: str) -> list[str]:
    """Split a decommented line at ``{`` / ``}`` outside quotes (keepalived line_residue)."""
    if "{" not in text and "}" not in text:
        return [text] if text else []
    if '"' not in text:
        return [p for p in _BRACE_SPLIT_RE.split(text) if p]
    pieces: list[str] = []
    rest = text
    while rest:
        pos = -1
        i = 0
        n = len(rest)
        while i < n:
            c = rest[i]
            if c == '"':
                j = rest.find('"', i + 1)
                if j < 0:
                    break
                i = j + 1
                continue
            if c in "{}":
                pos = i
                break
            i += 1
        if pos < 0:
            pieces.append(rest.rstrip(" \t"))
            break
        if pos == 0:
            pieces.append(rest[0])
            rest = rest[1:].lstrip(" \t")
        else:
            pieces.append(rest[:pos].rstrip(" \t"))
            rest = rest[pos:]
    return [p for p in pieces if p]


class _Refused(Exception):
    """A file that must not be read: the message (keepalived's words) and its nature."""

    def __init__(self, message: str, *, directory: bool = False, limit: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.directory = directory
        self.limit = limit


def _is_exec(mode: int) -> bool:
    return bool(mode & (stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH))


def read_regular_file(path: str, limit: int = MAX_FILE_BYTES,
                      st: os.stat_result | None = None) -> tuple[bytearray, os.stat_result]:
    """Read a regular, non-executable file of at most ``limit`` bytes without ever blocking on
    it or reading more than ``limit + 1`` bytes. Raises :class:`_Refused` or ``OSError``
    (``st``: the file's ``os.stat()`` when the caller has it already).

    keepalived's check_glob_file() (lib/parser.c) stat()s each file before fopen(): a directory
    is "is a directory - skipping", anything else that is not a regular non-executable file is
    "is not a regular non-executable file - skipping". lvsd also opens O_NONBLOCK and checks the
    opened descriptor, so a FIFO swapped in between the stat and the open cannot hang it.
    """
    not_regular = f"Configuration file '{path}' is not a regular non-executable file - skipping"
    if st is None:
        try:
            st = os.stat(path)
        except OSError:  # keepalived: stat() failing is "not a regular ... file" too
            raise _Refused(not_regular) from None
    if stat.S_ISDIR(st.st_mode):
        # keepalived's glob(GLOB_MARK) shows a directory with its trailing '/'
        shown = path if path.endswith("/") else path + "/"
        raise _Refused(f"Configuration file '{shown}' is a directory - skipping", directory=True)
    if not stat.S_ISREG(st.st_mode) or _is_exec(st.st_mode):
        raise _Refused(not_regular)
    if st.st_size > limit:
        raise _Refused("", limit=True)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        fst = os.fstat(fd)
        if (not stat.S_ISREG(fst.st_mode) or _is_exec(fst.st_mode)
                or (fst.st_dev, fst.st_ino) != (st.st_dev, st.st_ino)):
            raise _Refused(not_regular)  # replaced between stat() and open()
        data = bytearray()
        while True:
            chunk = os.read(fd, min(_CHUNK, limit + 1 - len(data)))
            if not chunk:
                break
            data += chunk
            if len(data) > limit:
                raise _Refused("", limit=True)  # grew after the stat
    finally:
        os.close(fd)
    return data, fst


def read_config_bytes(path: str) -> bytes:
    """:func:`read_regular_file` for callers that only know ``OSError``: a refused file
    (not regular, executable, bigger than ``MAX_FILE_BYTES``) raises ``OSError`` too."""
    try:
        return bytes(read_regular_file(path)[0])
    except _Refused as exc:
        raise OSError(exc.message or f"{path}: bigger than {_mib(MAX_FILE_BYTES)}") from None


def _mib(n: int) -> str:
    return f"{n >> 20} MiB"


class Lexer:
    """Yields logical :class:`Line` objects for a main file (and everything it includes)."""

    def __init__(self, state: LexState) -> None:
        self.state = state
        self._warned_nbsp: set[str] = set()
        self._stack: list[tuple[int, int]] = []  # (dev, inode) of the files being read
        self._reads = 0  # files read, each inclusion counted
        self._bytes = 0  # bytes read over all files
        self._matches = 0  # paths produced by include patterns
        self._seen: dict[str, list[str]] = {}  # the tokens of plain lines read (_SEEN_MAX)

    # ---------------------------------------------------------------- file level

    def batches_from_text(self, text: str, name: str, base_dir: str,
                          depth: int = 0) -> Iterator[list[Line]]:
        """The logical lines of ``text``, a list at a time: a run of plain lines (see below)
        comes as one list, every other physical line's lines as a list of their own, and a
        list is handed on before any line whose reading may add a diagnostic, so the reader
        of the lines (the grammar) adds its diagnostics in the same order as if it took one
        line at a time."""
        st = self.state
        multiline: list[str] | None = None
        # Facts about the whole text that let the common line skip most per-line work: no
        # NUL, odd whitespace or non-ASCII anywhere, and a '\r' only at line ends. Then
        # str.split() tokenises exactly as _WORD_RE does, and a line without a character
        # the lexer interprets (_NOT_PLAIN_RE) needs neither decomment() nor the parameter,
        # conditional and include handling: _plain_pieces() gives what _pieces() would.
        plain_text = (text.isascii() and not any(ch in text for ch in _SLOW_CHARS)
                      and ("\r" not in text or _LONE_CR_RE.search(text) is None))
        # ... and when no line has one of those characters, no line needs the search
        no_specials = plain_text and not any(ch in text for ch in _PLAIN_SPECIALS)
        # keepalived's read_line() drops trailing '\r's, then decomment() blanks: with '\r'
        # only at line ends (plain_text), one strip() does both
        blanks = " \t\r" if "\r" in text else " \t"
        if "~SEQ" in text:
            st.seq_lines = True
        batch: list[Line] = []
        add = batch.append
        lineno = 0
        seen = self._seen
        for chunk in physical_chunks(text):
            for physical in chunk:
                lineno += 1
                if plain_text and multiline is None:
                    buf = physical.strip(blanks)
                    if not buf:
                        continue
                    c0 = buf[0]
                    if c0 == "#" or c0 == "!":  # a comment line
                        continue
                    if ((no_specials or _PLAIN_SPECIAL_RE.search(buf) is None) and c0 != "@"
                            and c0 != "~" and not (c0 == "i" and buf.startswith("include"))):
                        if "{" not in buf and "}" not in buf:
                            # _plain_pieces() without braces, inline; a line seen before
                            # shares its words (nothing changes a line's tokens)
                            toks = seen.get(buf)
                            if toks is None:
                                toks = buf.split()
                                if len(seen) < _SEEN_MAX:
                                    seen[buf] = toks
                            if st.secret_next or (c0 in _SECRET_INITIALS
                                                  and buf.startswith(_SECRET_PREFIXES)):
                                self._note_secrets(toks, buf)
                            add(Line(toks, buf, name, lineno))
                            continue
                        if buf == "}" and st.block_depth > 0 and not st.secret_next:
                            st.block_depth -= 1  # _plain_pieces() of a closing '}', inline
                            add(Line(["}"], buf, name, lineno))
                            continue
                        if buf[-1] == "{" and "}" not in buf and buf.count("{") == 1:
                            # _plain_pieces() of an opening `keyword ... {`, inline
                            head = buf[:-1].rstrip(" \t")
                            if head:
                                toks = head.split()
                                if st.secret_next or (c0 in _SECRET_INITIALS
                                                      and head.startswith(_SECRET_PREFIXES)):
                                    self._note_secrets(toks, head)
                                add(Line(toks, head, name, lineno))
                            st.block_depth += 1
                            if st.secret_next:
                                self._note_secrets(["{"], "{")
                            add(Line(["{"], "{", name, lineno))
                            continue
                        if batch and buf.count("}") > st.block_depth:  # "Extra '}'" ahead
                            yield batch
                            batch = []
                            add = batch.append
                        batch += self._plain_pieces(buf, Pos(name, lineno))
                        continue
                # the other lines: each on its own, after the lines before it
                if batch:
                    yield batch
                    batch = []
                    add = batch.append
                pos = Pos(name, lineno)
                # keepalived's read_line() drops every trailing '\n' / '\r' (lib/parser.c)
                physical = physical.rstrip("\r")
                if "\x00" in physical:
                    st.diag(pos, Severity.ERROR,
                            "configuration appears to have embedded NULs - ignoring line")
                    continue
                if "\u00a0" in physical or "\u3000" in physical:
                    if name not in self._warned_nbsp:
                        self._warned_nbsp.add(name)
                        st.diag(pos, Severity.WARNING,
                                "non-breaking space treated as whitespace", DiagKind.LVSD)
                    physical = physical.replace("\u00a0", " ").replace("\u3000", " ")
                if not physical.strip(_WS):
                    if multiline is not None:
                        multiline = None
                    continue
                buf, unterminated = decomment(physical)
                if unterminated:
                    # keepalived's decomment() (lib/parser.c) echoes the line; never a secret
                    st.diag(pos, Severity.ERROR, f"Unterminated quote '{redact_line(buf, st)}'")
                if multiline is not None:
                    if buf.endswith("\\"):
                        part = buf[:-1].rstrip(" \t")
                        if part:
                            multiline.append(part)
                        continue
                    if buf:
                        multiline.append(buf)
                    multiline = None
                    continue
                if not buf:
                    continue
                c0 = buf[0]
                if c0 == "~":
                    st.tilde_lines[pos] = buf
                if c0 != "@" and c0 != "$" and not buf.startswith("include") and not (
                        st.defs and "$" in buf):
                    pieces = self._pieces(buf, pos)  # the common line with quotes, comments
                    if pieces:
                        yield pieces
                    continue
                yield from self._logical(buf, pos, base_dir, depth)
                if st.aborted:
                    return
                # a multi-line definition started on this line?
                if buf.startswith("$") and buf.endswith("\\"):
                    m = _DEF_RE.match(buf)
                    if m is not None:
                        multiline = st.defs[m.group(1)]
            if batch:
                yield batch
                batch = []
                add = batch.append

    def _logical(self, buf: str, pos: Pos, base_dir: str, depth: int) -> Iterator[list[Line]]:
        st = self.state
        # conditional @ID / @^ID
        if buf.startswith("@"):
            rev = buf.startswith("@^")
            ofs = 2 if rev else 1
            m = re.match(r"[^ \t]*", buf[ofs:])
            ident = m.group(0) if m else ""
            rest = buf[ofs + len(ident):]
            if not rest.strip(" \t"):
                return
            matched = bool(st.config_id) and ident == st.config_id
            if matched == rev:
                return
            buf = rest.lstrip(" \t")
        # $NAME=VALUE definition
        if buf.startswith("$"):
            m = _DEF_RE.match(buf)
            if m is not None:
                value = buf[m.end():].lstrip(" \t")
                if value.endswith("\\"):
                    first = value[:-1].rstrip(" \t")
                    st.defs[m.group(1)] = [first] if first else []
                else:
                    st.defs[m.group(1)] = [value]
                return
        lines = [buf]
        if st.defs and "$" in buf:
            lines = self._substitute(buf, pos)
        for ln in lines:
            if not ln:
                continue
            if ln != buf:
                ln, _ = decomment(ln)
                if "~SEQ" in ln:  # made by the substitution
                    st.seq_lines = True
                if ln.startswith("@") or (ln.startswith("$") and _DEF_RE.match(ln)):
                    yield from self._logical(ln, pos, base_dir, depth)
                    continue
            m = _INCLUDE_RE.match(ln)
            if m is not None:
                yield from self._include(m.group(1), m.group(2).strip(" \t"), pos, base_dir, depth)
                if st.aborted:
                    return
                continue
            pieces = self._pieces(ln, pos)
            if pieces:
                yield pieces

    def _plain_pieces(self, ln: str, pos: Pos) -> list[Line]:
        """:meth:`_pieces` of a line with a brace but without quotes, comments or odd
        whitespace (see :meth:`batches_from_text`): the same lines and diagnostics, with less
        work for the usual ``keyword ... {`` and ``}``."""
        st = self.state
        if ln[-1] == "{" and ln.count("{") == 1 and "}" not in ln:
            head = ln[:-1].rstrip(" \t")
            pieces = [head, "{"] if head else ["{"]
        elif ln == "}":
            pieces = [ln]
        else:
            pieces = _BRACE_SPLIT_RE.split(ln)
        out: list[Line] = []
        for piece in pieces:
            if not piece:
                continue
            if piece == "{":
                st.block_depth += 1
            elif piece == "}":
                if st.block_depth < 1:
                    st.diag(pos, Severity.ERROR, "Extra '}' found", DiagKind.UNEXPECTED_EOB)
                    st.block_depth = 0
                    continue
                st.block_depth -= 1
            toks = piece.split()
            if st.secret_next or toks[0].startswith(_SECRET_PREFIXES):
                self._note_secrets(toks, piece)
            out.append(Line(toks, piece, pos.file, pos.line))
        return out

    def _note_secrets(self, toks: list[str], piece: str) -> None:
        """Remember the secret values of one tokenised line (see :meth:`_pieces`)."""
        st = self.state
        if toks[0] in SECRET_KEYWORDS:
            redact_line(piece, st)  # remember the value, however malformed the line
        # the value, also when it is on the next line(s) (secrets.secret_words)
        words, st.secret_next = secret_words(toks, st.secret_next)
        st.secrets.update(words)

    def _pieces(self, ln: str, pos: Pos) -> list[Line]:
        """Split at braces (counting them like keepalived's block_depth) and tokenise."""
        st = self.state
        out: list[Line] = []
        for piece in _split_braces(ln):
            if piece == "{":
                st.block_depth += 1
            elif piece == "}":
                if st.block_depth < 1:
                    st.diag(pos, Severity.ERROR, "Extra '}' found", DiagKind.UNEXPECTED_EOB)
                    st.block_depth = 0
                    continue
                st.block_depth -= 1
            toks, unmatched = split_tokens(piece)
            if unmatched:
                # keepalived's alloc_strvec_r() (lib/parser.c) echoes the line; never a secret
                st.diag(pos, Severity.ERROR, f"Unmatched quote: '{redact_line(piece, st)}'",
                        DiagKind.UNMATCHED_QUOTE)
            if toks:
                if st.secret_next or toks[0].startswith(_SECRET_PREFIXES):
                    self._note_secrets(toks, piece)
                out.append(Line(toks, piece, pos.file, pos.line))
        return out

    def _substitute(self, buf: str, pos: Pos, depth: int = 0) -> list[str]:
        defs = self.state.defs
        if depth > 32:
            self.state.diag(pos, Severity.ERROR,
                            "parameter substitution too deep - line left as is")
            return [buf]
        for _ in range(32):  # bounded: a definition may refer to another
            m = None
            for cand in _REF_RE.finditer(buf):
                name = cand.group(1) or cand.group(2)
                if name in defs:
                    m = cand
                    break
            if m is None:
                return [buf]
            name = m.group(1) or m.group(2)
            value = defs[name]
            pre, post = buf[: m.start()], buf[m.end():]
            if len(value) <= 1:
                buf = pre + (value[0] if value else "") + post
                continue
            out = [pre + value[0], *value[1:-1], value[-1] + post]
            result: list[str] = []
            for o in out:
                result.extend(self._substitute(o, pos, depth + 1) if "$" in o else [o])
            return result
        self.state.diag(pos, Severity.ERROR, "parameter substitution too deep - line left as is")
        return [buf]

    def _expand(self, pattern: str, base_dir: str, pos: Pos) -> list[str] | None:
        """The paths an include pattern names, sorted per brace alternative (keepalived's
        glob(GLOB_BRACE)); None (after a FATAL) when the pattern budget is exhausted."""
        budget = MAX_MATCHES - self._matches
        matches: list[str] = []
        try:
            for pat in brace_expand(pattern, budget):
                full = pat if os.path.isabs(pat) else os.path.join(base_dir, pat)
                if glob.has_magic(full):
                    found = list(itertools.islice(glob.iglob(full), budget - len(matches) + 1))
                    matches.extend(sorted(found))
                elif os.path.lexists(full):
                    matches.append(full)
                if len(matches) > budget:
                    raise TooManyMatches(pattern)
        except TooManyMatches:
            self.state.abort(pos, f"include patterns name more than {MAX_MATCHES} files - "
                             f"not loading '{pattern}'")
            return None
        self._matches += len(matches)
        return matches

    def _include(self, kind: str, pattern: str, pos: Pos, base_dir: str,
                 depth: int) -> Iterator[list[Line]]:
        st = self.state
        if st.aborted:
            return
        if not pattern:
            st.diag(pos, Severity.ERROR, f"include{kind} missing file name")
            return
        toks, _ = split_tokens(pattern)
        pattern = toks[0] if toks else pattern
        if depth >= MAX_INCLUDE_DEPTH:
            st.abort(pos, f"include nesting deeper than {MAX_INCLUDE_DEPTH} files - "
                     f"not loading '{pattern}'")
            return
        matches = self._expand(pattern, base_dir, pos)
        if matches is None:
            return
        if not matches:
            sev = Severity.WARNING if kind == "" else Severity.ERROR
            st.diag(pos, sev, f"No config files matched '{pattern}'.")
            return
        for path in matches:
            yield from self.batches_from_file(path, pos, depth + 1, kind)
            if st.aborted:
                return

    def _refuse(self, exc: _Refused, path: str, from_pos: Pos | None, kind: str) -> None:
        """Report a file that is not read, as keepalived's file_config_error(INCLUDE_R)."""
        st = self.state
        if exc.limit:
            if MAX_TOTAL_BYTES - self._bytes < MAX_FILE_BYTES:  # the total was the bound
                st.abort(from_pos, f"Configuration file '{path}' would make the configuration "
                         f"bigger than {_mib(MAX_TOTAL_BYTES)} in all - not loading")
            else:
                st.abort(from_pos, f"Configuration file '{path}' is bigger than "
                         f"{_mib(MAX_FILE_BYTES)} - not loading")
        elif from_pos is None:  # the main file: keepalived's check_conf_file() fails, no run
            st.abort(None, exc.message, DiagKind.FILE_NOT_FOUND)
        elif kind:  # includer/m/w/b/a: config_file_error is set, keepalived exits
            st.diag(from_pos, Severity.FATAL, exc.message, DiagKind.FILE_NOT_FOUND)
        elif exc.directory:  # plain include of a directory: logged, harmless
            st.diag(from_pos, Severity.WARNING, exc.message, DiagKind.WARNING)
        else:  # plain include: keepalived logs it and runs without the file
            st.diag(from_pos, Severity.ERROR, exc.message)

    def batches_from_file(self, path: str, from_pos: Pos | None, depth: int = 0,
                          kind: str = "") -> Iterator[list[Line]]:
        """The lines of ``path`` (``from_pos``: the include line, None for the main file), a
        list at a time (see :meth:`batches_from_text`)."""
        st = self.state
        if self._reads >= MAX_FILES:
            st.abort(from_pos, f"more than {MAX_FILES} configuration files read - "
                     f"not loading '{path}'")
            return
        limit = min(MAX_FILE_BYTES, MAX_TOTAL_BYTES - self._bytes)
        try:
            try:
                pre: os.stat_result | None = os.stat(path)
            except FileNotFoundError:
                if from_pos is None:  # lvsd's words: keepalived says "Config files missing"
                    st.abort(None, f"Configuration file '{path}' not found",
                             DiagKind.FILE_NOT_FOUND)
                    return
                pre = None
            except OSError:
                pre = None
            if pre is not None and (pre.st_dev, pre.st_ino) in self._stack:
                st.diag(from_pos, Severity.ERROR,
                        f"include loop: {path} is already being read - ignoring")
                return
            data, fst = read_regular_file(path, limit, pre)
        except _Refused as exc:
            self._refuse(exc, path, from_pos, kind)
            return
        except OSError as exc:
            msg = f"Configuration file '{path}' open problem ({exc.strerror or exc}) - skipping"
            if from_pos is None:
                st.abort(None, msg, DiagKind.FILE_NOT_FOUND)
            else:
                st.diag(from_pos, Severity.FATAL if kind else Severity.ERROR, msg,
                        DiagKind.FILE_NOT_FOUND if kind else DiagKind.GENERAL)
            return
        st.files.append(path)
        self._reads += 1
        self._bytes += len(data)
        text = decode(data, path, st)
        del data
        self._stack.append((fst.st_dev, fst.st_ino))
        try:
            yield from self.batches_from_text(text, path, os.path.dirname(path) or ".", depth)
        finally:
            self._stack.pop()
