"""The HTTP response reader of HTTP_GET / SSL_GET (lvsd.checks.httpwire), fed byte streams
split every possible way, and the verdict (lvsd.checks.http.judge) on what it kept."""

from __future__ import annotations

import hashlib

import pytest

from lvsd.checks.http import judge
from lvsd.checks.httpwire import Response, parse_head
from lvsd.config.model import HttpUrl

pytestmark = pytest.mark.unit


def feed_split(data: bytes, step: int, keep: bool = True, **kw: int) -> tuple[Response, int]:
    """Feed ``data`` in pieces of ``step`` bytes; (response, bytes fed before it completed)."""
    r = Response(keep_body=keep, **kw)
    fed = 0
    for i in range(0, len(data), step):
        piece = data[i:i + step]
        fed += len(piece)
        if r.feed(piece):
            return r, fed
    return r, fed


STEPS = (1, 2, 3, 7, 64, 100_000)


def test_parse_head() -> None:
    assert parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\nX: y") == (200, 12, False)
    assert parse_head(b"HTTP/1.0 404") == (404, None, False)
    assert parse_head(b"HTTP/1.1 abc OK") == (None, None, False)
    assert parse_head(b"SIP/2.0 200 OK") == (None, None, False)
    # the last valid Content-Length counts; invalid or negative ones are ignored
    assert parse_head(b"HTTP/1.0 200 OK\r\ncontent-length: 3\r\nContent-Length: 5")[1] == 5
    assert parse_head(b"HTTP/1.0 200 OK\r\nContent-Length: x\r\nContent-Length: -1")[1] is None
    assert parse_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, Chunked")[2] is True
    assert parse_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip")[2] is False


@pytest.mark.parametrize("step", STEPS)
def test_content_length_ends_the_response_and_cuts_the_body(step: int) -> None:
    data = b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello, and bytes past the length"
    r, fed = feed_split(data, step)
    assert r.complete and r.head_done and r.status == 200
    assert bytes(r.body) == b"hello"
    assert fed < len(data) or step >= len(data)  # read no further than needed
    assert judge(HttpUrl("/", digest=hashlib.md5(b"hello").hexdigest()), r) == (True,
                                                                                 "HTTP 200")


@pytest.mark.parametrize("step", STEPS)
def test_chunked_ends_at_the_last_chunk_and_keeps_the_raw_bytes(step: int) -> None:
    body = b"5;ext=1\r\nhello\r\n1A\r\n" + b"x" * 26 + b"\r\n0\r\nTrailer: t\r\n\r\n"
    data = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n" + body
    r, fed = feed_split(data + b"GARBAGE", step)
    assert r.complete and r.status == 200 and r.chunked
    assert r.content_length is None  # chunked overrides Content-Length
    # not de-chunked (keepalived digests the bytes as received)
    assert bytes(r.body) == body
    assert fed <= len(data) + step - 1


@pytest.mark.parametrize("step", STEPS)
def test_chunked_not_finished_waits_for_the_close(step: int) -> None:
    data = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
    r, _ = feed_split(data, step)
    assert not r.complete
    r.eof()
    assert r.complete and judge(HttpUrl("/"), r) == (True, "HTTP 200")


def test_malformed_chunk_size_falls_back_to_the_close() -> None:
    data = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"
    r, _ = feed_split(data, 4)
    assert not r.complete and not r.chunked
    r.eof()
    assert bytes(r.body).endswith(b"0\r\n\r\n")


@pytest.mark.parametrize("step", STEPS)
def test_close_delimited_body(step: int) -> None:
    data = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n<html>up</html>"
    r, fed = feed_split(data, step)
    assert not r.complete and fed == len(data)
    r.eof()
    assert bytes(r.body) == b"<html>up</html>"
    assert judge(HttpUrl("/", regex=r"<html>(up|ok)"), r) == (True, "HTTP 200")
    assert judge(HttpUrl("/", regex="down"), r) == (False, "regex did not match")
    assert judge(HttpUrl("/", regex="up", regex_no_match=True), r) == (False, "regex matched")


def test_truncated_body_is_judged_on_what_arrived() -> None:
    # keepalived logs the length mismatch and digests what it got
    r, _ = feed_split(b"HTTP/1.0 200 OK\r\nContent-Length: 100\r\n\r\nshort", 3)
    assert not r.complete
    r.eof()
    assert judge(HttpUrl("/"), r) == (True, "HTTP 200")
    ok, reason = judge(HttpUrl("/", digest=hashlib.md5(b"x" * 100).hexdigest()), r)
    assert not ok and reason == f"digest mismatch (got {hashlib.md5(b'short').hexdigest()})"


def test_truncated_header_and_no_data() -> None:
    r = Response(keep_body=False)
    r.eof()
    assert judge(HttpUrl("/"), r) == (False, "no data received")
    r, _ = feed_split(b"HTTP/1.0 200 OK\r\nContent-Le", 5)
    r.eof()
    assert judge(HttpUrl("/"), r) == (False, "malformed response (no header end)")
    r, _ = feed_split(b"garbage\r\n\r\nmore", 5)
    assert judge(HttpUrl("/"), r) == (False, "malformed status line")


@pytest.mark.parametrize("step", (1, 100, 5000, 1 << 20))
def test_oversized_header_is_bounded(step: int) -> None:
    head = b"HTTP/1.0 200 OK\r\n" + b"X-Filler: " + b"a" * 10_000 + b"\r\n"
    r, fed = feed_split(head * 10 + b"\r\nbody", step, max_head=4096)
    assert r.complete and r.head_too_large and not r.head_done
    assert fed <= 4096 + step  # stopped reading soon after the bound
    assert judge(HttpUrl("/"), r) == (False, "malformed response (header over 4096 bytes)")
    # a header that ends just inside the bound is fine
    ok = b"HTTP/1.0 200 OK\r\nX: " + b"b" * (4096 - 23) + b"\r\n\r\n"
    r, _ = feed_split(ok, step, max_head=4096)
    assert r.head_done and not r.head_too_large


def test_body_is_bounded_and_kept_only_when_needed() -> None:
    data = b"HTTP/1.0 200 OK\r\n\r\n" + b"z" * 5000
    r, fed = feed_split(data, 1000, max_body=2048)
    assert r.complete and len(r.body) == 2048 and fed < len(data)
    r, _ = feed_split(data, 1000, keep=False)
    assert not r.complete and len(r.body) == 0 and r.received == len(data)


@pytest.mark.parametrize("status", (204, 304))
def test_no_body_statuses_end_at_the_header(status: int) -> None:
    r, _ = feed_split(f"HTTP/1.1 {status} X\r\n\r\n".encode(), 4)
    assert r.complete
    assert judge(HttpUrl("/"), r) == (status == 204, f"HTTP {status}")


def test_status_codes_and_digest_case() -> None:
    r, _ = feed_split(b"HTTP/1.0 503 Busy\r\nContent-Length: 0\r\n\r\n", 64)
    assert r.complete and judge(HttpUrl("/"), r) == (False, "HTTP 503")
    r, _ = feed_split(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", 64)
    assert judge(HttpUrl("/", digest=hashlib.md5(b"ok").hexdigest().upper()), r)[0]
