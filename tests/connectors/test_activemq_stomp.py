"""STOMP 1.2 frames of the activemq connector: escapes, bodies, heart-beats, and the
bounds no input can get past (header size and count, body size), in linear time."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.activemq import stomp
from connectors.activemq.client import READ_CHUNK
from connectors.activemq.stomp import MAX_HEADER_BYTES, MAX_HEADERS, FrameError, FrameParser, encode


def feed_bytewise(parser: FrameParser, data: bytes) -> list[object]:
    frames: list[object] = []
    for index in range(len(data)):
        frames += parser.feed(data[index : index + 1])
    return frames


@given(
    st.dictionaries(
        st.text(min_size=1, max_size=20).filter(lambda name: name != "content-length"),
        st.text(max_size=40),
        max_size=8,
    ),
    st.binary(max_size=200),
)
def test_a_frame_comes_back_as_it_was_sent(headers: dict[str, str], body: bytes) -> None:
    """Headers with any characters (escaped) and any body (sized) survive, fed whole or
    octet by octet."""
    data = encode("MESSAGE", headers, body)
    [whole] = FrameParser(1000).feed(data)
    [split] = feed_bytewise(FrameParser(1000), data)
    for frame in (whole, split):
        assert frame == whole
        assert frame.command == "MESSAGE"
        assert frame.body == body
        assert {k: v for k, v in frame.headers.items() if k != "content-length"} == headers


def test_heartbeats_crlf_and_the_first_repeated_header() -> None:
    parser = FrameParser(100)
    frames = parser.feed(b"\n\r\nMESSAGE\r\na:1\r\na:2\r\n\r\ntext body\x00\n\n")
    [frame] = frames
    assert frame.headers == {"a": "1"} and frame.body == b"text body"
    assert parser.heartbeats >= 1


def test_connected_headers_are_not_unescaped() -> None:
    [frame] = FrameParser(100).feed(b"CONNECTED\nsession:ID\\cx\n\n\x00")
    assert frame.headers["session"] == "ID\\cx"


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"MESSAGE\n" + b"h:" + b"v" * (MAX_HEADER_BYTES + 10), "exceed"),
        (b"MESSAGE\n" + b"h:v\n" * (MAX_HEADERS + 1) + b"\n\x00", "more than"),
        (b"MESSAGE\nno colon\n\n\x00", "no colon"),
        (b"MESSAGE\nh:\\q\n\n\x00", "escape"),
        (b"MESSAGE\ncontent-length:-1\n\n\x00", "size"),
        # A digit to str.isdigit() that int() refuses.
        ("MESSAGE\ncontent-length:\u00b2\n\n\x00".encode(), "size"),
        (b"MESSAGE\ncontent-length:2\n\nabc\x00", "NUL"),
    ],
)
def test_frames_out_of_bounds_are_refused(data: bytes, problem: str) -> None:
    with pytest.raises(FrameError, match=problem):
        FrameParser(100).feed(data)


def test_bodies_over_the_limit_are_skipped_not_kept() -> None:
    """Sized or not, a body over max_body is dropped as it comes; the frame is returned
    marked truncated and the next frame is read normally."""
    parser = FrameParser(1000)
    sized = b"MESSAGE\ncontent-length:100000\n\n" + b"a" * 100000 + b"\x00"
    unsized = b"MESSAGE\n\n" + b"b" * 100000 + b"\x00"
    frames = []
    for chunk_start in range(0, len(sized + unsized), 4096):
        frames += parser.feed((sized + unsized)[chunk_start : chunk_start + 4096])
        assert len(parser._buffer) <= 1000 + 4096
    frames += parser.feed(b"MESSAGE\n\nok\x00")
    assert [(f.truncated, f.body) for f in frames] == [(True, b""), (True, b""), (False, b"ok")]


def test_scans_resume_where_they_stopped() -> None:
    """Data trickling in is never searched twice: each search for the end of the headers
    or of the body starts where the previous one stopped, so the work is linear."""
    parser = FrameParser(1_000_000)
    head = b"MESSAGE\nh:" + b"v" * 5000
    for index in range(0, len(head), 7):
        assert parser.feed(head[index : index + 7]) == []
        assert parser._scanned == len(parser._buffer)
    assert parser.feed(b"\n\n") == []
    for _ in range(100):
        assert parser.feed(b"z" * 50) == []
        assert parser._scanned == len(parser._buffer)
    [frame] = parser.feed(b"\x00")
    assert frame.body == b"z" * 5000


class CountingBuffer(bytearray):
    """The parser's buffer, counting the octets its searches look at."""

    searched = 0

    def find(self, sub: Any, start: Any = 0, end: Any = None) -> int:
        stop = len(self) if end is None else end
        found = super().find(sub, start, stop)
        CountingBuffer.searched += (stop if found == -1 else found + len(sub)) - start
        return found


class CountingPattern:
    def __init__(self, pattern: re.Pattern[bytes]) -> None:
        self.pattern = pattern

    def search(self, data: Any, pos: int, endpos: int) -> re.Match[bytes] | None:
        found = self.pattern.search(data, pos, endpos)
        CountingBuffer.searched += (endpos if found is None else found.end()) - pos
        return found


def test_many_tiny_frames_take_linear_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """1 MB of the smallest frames from a broker that ends lines with LF only, in reads
    of READ_CHUNK: the search for the end of each header block stops at that block, so
    the octets searched are about the octets received, not the rest of the read again
    for every frame."""
    monkeypatch.setattr(stomp, "_HEADER_END", CountingPattern(stomp._HEADER_END))
    CountingBuffer.searched = 0
    parser = FrameParser(100)
    parser._buffer = CountingBuffer()
    data = b"A\n\n\x00" * (1024 * 1024 // 4)
    frames = []
    for start in range(0, len(data), READ_CHUNK):
        frames += parser.feed(data[start : start + READ_CHUNK])
    assert len(frames) == len(data) // 4 and frames[-1].command == "A"
    assert CountingBuffer.searched <= 2 * len(data)
