"""Sans-IO reader of one HTTP/1.x response, for HTTP_GET and SSL_GET (keepalived
``check_http.c``: ``http_process_response``, ``extract_status_code``,
``extract_content_length``).

Theory of operation
-------------------
:class:`Response` is fed the bytes of one response as they arrive (:meth:`Response.feed`) and
says when the response is complete; it does no I/O and keeps no clock. It finds the end of the
header block (``\\r\\n\\r\\n``), bounded by ``max_head`` bytes (keepalived reads into a 4 KiB
buffer; lvsd allows more but never an unbounded header), then reads from it the status code
(the second word of a status line starting ``HTTP/``) and the last ``Content-Length``.

The body is framed, in RFC 9112 §6.3's order: a 204 or 304 status has none; ``Transfer-Encoding:
chunked`` ends at the last chunk and its trailer; else ``Content-Length`` bytes; else the body
runs until the server closes (:meth:`Response.eof`). keepalived reads until the server closes
in every case and digests at most Content-Length bytes of what follows the header; ending at the
framing's end gives the same bytes without waiting for a close that a keep-alive server may
never send. The bytes kept (``body``) are those received after the header, cut at
Content-Length, NOT de-chunked: keepalived digests the bytes as received. They are kept only
when asked (``keep_body``: a ``digest`` or ``regex`` needs them) and at most ``max_body``;
past that the response counts as complete (keepalived reads until close with a bounded buffer).

A malformed chunk-size line stops the chunk framing: the response then ends when the server
closes, as keepalived's always does.
"""

from __future__ import annotations

#: the header block may not exceed this (the check fails "malformed response")
MAX_HEAD = 64 * 1024
#: bytes of body kept (and read) at most
MAX_BODY = 4 * 1024 * 1024

_SIZE, _DATA, _DATA_END, _TRAILER, _DONE = range(5)
_MAX_CHUNK_LINE = 4096


def parse_head(head: bytes) -> tuple[int | None, int | None, bool]:
    """(status code, content-length, chunked) from a header block (without the blank line).

    The status code is None unless the first line is ``HTTP/x.y NNN ...``; the last valid
    Content-Length counts (keepalived ``extract_content_length`` reads one value)."""
    lines = head.split(b"\r\n")
    status: int | None = None
    parts = lines[0].split(None, 2)
    if len(parts) >= 2 and parts[0].startswith(b"HTTP/"):
        try:
            status = int(parts[1])
        except ValueError:
            status = None
    clen: int | None = None
    chunked = False
    for line in lines[1:]:
        k, _, v = line.partition(b":")
        name = k.strip().lower()
        if name == b"content-length":
            try:
                n = int(v.strip())
            except ValueError:
                continue
            if n >= 0:
                clen = n
        elif name == b"transfer-encoding":
            codings = [c.strip() for c in v.lower().split(b",")]
            chunked = bool(codings) and codings[-1] == b"chunked"
    return status, clen, chunked


class Response:
    """One response being received (see the module docstring)."""

    __slots__ = ("_body_seen", "_buf", "_chunk_left", "_line", "_state", "body", "chunked",
                 "complete", "content_length", "head_done", "head_too_large", "keep_body",
                 "max_body", "max_head", "received", "status")

    def __init__(self, keep_body: bool, max_head: int = MAX_HEAD,
                 max_body: int = MAX_BODY) -> None:
        self.keep_body, self.max_head, self.max_body = keep_body, max_head, max_body
        self.received = 0  # bytes fed in all
        self.head_done = False
        self.head_too_large = False
        self.status: int | None = None
        self.content_length: int | None = None
        self.chunked = False
        self.body = bytearray()  # after the header, cut at Content-Length (if keep_body)
        self.complete = False  # the framing says the response ended (or a bound was hit)
        self._buf = bytearray()  # the header block while it is incomplete
        self._state = _SIZE
        self._chunk_left = 0
        self._line = bytearray()
        self._body_seen = 0

    def feed(self, data: bytes) -> bool:
        """Take the next bytes; True once the response is complete (read no more)."""
        if self.complete or not data:
            return self.complete
        self.received += len(data)
        if not self.head_done:
            buf = self._buf
            start = max(0, len(buf) - 3)
            buf += data
            sep = buf.find(b"\r\n\r\n", start)
            if sep < 0:
                if len(buf) > self.max_head:
                    self.head_too_large = self.complete = True
                return self.complete
            if sep > self.max_head:
                self.head_too_large = self.complete = True
                return True
            self.head_done = True
            self.status, self.content_length, self.chunked = parse_head(bytes(buf[:sep]))
            if self.chunked:
                self.content_length = None  # RFC 9112 §6.3: chunked overrides Content-Length
            data = bytes(buf[sep + 4:])
            self._buf = bytearray()
            if self.status in (204, 304) or self.content_length == 0:
                self.complete = True
                return True
        self._body(data)
        return self.complete

    def eof(self) -> None:
        """The server closed: whatever arrived is the response."""
        self.complete = True

    def _body(self, data: bytes) -> None:
        clen = self.content_length
        seen = self._body_seen
        if clen is not None and seen + len(data) >= clen:
            data = data[:clen - seen]
            self.complete = True
        elif self.chunked:
            end = self._chunks(data)
            if end >= 0:
                data = data[:end]
                self.complete = True
        self._body_seen = seen + len(data)
        if self.keep_body:
            room = self.max_body - len(self.body)
            self.body += data[:room]
        if self._body_seen >= self.max_body:
            self.complete = True

    def _chunks(self, data: bytes) -> int:
        """Follow the chunk framing over ``data``: the offset just past the trailer's end if
        it is in ``data``, else -1."""
        i, n = 0, len(data)
        while i < n:
            st = self._state
            if st == _DATA:
                take = min(self._chunk_left, n - i)
                self._chunk_left -= take
                i += take
                if self._chunk_left == 0:
                    self._state, self._chunk_left = _DATA_END, 2
            elif st == _DATA_END:  # the CRLF after a chunk's data
                take = min(self._chunk_left, n - i)
                self._chunk_left -= take
                i += take
                if self._chunk_left == 0:
                    self._state = _SIZE
            else:  # _SIZE or _TRAILER: a line
                nl = data.find(b"\n", i)
                if nl < 0:
                    self._line += data[i:]
                    if len(self._line) > _MAX_CHUNK_LINE:
                        self.chunked = False  # not chunked after all: read until close
                    return -1
                self._line += data[i:nl]
                i = nl + 1
                line = bytes(self._line).rstrip(b"\r")
                self._line = bytearray()
                if st == _TRAILER:
                    if not line:
                        self._state = _DONE
                        return i
                    continue
                try:
                    size = int(line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    self.chunked = False  # malformed: the response ends when the server closes
                    return -1
                if size == 0:
                    self._state = _TRAILER
                else:
                    self._state, self._chunk_left = _DATA, size
        return -1
