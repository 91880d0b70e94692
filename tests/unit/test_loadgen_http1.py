"""Framing of HTTP/1.1 responses by the generator's lean client, fed byte by byte and in one piece."""

from __future__ import annotations

import pytest

from cluster.loadgen.http1 import ProtocolError, ResponseParser, build_request, origin_of


def _feed(parser: ResponseParser, data: bytes, one_byte_at_a_time: bool) -> list[int]:
    pieces = [data[i:i + 1] for i in range(len(data))] if one_byte_at_a_time else [data]
    return [status for piece in pieces if (status := parser.feed(piece)) is not None]


@pytest.mark.parametrize("bytewise", [False, True])
def test_content_length_responses_on_one_keep_alive_connection(bytewise: bool) -> None:
    parser = ResponseParser()
    parser.start(no_body=False)
    first = b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\nContent-Type: application/json\r\n\r\n{\"ok\": true}"
    assert _feed(parser, first, bytewise) == [200]
    parser.start(no_body=False)
    assert _feed(parser, b"HTTP/1.1 404 Not Found\r\ncontent-length:0\r\n\r\n", bytewise) == [404]
    assert parser.keep_alive and not parser.buffer


@pytest.mark.parametrize("bytewise", [False, True])
def test_chunked_with_extensions_and_trailers(bytewise: bool) -> None:
    parser = ResponseParser()
    parser.start(no_body=False)
    body = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: yes\r\n\r\n"
    head = b"HTTP/1.1 500 Internal Server Error\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert _feed(parser, head + body, bytewise) == [500]
    parser.start(no_body=False)
    assert _feed(parser, head + b"0\r\n\r\n", bytewise) == [500]
    assert not parser.buffer


def test_interim_100_continue_is_skipped() -> None:
    parser = ResponseParser()
    parser.start(no_body=False)
    assert parser.feed(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok") == 201


def test_head_204_and_304_have_no_body_whatever_the_headers() -> None:
    parser = ResponseParser()
    parser.start(no_body=True)
    assert parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n") == 200
    parser.start(no_body=False)
    assert parser.feed(b"HTTP/1.1 204 No Content\r\n\r\n") == 204
    parser.start(no_body=False)
    assert parser.feed(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n") == 304


def test_close_delimited_body_ends_at_eof_and_connection_close_is_honoured() -> None:
    parser = ResponseParser()
    parser.start(no_body=False)
    assert parser.feed(b"HTTP/1.0 200 OK\r\n\r\npartial body") is None
    assert parser.eof() == 200 and not parser.keep_alive
    parser = ResponseParser()
    parser.start(no_body=False)
    assert parser.feed(b"HTTP/1.1 503 Busy\r\nConnection: close\r\nContent-Length: 0\r\n\r\n") == 503
    assert not parser.keep_alive
    assert ResponseParser().eof() is None


@pytest.mark.parametrize("data", [b"SSH-2.0-OpenSSH\r\n\r\n", b"HTTP/1.1 abc OK\r\n\r\n",
                                  b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"])
def test_garbage_is_a_protocol_error(data: bytes) -> None:
    parser = ResponseParser()
    parser.start(no_body=False)
    with pytest.raises(ProtocolError):
        parser.feed(data)


def test_requests_are_built_once_with_host_length_and_headers() -> None:
    get = build_request("GET", "http://h:8000/ping?x=1", {"X-A": "b"}, None)
    assert get == b"GET /ping?x=1 HTTP/1.1\r\nHost: h:8000\r\nUser-Agent: cluster-bench\r\nX-A: b\r\n\r\n"
    post = build_request("POST", "https://h/items", {"User-Agent": "me"}, b'{"a": 1}')
    assert post.startswith(b"POST /items HTTP/1.1\r\nHost: h\r\nUser-Agent: me\r\nContent-Length: 8\r\n\r\n")
    assert post.endswith(b'{"a": 1}')
    assert origin_of("https://h/items") == origin_of("https://h:443/")
    assert origin_of("http://[::1]:81/").port == 81
    assert b"Host: [::1]:81\r\n" in build_request("GET", "http://[::1]:81/", {}, None)
