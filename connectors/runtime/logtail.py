"""The end of an invocation's log, as Lambda returns it to `Invoke` with `LogType: Tail`:
the last 4 KB of what the invocation logged, START to REPORT (esm-reference.md 14)."""

from __future__ import annotations

TAIL_BYTES = 4096


class LogTail:
    def __init__(self) -> None:
        self._buffer = bytearray()

    def clear(self) -> None:
        self._buffer.clear()

    def add(self, line: str) -> None:
        self._buffer += line.encode("utf-8", "replace") + b"\n"
        if len(self._buffer) > 2 * TAIL_BYTES:
            del self._buffer[:-TAIL_BYTES]

    def bytes(self) -> bytes:
        """The last 4 KB (a multi-byte character at the cut may be split, as on Lambda)."""
        return bytes(self._buffer[-TAIL_BYTES:])
