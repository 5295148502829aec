"""keepalived.conf block grammar: logical lines -> a tree of keyword nodes.

Theory of operation
-------------------
Mirrors keepalived's ``process_stream()`` (lib/parser.c): each block has a keyword table
(see :mod:`lvsd.config.keywords`); the first word of a line is looked up in the table of
the block being read. A keyword with a sub-block needs the next logical line to be ``{``
(the lexer has already split braces into their own lines); if it is not, keepalived says
``Missing '{' at beginning of configuration block`` and reads on as if it had been there,
and so do we. A ``}`` ends the current block. A stray ``{`` is ``Unexpected '{' -
ignoring``.

Value blocks (virtual_ipaddress, track_script, virtual_server_group bodies, ...) hold
lines of values, not keywords, up to the closing ``}`` (keepalived's
``alloc_value_block``).

Deliberate difference from keepalived, for the operator's sake: an *unknown* keyword
followed by ``{`` (a typo such as ``SMTP_CHEKC {``) has its whole block skipped, with
``Unknown keyword 'X'`` naming the line. keepalived would instead read the typo'd
block's contents as keywords of the enclosing block and let its ``}`` close the
enclosing block, silently mangling the rest of the virtual server. keepalived's own
lines are still reported byte-identical (``Unknown keyword 'X'``, ``Unexpected '{' -
ignoring``) so ``keepalived -t`` output can be compared line by line; a WARNING (kind
LVSD) names the lines lvsd skipped, and another suggests the keyword meant ("did you
mean 'X'?", from the keywords valid in that block).

``~SEQ(VAR, START, STEP, END) TEXT`` lines (keepalived 2.x lib/parser.c ``add_seq``) are
expanded here, before the keyword lookup: TEXT once per value with ``$VAR`` replaced (see
:mod:`lvsd.config.seq`); the brace pieces the lexer split off the same physical line go with it
(the line is re-read from its file, since the lexer also split ``${VAR}`` at its braces; text
given to ``loads()`` has no file, so there ``${VAR}`` in a line with braces is best effort).
keepalived 2.2.7 does not substitute ``$VAR`` in a ~SEQ line inside a value block unless some
other parameter is defined (a quirk of its read_line); lvsd always substitutes. ``~LST`` is not
implemented (it is reported as an unknown keyword).

A block still open at the end of the input gets keepalived's ``There are N missing '}'s or
extra '{'s`` plus one WARNING per unclosed block naming the line where it was opened.
"""

from __future__ import annotations

import difflib
import enum
import re
from collections.abc import Iterator
from dataclasses import dataclass

from lvsd.config import seq as seqmod
from lvsd.config.lexer import LexState, Line, split_tokens
from lvsd.config.model import DiagKind, Diagnostic, Pos, Severity

_BRACES_RE = re.compile(r"([{}])")


class Kind(enum.Enum):
    LEAF = "leaf"  # keyword [args...]
    QUOTED = "quoted"  # script keyword: args re-tokenised with '...' quoting
    VALUES = "values"  # keyword [args] { value lines }
    BLOCK = "block"  # keyword [args] { keywords of another table }
    SKIP = "skip"  # known to keepalived, not implemented, may have any { } block


# the members, for the parser's loop (an enum class attribute is a slow lookup)
_LEAF, _BLOCK, _VALUES, _SKIP = Kind.LEAF, Kind.BLOCK, Kind.VALUES, Kind.SKIP
_SEEN_ARGS_MAX = 1 << 16  # distinct lines whose Node.args are kept for identical ones


@dataclass(frozen=True, slots=True)
class Spec:
    kind: Kind
    table: str | None = None  # for BLOCK
    supported: bool = True
    extension: bool = False  # an lvsd keyword keepalived does not know (e.g. checker `rise`)


@dataclass(slots=True)
class Node:
    """A keyword's line (``line``: its position) and what its block holds; ``end``: the line
    that closed the block (its position is :attr:`end_pos`)."""

    keyword: str
    args: list[str]
    line: Line
    raw: str = ""
    children: list[Node] | None = None
    values: list[Line] | None = None
    spec: Spec | None = None
    end: Line | None = None
    extra: dict[str, object] | None = None  # notes of a keyword reader (set when it has one)

    @property
    def pos(self) -> Pos:
        return Pos(self.line.file, self.line.lineno)

    @property
    def end_pos(self) -> Pos | None:
        return Pos(self.end.file, self.end.lineno) if self.end is not None else None


