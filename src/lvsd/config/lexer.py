"""keepalived.conf lexer: files -> a flat stream of logical lines of tokens.

Theory of operation
-------------------
This mirrors keepalived's ``lib/parser.c`` ``read_line()`` / ``decomment()`` /
``alloc_strvec_r()`` (2.x), re-implemented from its behaviour, in this order for each
physical line:

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
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from lvsd.config.model import Diagnostic, Pos, Severity

MAX_INCLUDE_DEPTH = 32
MAX_FILES = 10000
_WS = " \t\f\v\r\n"
_DEF_RE = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)[ \t]*=")
_REF_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")
_INCLUDE_RE = re.compile(r"^include([rmwba]?)[ \t]+(.*)$")
_SPECIAL_RE = re.compile(r'[!#"\\]')
_WORD_RE = re.compile(r"[^ \t\f\v\r\n]+")
_BRACE_SPLIT_RE = re.compile(r"[ \t]*([{}])[ \t]*")


@dataclass(slots=True)
class Line:
    """One logical line: tokens (quotes removed), raw text and position."""

    tokens: list[str]
    raw: str
    pos: Pos

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
    read_file: Callable[[str], bytes] | None = None

    def diag(self, pos: Pos | None, sev: Severity, msg: str) -> None:
        self.diagnostics.append(Diagnostic(pos, sev, msg))


def decode(data: bytes, name: str, state: LexState) -> str:
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


def brace_expand(pattern: str) -> list[str]:
    """Shell-style ``{a,b}`` expansion (nested, left to right)."""
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
                    out.extend(brace_expand(pre + p + post))
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


class Lexer:
    """Yields logical :class:`Line` objects for a main file (and everything it includes)."""

    def __init__(self, state: LexState) -> None:
        self.state = state
        self._warned_nbsp: set[str] = set()
        self._stack: list[str] = []  # files being read, outermost first (include loops)
        self._reads = 0

    # ---------------------------------------------------------------- file level

    def lines_from_text(self, text: str, name: str, base_dir: str,
                        depth: int = 0) -> Iterator[Line]:
        st = self.state
        multiline: list[str] | None = None
        for lineno, physical in enumerate(text.splitlines(), start=1):
            pos = Pos(name, lineno)
            if "\x00" in physical:
                st.diag(pos, Severity.ERROR,
                        "configuration appears to have embedded NULs - ignoring line")
                continue
            if "\u00a0" in physical or "\u3000" in physical:
                if name not in self._warned_nbsp:
                    self._warned_nbsp.add(name)
                    st.diag(pos, Severity.WARNING,
                            "non-breaking space treated as whitespace")
                physical = physical.replace("\u00a0", " ").replace("\u3000", " ")
            if not physical.strip(" \t\r\n\f\v"):
                if multiline is not None:
                    multiline = None
                continue
            buf, unterminated = decomment(physical.rstrip("\r\n"))
            if unterminated:
                st.diag(pos, Severity.ERROR, f"Unterminated quote '{buf}'")
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
            if c0 != "@" and c0 != "$" and not buf.startswith("include") and not (
                    st.defs and "$" in buf):
                yield from self._pieces(buf, pos)  # fast path: the common plain line
                continue
            yield from self._logical(buf, pos, base_dir, depth)
            # a multi-line definition started on this line?
            if buf.startswith("$") and buf.endswith("\\"):
                m = _DEF_RE.match(buf)
                if m is not None:
                    multiline = st.defs[m.group(1)]

    def _logical(self, buf: str, pos: Pos, base_dir: str, depth: int) -> Iterator[Line]:
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
                if ln.startswith("@") or (ln.startswith("$") and _DEF_RE.match(ln)):
                    yield from self._logical(ln, pos, base_dir, depth)
                    continue
            m = _INCLUDE_RE.match(ln)
            if m is not None:
                yield from self._include(m.group(1), m.group(2).strip(" \t"), pos, base_dir, depth)
                continue
            yield from self._pieces(ln, pos)

    def _pieces(self, ln: str, pos: Pos) -> list[Line]:
        """Split at braces (counting them like keepalived's block_depth) and tokenise."""
        st = self.state
        out: list[Line] = []
        for piece in _split_braces(ln):
            if piece == "{":
                st.block_depth += 1
            elif piece == "}":
                if st.block_depth < 1:
                    st.diag(pos, Severity.ERROR, "Extra '}' found")
                    st.block_depth = 0
                    continue
                st.block_depth -= 1
            toks, unmatched = split_tokens(piece)
            if unmatched:
                st.diag(pos, Severity.ERROR, f"Unmatched quote: '{piece}'")
            if toks:
                out.append(Line(toks, piece, pos))
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

    def _include(self, kind: str, pattern: str, pos: Pos, base_dir: str,
                 depth: int) -> Iterator[Line]:
        st = self.state
        if not pattern:
            st.diag(pos, Severity.ERROR, f"include{kind} missing file name")
            return
        toks, _ = split_tokens(pattern)
        pattern = toks[0] if toks else pattern
        if depth >= MAX_INCLUDE_DEPTH:
            st.diag(pos, Severity.ERROR, f"include nesting deeper than {MAX_INCLUDE_DEPTH} - "
                    f"ignoring {pattern}")
            return
        matches: list[str] = []
        for pat in brace_expand(pattern):
            full = pat if os.path.isabs(pat) else os.path.join(base_dir, pat)
            if glob.has_magic(full):
                matches.extend(sorted(glob.glob(full)))
            elif os.path.exists(full):
                matches.append(full)
        if not matches:
            sev = Severity.WARNING if kind == "" else Severity.ERROR
            st.diag(pos, sev, f"No config files matched '{pattern}'.")
            return
        for path in matches:
            if os.path.isdir(path):
                continue
            real = os.path.realpath(path)
            if real in self._stack:
                st.diag(pos, Severity.ERROR, f"include loop: {path} is already being read - "
                        "ignoring")
                continue
            if self._reads >= MAX_FILES:
                st.diag(pos, Severity.ERROR, f"more than {MAX_FILES} configuration files - "
                        f"ignoring {path}")
                return
            yield from self.lines_from_file(path, pos, depth + 1)

    def lines_from_file(self, path: str, from_pos: Pos | None, depth: int = 0) -> Iterator[Line]:
        st = self.state
        try:
            if st.read_file is not None:
                data = st.read_file(path)
            else:
                with open(path, "rb") as fh:
                    data = fh.read()
        except OSError as exc:
            sev = Severity.FATAL if from_pos is None else Severity.ERROR
            st.diag(from_pos, sev,
                    f"Unable to read configuration file {path}: {exc.strerror or exc}")
            return
        st.files.append(path)
        self._reads += 1
        text = decode(data, path, st)
        self._stack.append(os.path.realpath(path))
        try:
            yield from self.lines_from_text(text, path, os.path.dirname(path) or ".", depth)
        finally:
            self._stack.pop()
