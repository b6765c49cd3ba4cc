"""How the snapshot body is read into blocks (`vault.raft._blocks`): straight into each block through http.client
when urllib3 left the body to it, through requests otherwise. A real http.client response over a socket pair."""

from __future__ import annotations

import http.client
import socket
from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from nomad_vault_token.vault import raft

DATA = bytes(range(256)) * 3 + b"tail"  # 772 bytes


def chunked(data: bytes, sizes: Iterator[int]) -> bytes:
    out, pos = [], 0
    while pos < len(data):
        n = next(sizes)
        out.append(b"%x\r\n" % len(data[pos : pos + n]) + data[pos : pos + n] + b"\r\n")
        pos += n
    return b"".join(out) + b"0\r\n\r\n"


def response(head: bytes, body: bytes) -> tuple[http.client.HTTPResponse, socket.socket]:
    ours, theirs = socket.socketpair()
    theirs.sendall(b"HTTP/1.1 200 OK\r\n" + head + b"\r\n" + body)
    theirs.close()
    raw = http.client.HTTPResponse(ours)
    raw.begin()
    return raw, ours


def requests_like(raw: object, headers: dict[str, str], pieces: list[bytes] | None = None) -> SimpleNamespace:
    return SimpleNamespace(raw=SimpleNamespace(_fp=raw), headers=headers,
                           iter_content=lambda chunk_size: iter(pieces or []))  # fmt: skip


@pytest.mark.parametrize("sizes", [[2048, 63492], [1], [100], [1000]])
def test_a_chunked_body_is_read_straight_into_blocks(monkeypatch: pytest.MonkeyPatch, sizes: list[int]) -> None:
    """The chunked framing is undone whatever the server's chunk sizes; every block is full but the last."""
    monkeypatch.setattr(raft, "BLOCK", 100)

    def cycle() -> Iterator[int]:
        while True:
            yield from sizes

    raw, sock = response(b"Transfer-Encoding: chunked\r\n", chunked(DATA, cycle()))
    with sock:
        blocks = list(raft._blocks(requests_like(raw, {})))
    assert b"".join(blocks) == DATA
    assert [len(b) for b in blocks] == [100] * 7 + [72]
    assert all(isinstance(b, bytearray) for b in blocks)
    assert len({id(b) for b in blocks}) == len(blocks)  # each a new buffer: the verifier thread holds them


def test_a_body_with_a_length_is_read_the_same_way(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(raft, "BLOCK", 500)
    raw, sock = response(b"Content-Length: %d\r\n" % len(DATA), DATA)
    with sock:
        assert [bytes(b) for b in raft._blocks(requests_like(raw, {}))] == [DATA[:500], DATA[500:]]


def test_a_body_cut_short_raises_http_clients_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """A cut connection mid-chunk is http.client's IncompleteRead: `snapshot_stream` turns it into 69."""
    monkeypatch.setattr(raft, "BLOCK", 100)
    raw, sock = response(b"Transfer-Encoding: chunked\r\n", chunked(DATA, iter([500, 500]))[:300])
    with sock, pytest.raises(http.client.IncompleteRead):
        list(raft._blocks(requests_like(raw, {})))


def test_an_encoded_body_goes_through_requests() -> None:
    """A body urllib3 decodes (Content-Encoding) is not http.client's to read: requests' pieces, as they come."""
    raw, sock = response(b"Content-Length: 3\r\n", b"abc")
    with sock:
        got = list(raft._blocks(requests_like(raw, {"Content-Encoding": "gzip"}, [b"decoded", b"!"])))
    assert got == [b"decoded", b"!"]


def test_without_urllib3_s_response_it_goes_through_requests() -> None:
    """`_fp` is urllib3's private attribute: when it is not an http.client response, requests reads the body."""
    assert list(raft._blocks(requests_like(None, {}, [b"a", b"b"]))) == [b"a", b"b"]
    resp = SimpleNamespace(raw=SimpleNamespace(), headers={}, iter_content=lambda chunk_size: iter([b"x"]))
    assert list(raft._blocks(resp)) == [b"x"]