Tables = dict[str, dict[str, Spec]]


class _Stream:
    """The lines, read a list at a time from the lexer: ``buf[i]`` is the next line. The
    parser's loop reads ``buf`` directly (and stores ``i`` back before anything else reads)."""

    __slots__ = ("_batches", "_prev", "buf", "i")

    def __init__(self, batches: Iterator[list[Line]]) -> None:
        self._batches = batches
        self.buf: list[Line] = []
        self.i = 0
        self._prev: Line | None = None  # the last line of the lists before buf

    def fill(self) -> bool:
        """The next list of lines into ``buf`` (``i`` = 0); False at the end of the input."""
        if self.buf:
            self._prev = self.buf[-1]
        for batch in self._batches:
            if batch:
                self.buf = batch
                self.i = 0
                return True
        self.buf = []
        self.i = 0
        return False

    def peek(self) -> Line | None:
        if self.i < len(self.buf) or self.fill():
            return self.buf[self.i]
        return None

    def next(self) -> Line | None:
        if self.i < len(self.buf) or self.fill():
            self.i += 1
            return self.buf[self.i - 1]
        return None

    @property
    def last(self) -> Line | None:
        """The last line read (by :meth:`next` or the parser's loop)."""
        return self.buf[self.i - 1] if self.i else self._prev

    @property
    def last_pos(self) -> Pos | None:
        last = self.last
        return last.pos if last is not None else None


def suggest(word: str, candidates: Iterator[str] | list[str]) -> str | None:
    """The keyword probably meant by a misspelt ``word`` (difflib), or None."""
    if len(word) < 3:
        return None
    best = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.75)
    return best[0] if best else None


