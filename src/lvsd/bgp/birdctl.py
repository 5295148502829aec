"""BIRD's control socket protocol (what ``birdc`` speaks): a reply parser and an async client.

Theory of operation
-------------------
BIRD's "Remote control" protocol (BIRD 2 user's guide, and doc/reply_codes in its source): the
client writes one command per line; BIRD answers with lines ``NNNN-text`` (more lines follow),
`` text`` (continues the previous code) and a last line ``NNNN text``. Codes 0xxx are "done"
replies, 1xxx/2xxx table rows and headers, 8xxx run-time errors, 9xxx parse errors. On connect
BIRD greets with ``0001 BIRD <version> ready.``.

:class:`ReplyParser` (pure) turns lines into :class:`Reply` values; :func:`parse_protocols`
reads ``show protocols`` (rows of code 1002 under the 2002 header: name, protocol, table,
state, since, info). lvsd's generated bird.conf sets ``timeformat protocol "%s"`` so the
``since`` column is one word (Unix seconds) and the columns split on white space; ``info`` is
the rest of the line (for BGP: the session state, e.g. ``Established``, and maybe a reason).

:class:`BirdControl` is the I/O: one connection, one command at a time (a lock), every read
bounded by a timeout; a broken connection raises :class:`BirdControlError`.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass

log = logging.getLogger(__name__)

_CODE_RE = re.compile(r"^(\d{4})([ -])(.*)$")

# BIRD doc/reply_codes
CODE_WELCOME = 1
CODE_DISABLED = 9
CODE_ALREADY_DISABLED = 8
CODE_ALREADY_ENABLED = 10
CODE_ENABLED = 11
CODE_PROTOCOL_LIST = 1002
CODE_NO_PROTOCOLS = 8003


class BirdControlError(Exception):
    """The control socket failed (connect, read, write, timeout) or BIRD refused a command."""


@dataclass(frozen=True, slots=True)
class Reply:
    """One complete reply: the final line's code and every line as (code, text)."""

    code: int
    lines: tuple[tuple[int, str], ...]

    @property
    def ok(self) -> bool:
        return all(c < 8000 for c, _ in self.lines)

    @property
    def codes(self) -> frozenset[int]:
        """Every code of the reply (``enable X`` answers ``0011-X: enabled`` then ``0000``)."""
        return frozenset(c for c, _ in self.lines)

    @property
    def text(self) -> str:
        return "\n".join(t for _, t in self.lines)


class ReplyParser:
    """Lines in, complete :class:`Reply` values out (pure)."""

    def __init__(self) -> None:
        self._lines: list[tuple[int, str]] = []
        self._code = 0

    def feed(self, line: str) -> Reply | None:
        """One line (without its newline); the reply it completes, or None."""
        m = _CODE_RE.match(line)
        if m is None:  # " text": continues the previous code
            self._lines.append((self._code, line[1:] if line.startswith(" ") else line))
            return None
        self._code = int(m.group(1))
        self._lines.append((self._code, m.group(3)))
        if m.group(2) == "-":
            return None
        reply = Reply(self._code, tuple(self._lines))
        self._lines = []
        return reply


@dataclass(frozen=True, slots=True)
class ProtocolRow:
    name: str
    proto: str  # BGP, Static, Device, BFD, ...
    table: str
    state: str  # up, down, start, stop, ...
    since: str
    info: str  # BGP: the session state first (Established, Active, ...)

    @property
    def bgp_state(self) -> str:
        """A BGP protocol's session state: the first word of ``info`` (``down`` when the
        protocol is down and says nothing)."""
        return self.info.split()[0] if self.info.strip() else self.state


def parse_protocols(reply: Reply) -> list[ProtocolRow]:
    """The rows of a ``show protocols`` reply."""
    rows: list[ProtocolRow] = []
    for code, text in reply.lines:
        if code != CODE_PROTOCOL_LIST:
            continue
        parts = text.split(None, 5)
        if len(parts) < 4:
            continue
        while len(parts) < 6:
            parts.append("")
        rows.append(ProtocolRow(*parts))
    return rows


class BirdControl:
    """One connection to BIRD's control socket (see the module docstring)."""

    def __init__(self, path: str, *, timeout: float = 5.0) -> None:
        self.path = path
        self.timeout = timeout
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._lock = asyncio.Lock()
        self.version = ""

    @property
    def connected(self) -> bool:
        return self._writer is not None

    async def connect(self) -> None:
        try:
            self._reader, self._writer = await asyncio.wait_for(
                asyncio.open_unix_connection(self.path), self.timeout)
            hello = await self._reply()
        except (OSError, TimeoutError) as exc:
            await self.close()
            raise BirdControlError(f"cannot connect to {self.path}: {exc}") from None
        if hello.code != CODE_WELCOME:
            await self.close()
            raise BirdControlError(f"unexpected greeting from {self.path}: {hello.text!r}")
        self.version = hello.text

    async def command(self, cmd: str) -> Reply:
        """Send ``cmd``, return its reply (an error reply is returned, not raised)."""
        if "\n" in cmd:
            raise ValueError("one command line at a time")
        async with self._lock:
            if self._writer is None:
                await self.connect()
            assert self._writer is not None
            try:
                self._writer.write(cmd.encode() + b"\n")
                await asyncio.wait_for(self._writer.drain(), self.timeout)
                return await self._reply()
            except (OSError, TimeoutError, BirdControlError) as exc:
                await self.close()
                raise BirdControlError(f"{cmd!r}: {exc or type(exc).__name__}") from None

    async def _reply(self) -> Reply:
        assert self._reader is not None
        parser = ReplyParser()
        while True:
            raw = await asyncio.wait_for(self._reader.readline(), self.timeout)
            if not raw:
                raise BirdControlError("connection closed by BIRD")
            reply = parser.feed(raw.decode(errors="replace").rstrip("\n"))
            if reply is not None:
                return reply

    async def close(self) -> None:
        w, self._writer, self._reader = self._writer, None, None
        if w is not None:
            w.close()
            try:
                await w.wait_closed()
            except OSError as exc:
                log.debug("control socket close: %s", exc)
