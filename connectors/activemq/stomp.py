"""STOMP 1.2 frames: encoding, and a parser whose work and memory are bounded.

Only what the `activemq` source needs is here (stomp.github.io, STOMP 1.2): frames are
a command line, `name:value` header lines, a blank line, a body and a NUL octet; a
body is exactly `content-length` octets when that header is present, else it ends at
the first NUL. Header names and values escape `\\`, `:`, CR and LF (not in CONNECT and
CONNECTED frames), and a repeated header keeps its first value. End-of-line octets
between frames are heart-beats.

Every scan resumes where the previous one stopped and ends at what it looks for, so a
frame arriving one octet at a time, or many frames in one read, cost linear time. The
header block and the header count are capped, and a body longer than `max_body` is
skipped without being kept: the frame is still returned, marked `truncated`, so the
source can settle the message instead of failing on it forever.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

MAX_HEADER_BYTES = 64 * 1024
MAX_HEADERS = 1000
NUL = 0

_ESCAPES = {ord("\\"): "\\\\", ord(":"): "\\c", ord("\n"): "\\n", ord("\r"): "\\r"}
_UNESCAPES = {"\\": "\\", "c": ":", "n": "\n", "r": "\r"}
# Frames whose headers are not escaped (STOMP 1.2, "Value Encoding").
_RAW_HEADER_COMMANDS = frozenset({"CONNECT", "CONNECTED"})
_ESCAPE_SEQUENCE = re.compile(r"\\(.?)", re.DOTALL)
# The blank line that ends a header block (EOL is LF or CRLF).
_HEADER_END = re.compile(rb"\n\r?\n")


class FrameError(Exception):
    """The peer sent something that is not a STOMP frame within our bounds."""


@dataclass(slots=True)
class Frame:
    command: str
    headers: dict[str, str]
    body: bytes = b""
    # The body was longer than the parser keeps; `body` is empty.
    truncated: bool = False


def _escape(text: str) -> str:
    return text.translate(_ESCAPES)


def _unescape_one(match: re.Match[str]) -> str:
    replacement = _UNESCAPES.get(match.group(1))
    if replacement is None:
        raise FrameError(f"undefined escape sequence \\{match.group(1)} in a header")
    return replacement


def _unescape(text: str) -> str:
    if "\\" not in text:
        return text
    return _ESCAPE_SEQUENCE.sub(_unescape_one, text)


def encode(
    command: str, headers: Mapping[str, str], body: bytes = b"", *, sized: bool = True
) -> bytes:
    """One frame; a body goes with its content-length unless `sized` is false (ActiveMQ
    makes a SEND without one a TextMessage, so such a body may hold no NUL)."""
    raw = command in _RAW_HEADER_COMMANDS
    lines = [command]
    lines += [
        f"{name}:{value}" if raw else f"{_escape(name)}:{_escape(value)}"
        for name, value in headers.items()
    ]
    if body and sized and "content-length" not in headers:
        lines.append(f"content-length:{len(body)}")
    return ("\n".join(lines) + "\n\n").encode() + body + b"\x00"


class FrameParser:
    """Turns received octets into frames; `feed` returns the frames completed so far."""

    def __init__(self, max_body: int) -> None:
        self.max_body = max_body
        self._buffer = bytearray()
        # Where the next search for the end of the headers or body resumes.
        self._scanned = 0
        self._pending: Frame | None = None
        self._body_length: int | None = None
        # Octets of a too-long body still to skip (content-length), or -1: skip to NUL.
        self._skipping: int | None = None
        self.heartbeats = 0

    def feed(self, data: bytes) -> list[Frame]:
        self._buffer += data
        frames: list[Frame] = []
        while True:
            try:
                frame = self._next()
            except ValueError as exc:
                # Whatever the checks above missed is still the peer's bad frame.
                raise FrameError(f"a malformed frame: {exc}") from None
            if frame is None:
                return frames
            frames.append(frame)

    def _next(self) -> Frame | None:
        if self._skipping is not None:
            return self._skip()
        if self._pending is None and not self._headers():
            return None
        return self._body()

    def _headers(self) -> bool:
        buffer = self._buffer
        # Heart-beats (and the EOLs a server may put after a frame's NUL).
        start = 0
        while start < len(buffer) and buffer[start] in b"\r\n":
            start += 1
        if start:
            self.heartbeats += 1
            del buffer[:start]
            self._scanned = 0
        if not buffer:
            return False
        # One search, from where the last one stopped to the first blank line, and never
        # past the header bound: many frames in one read cost the octets of each.
        found = _HEADER_END.search(
            buffer, max(self._scanned - 2, 0), min(len(buffer), MAX_HEADER_BYTES + 3)
        )
        if found is None:
            if len(buffer) > MAX_HEADER_BYTES:
                raise FrameError(f"a frame's headers exceed {MAX_HEADER_BYTES} bytes")
            self._scanned = len(buffer)
            return False
        end, separator = found.start(), found.end() - found.start()
        if end > MAX_HEADER_BYTES:
            raise FrameError(f"a frame's headers exceed {MAX_HEADER_BYTES} bytes")
        try:
            text = bytes(buffer[:end]).decode()
        except UnicodeDecodeError:
            raise FrameError("a frame's headers are not UTF-8") from None
        del buffer[: end + separator]
        self._scanned = 0
        lines = text.split("\n")
        if len(lines) - 1 > MAX_HEADERS:
            raise FrameError(f"a frame has more than {MAX_HEADERS} headers")
        command = lines[0].rstrip("\r")
        raw = command in _RAW_HEADER_COMMANDS
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, colon, value = line.rstrip("\r").partition(":")
            if not colon:
                raise FrameError(f"a header line of a {command[:20]!r} frame has no colon")
            if not raw:
                name, value = _unescape(name), _unescape(value)
            headers.setdefault(name, value)
        length = headers.get("content-length")
        if length is not None:
            if not (length.isascii() and length.isdigit()) or len(length) > 12:
                raise FrameError(f"content-length {length[:20]!r} is not a size")
            self._body_length = int(length)
        else:
            self._body_length = None
        self._pending = Frame(command, headers)
        return True

    def _body(self) -> Frame | None:
        frame = self._pending
        assert frame is not None
        buffer = self._buffer
        length = self._body_length
        if length is not None:
            if length > self.max_body:
                return self._start_skipping(frame, length + 1)
            if len(buffer) < length + 1:
                return None
            if buffer[length] != NUL:
                raise FrameError("a frame's body does not end with NUL at its content-length")
            frame.body = bytes(buffer[:length])
            del buffer[: length + 1]
        else:
            end = buffer.find(b"\x00", self._scanned)
            if end == -1:
                if len(buffer) > self.max_body:
                    return self._start_skipping(frame, -1)
                self._scanned = len(buffer)
                return None
            if end > self.max_body:
                frame.truncated = True
            else:
                frame.body = bytes(buffer[:end])
            del buffer[: end + 1]
        self._pending = None
        self._scanned = 0
        return frame

    def _start_skipping(self, frame: Frame, remaining: int) -> Frame | None:
        frame.truncated = True
        self._skipping = remaining
        if remaining == -1:
            self._scanned = 0
        return self._skip()

    def _skip(self) -> Frame | None:
        """Drop the body of a pending oversized frame; return the frame once it ended."""
        buffer = self._buffer
        remaining = self._skipping
        assert remaining is not None
        if remaining >= 0:
            taken = min(remaining, len(buffer))
            del buffer[:taken]
            remaining -= taken
            if remaining:
                self._skipping = remaining
                return None
        else:
            end = buffer.find(b"\x00")
            if end == -1:
                buffer.clear()
                return None
            del buffer[: end + 1]
        self._skipping = None
        frame, self._pending = self._pending, None
        self._scanned = 0
        return frame