class Parser:
    def __init__(self, tables: Tables, state: LexState) -> None:
        self.tables = tables
        self.state = state
        self._stream: _Stream | None = None
        self._unclosed: list[Node] = []  # blocks still open at the end of the input
        self._cascades: list[tuple[Pos, int, str]] = []  # skipped unknown blocks (see _unknown)
        self._seen_args: dict[str, list[str]] = {}  # Node.args by line text (_SEEN_ARGS_MAX)

    @property
    def last_pos(self) -> Pos | None:
        """Position of the last line read (names the place of an unexpected failure)."""
        return self._stream.last_pos if self._stream is not None else None

    def _diag(self, pos: Pos | None, sev: Severity, msg: str,
              kind: DiagKind = DiagKind.GENERAL) -> None:
        self.state.diagnostics.append(Diagnostic(pos, sev, msg, kind))

    def parse(self, batches: Iterator[list[Line]], table: str = "root") -> list[Node]:
        """The nodes of the lines, given as lists by the lexer (``Lexer.batches_from_*``)."""
        stream = self._stream = _Stream(self._expand_seq(batches))
        nodes = self._block(stream, table, top=True)
        if self.state.block_depth > 0:
            # lib/parser.c init_data(): CONFIG_MISSING_EOB once the whole file is read
            self._diag(
                stream.last_pos,
                Severity.ERROR,
                f"There are {self.state.block_depth} missing '}}'s or extra '{{'s",
                DiagKind.MISSING_EOB,
            )
            for opener in reversed(self._unclosed):  # outermost first
                what, pos = " ".join([opener.keyword, *opener.args[:2]]), opener.pos
                self._diag(pos, Severity.WARNING,
                           f"block {what} opened at line {pos.line} is not closed "
                           f"(missing '}}')", DiagKind.LVSD)
        return nodes

    # ------------------------------------------------------------------ ~SEQ

    def _expand_seq(self, batches: Iterator[list[Line]]) -> Iterator[list[Line]]:
        """keepalived's ``~SEQ`` (lib/parser.c add_seq/read_line): repeat a line per value.
        Until the lexer has seen ``~SEQ`` (``LexState.seq_lines``) the lists pass as they are;
        after, one line at a time (a ~SEQ line's messages come when the line is read)."""
        group: list[Line] = []  # a ~SEQ line and the brace pieces of its physical line
        for batch in batches:
            if not self.state.seq_lines:
                yield batch
                continue
            for line in batch:
                if group:
                    # the pieces of one physical line (of one reading of its file)
                    if line.lineno == group[0].lineno and line.file is group[0].file:
                        group.append(line)
                        continue
                    for expanded in self._seq_lines(group):
                        yield [expanded]
                    group = []
                if line.raw.startswith("~SEQ"):
                    group = [line]
                    continue
                yield [line]
        if group:
            for expanded in self._seq_lines(group):
                yield [expanded]

    def _physical(self, group: list[Line]) -> str:
        """The text of a ~SEQ line before the lexer split it at braces (``${VAR}`` has them):
        the lexer kept it (``LexState.line_text``), so the file is never read twice."""
        if len(group) == 1:
            return group[0].raw
        text = self.state.line_text(group[0].pos)
        if text is None or not text.startswith("~SEQ"):
            text = " ".join(ln.raw for ln in group)  # best effort
        return text

    def _seq_lines(self, group: list[Line], depth: int = 0) -> Iterator[Line]:
        head = Line(group[0].tokens, self._physical(group) if depth == 0 else group[0].raw,
                    group[0].file, group[0].lineno)
        parsed = seqmod.parse_seq(head.raw)
        if isinstance(parsed, str):
            self._diag(head.pos, Severity.ERROR, parsed)
            if not parsed.startswith("Invalid ~SEQ specification"):
                self._diag(head.pos, Severity.ERROR,
                           f"Invalid ~SEQ specification '{head.raw}'")
            return
        vals = seqmod.values(parsed)
        if len(vals) >= seqmod.MAX_VALUES:
            self._diag(head.pos, Severity.WARNING,
                       f"~SEQ '{head.raw}' stopped after {seqmod.MAX_VALUES} values",
                       DiagKind.LVSD)
        for v in vals:
            text = seqmod.substitute(parsed.text, parsed.var, v)
            if text.startswith("~SEQ") and depth < 8:
                yield from self._seq_lines([Line([], text, head.file, head.lineno)], depth + 1)
                continue
            for piece in _BRACES_RE.split(text):  # keepalived's line_residue: braces apart
                piece = piece.strip(" \t")
                toks, _ = split_tokens(piece)
                if toks:
                    yield Line(toks, piece, head.file, head.lineno)

    # ------------------------------------------------------------------ internals

    def _skip_balanced(self, stream: _Stream) -> Line | None:
        """Consume a ``{ ... }`` block whose ``{`` is the next line; its last line."""
        last = stream.next()  # the '{'
        depth = 1
        while depth > 0:
            line = stream.next()
            if line is None:
                break
            last = line
            if line.word == "{":
                depth += 1
            elif line.word == "}":
                depth -= 1
        return last

    def _unknown(self, line: Line, keywords: dict[str, Spec], table: str,
                 stream: _Stream) -> None:
        word = line.word
        # lib/parser.c process_stream(): CONFIG_UNKNOWN_KEYWORD, kept byte-identical
        self._diag(line.pos, Severity.ERROR, f"Unknown keyword '{word}'",
                   DiagKind.UNKNOWN_KEYWORD)
        meant = suggest(word, [k for k, s in keywords.items() if not s.extension])
        if meant is not None:
            self._diag(line.pos, Severity.WARNING,
                       f"did you mean '{meant}'? ('{word}' is not a keyword of {table})",
                       DiagKind.LVSD)
        nxt = stream.peek()
        if nxt is not None and nxt.word == "{":
            # keepalived reports the '{' next (and then reads the block's lines as keywords
            # of the enclosing block); lvsd skips the whole block
            self._diag(nxt.pos, Severity.ERROR, "Unexpected '{' - ignoring",
                       DiagKind.UNEXPECTED_BOB)
            end = self._skip_balanced(stream)
            last = end.lineno if end is not None else line.lineno
            msg = (f"lvsd skips the {{ }} block of unknown keyword '{word}' (lines "
                   f"{line.lineno}-{last}); keepalived reads its lines as keywords of "
                   f"{table} and its '}}' closes {table}")
            if table == "root":
                self._diag(line.pos, Severity.WARNING, msg, DiagKind.LVSD)
            else:  # completed (with the lines keepalived misreads) at the top-level block's end
                self._cascades.append((line.pos, last, msg))

    def _flush_cascades(self, end: int) -> None:
        for pos, last, msg in self._cascades:
            if end > last:
                msg += f"; keepalived reads lines {last + 1}-{end} differently"
            self._diag(pos, Severity.WARNING, msg, DiagKind.LVSD)
        self._cascades = []

    def _block(self, stream: _Stream, table: str, top: bool = False,
               opener: Node | None = None) -> list[Node]:
        keywords = self.tables[table]
        seen_args = self._seen_args
        out: list[Node] = []
        # the stream's list and position, as locals: stored back (stream.i = i) before
        # anything else reads the stream, reloaded after
        buf, i = stream.buf, stream.i
        n = len(buf)
        while True:
            if i < n:
                line = buf[i]
                i += 1
            else:
                stream.i = i
                if not stream.fill():
                    if opener is not None:
                        self._unclosed.append(opener)
                    if top and self._cascades:
                        self._flush_cascades(stream.last_pos.line if stream.last_pos else 0)
                    return out
                buf = stream.buf
                n = len(buf)
                line = buf[0]
                i = 1
            tokens = line.tokens
            word = tokens[0] if tokens else ""  # line.word, without the call
            if word == "}":
                if top:
                    continue  # the lexer already reported "Extra '}' found"
                stream.i = i
                return out
            if word == "{":
                self._diag(line.pos, Severity.ERROR, "Unexpected '{' - ignoring",
                           DiagKind.UNEXPECTED_BOB)
                continue
            spec = keywords.get(word)
            if spec is None:
                stream.i = i
                self._unknown(line, keywords, table, stream)
                buf, i = stream.buf, stream.i
                n = len(buf)
                continue
            if top and self._cascades:  # the previous top-level block is complete
                self._flush_cascades(line.lineno - 1)
            # identical lines (a generated file repeats most) share their arguments: no
            # reader changes a node's args
            args = seen_args.get(line.raw)
            if args is None:
                args = tokens[1:]
                if len(seen_args) < _SEEN_ARGS_MAX:
                    seen_args[line.raw] = args
            node = Node(word, args, line, line.raw, None, None, spec)
            out.append(node)
            if spec.kind is _LEAF:
                continue
            stream.i = i
            if spec.kind is _BLOCK:
                assert spec.table is not None
                nxt = stream.peek()
                if nxt is not None and nxt.word == "{":
                    stream.i += 1
                else:
                    # lib/parser.c process_stream(): reported when the next line is read,
                    # so at that line
                    self._diag(nxt.pos if nxt is not None else line.pos, Severity.ERROR,
                               "Missing '{' at beginning of configuration block",
                               DiagKind.MISSING_BOB)
                node.children = self._block(stream, spec.table, opener=node)
                node.end = stream.last
                if nxt is None or nxt.word != "{":
                    end = node.end.lineno if node.end is not None else line.lineno
                    self._diag(line.pos, Severity.WARNING,
                               f"block {word} read without its '{{' (lines {line.lineno}-"
                               f"{end}); keepalived's processes that do not read {word} "
                               "report its lines as unknown keywords", DiagKind.LVSD)
            elif spec.kind is _VALUES:
                nxt = stream.peek()
                if len(node.args) > 0 and word != "virtual_server_group":
                    # lib/parser.c alloc_value_block()
                    self._diag(line.pos, Severity.ERROR,
                               f"Block {word} has extra parameters {node.args[0]} ...")
                if nxt is not None and nxt.word == "{":
                    stream.i += 1
                else:
                    # lib/parser.c alloc_value_block(): a log message, not a config error;
                    # the following lines up to the next '}' are read as values
                    self._diag(line.pos, Severity.WARNING,
                               f"'{{' missing from beginning of block {word}",
                               DiagKind.MISSING_BOB)
                node.values = self._values(stream)
                node.end = stream.last
            elif spec.kind is _SKIP:
                nxt = stream.peek()
                if nxt is not None and nxt.word == "{":
                    node.end = self._skip_balanced(stream)
            buf, i = stream.buf, stream.i
            n = len(buf)

    def _values(self, stream: _Stream) -> list[Line]:
        vals: list[Line] = []
        while True:
            line = stream.next()
            if line is None:
                return vals
            if line.word == "}":
                return vals
            if line.word == "{":
                # nested braces inside a value block: keep them balanced, ignore contents
                self._diag(line.pos, Severity.ERROR, "Unexpected '{' - ignoring",
                           DiagKind.UNEXPECTED_BOB)
                continue
            vals.append(line)
