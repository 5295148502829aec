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
enclosing block, silently mangling the rest of the virtual server.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass, field

from lvsd.config.lexer import LexState, Line
from lvsd.config.model import Pos, Severity


class Kind(enum.Enum):
    LEAF = "leaf"  # keyword [args...]
    QUOTED = "quoted"  # script keyword: args re-tokenised with '...' quoting
    VALUES = "values"  # keyword [args] { value lines }
    BLOCK = "block"  # keyword [args] { keywords of another table }
    SKIP = "skip"  # known to keepalived, not implemented, may have any { } block


@dataclass(frozen=True, slots=True)
class Spec:
    kind: Kind
    table: str | None = None  # for BLOCK
    supported: bool = True
    extension: bool = False  # an lvsd keyword keepalived does not know (e.g. checker `rise`)


@dataclass(slots=True)
class Node:
    keyword: str
    args: list[str]
    pos: Pos
    raw: str = ""
    children: list[Node] | None = None
    values: list[Line] | None = None
    spec: Spec | None = None
    end_pos: Pos | None = None
    extra: dict[str, object] = field(default_factory=dict)


Tables = dict[str, dict[str, Spec]]


class _Stream:
    __slots__ = ("_it", "_peeked", "last_pos")

    def __init__(self, lines: Iterator[Line]) -> None:
        self._it = lines
        self._peeked: Line | None = None
        self.last_pos: Pos | None = None

    def peek(self) -> Line | None:
        if self._peeked is None:
            self._peeked = next(self._it, None)
        return self._peeked

    def next(self) -> Line | None:
        line = self.peek()
        self._peeked = None
        if line is not None:
            self.last_pos = line.pos
        return line


class Parser:
    def __init__(self, tables: Tables, state: LexState) -> None:
        self.tables = tables
        self.state = state
        self._stream: _Stream | None = None

    @property
    def last_pos(self) -> Pos | None:
        """Position of the last line read (names the place of an unexpected failure)."""
        return self._stream.last_pos if self._stream is not None else None

    def parse(self, lines: Iterator[Line], table: str = "root") -> list[Node]:
        stream = self._stream = _Stream(lines)
        nodes = self._block(stream, table, top=True)
        if self.state.block_depth > 0:
            self.state.diag(
                stream.last_pos,
                Severity.ERROR,
                f"There are {self.state.block_depth} missing '}}'s or extra '{{'s",
            )
        return nodes

    # ------------------------------------------------------------------ internals

    def _skip_balanced(self, stream: _Stream) -> Pos | None:
        """Consume a ``{ ... }`` block whose ``{`` is the next line."""
        first = stream.next()  # the '{'
        depth = 1
        last = first.pos if first else None
        while depth > 0:
            line = stream.next()
            if line is None:
                break
            last = line.pos
            if line.word == "{":
                depth += 1
            elif line.word == "}":
                depth -= 1
        return last

    def _block(self, stream: _Stream, table: str, top: bool = False) -> list[Node]:
        keywords = self.tables[table]
        out: list[Node] = []
        while True:
            line = stream.next()
            if line is None:
                return out
            word = line.word
            if word == "}":
                if top:
                    continue  # the lexer already reported "Extra '}' found"
                return out
            if word == "{":
                self.state.diag(line.pos, Severity.ERROR, "Unexpected '{' - ignoring")
                continue
            spec = keywords.get(word)
            if spec is None:
                nxt = stream.peek()
                if nxt is not None and nxt.word == "{":
                    self.state.diag(line.pos, Severity.ERROR,
                                    f"Unknown keyword '{word}' - skipping its {{ }} block")
                    self._skip_balanced(stream)
                else:
                    self.state.diag(line.pos, Severity.ERROR, f"Unknown keyword '{word}'")
                continue
            node = Node(word, line.tokens[1:], line.pos, line.raw, spec=spec)
            if spec.kind is Kind.BLOCK:
                assert spec.table is not None
                nxt = stream.peek()
                if nxt is not None and nxt.word == "{":
                    stream.next()
                else:
                    self.state.diag(line.pos, Severity.ERROR,
                                    "Missing '{' at beginning of configuration block")
                node.children = self._block(stream, spec.table)
                node.end_pos = stream.last_pos
            elif spec.kind is Kind.VALUES:
                nxt = stream.peek()
                if nxt is not None and nxt.word == "{":
                    stream.next()
                    node.values = self._values(stream)
                else:
                    # keepalived would swallow everything up to the next '}' as values
                    # (closing the enclosing block); take the keyword's own arguments.
                    self.state.diag(line.pos, Severity.ERROR,
                                    f"'{{' missing from beginning of block {word}")
                    node.values = []
                node.end_pos = stream.last_pos
            elif spec.kind is Kind.SKIP:
                nxt = stream.peek()
                if nxt is not None and nxt.word == "{":
                    node.end_pos = self._skip_balanced(stream)
            out.append(node)

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
                self.state.diag(line.pos, Severity.ERROR, "Unexpected '{' - ignoring")
                continue
            vals.append(line)
