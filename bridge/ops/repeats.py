"""Repeated log lines from client libraries, counted instead of written.

A Kafka, Redis or AWS client that loses its server retries on its own and logs every
attempt: hundreds of identical lines a second, drowning the bridge's own events (which
say the same once). The first line of each (logger, level, message template) is
written; repeats within the window are counted, and the count is written once the
window is over. The bridge's own structlog events never pass through here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

CLIENT_LIBRARIES = frozenset(
    {
        "aiokafka",
        "kafka",
        "redis",
        "botocore",
        "aiobotocore",
        "boto3",
        "s3transfer",
        "urllib3",
        "watchdog",
        "aiohttp",
    }
)
REPEAT_WINDOW_SECONDS = 30.0

_Key = tuple[str, int, str]


@dataclass
class _Window:
    started: float
    first: logging.LogRecord
    repeats: int = 0


class RepeatLimitingHandler(logging.Handler):
    """Hands records to `inner`, holding back repeats from CLIENT_LIBRARIES; a window's
    count is written when the next record arrives after it, and on flush or close."""

    def __init__(
        self,
        inner: logging.Handler,
        window: float = REPEAT_WINDOW_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.inner = inner
        self.window = window
        self._clock = clock
        self._windows: dict[_Key, _Window] = {}

    def emit(self, record: logging.LogRecord) -> None:
        now = self._clock()
        self._summarise(now)
        if record.name.partition(".")[0] not in CLIENT_LIBRARIES:
            self.inner.handle(record)
            return
        key = (record.name, record.levelno, str(record.msg))
        window = self._windows.get(key)
        if window is not None:
            window.repeats += 1
            return
        self._windows[key] = _Window(now, record)
        self.inner.handle(record)

    def _summarise(self, now: float, everything: bool = False) -> None:
        over = [
            key
            for key, window in self._windows.items()
            if everything or now - window.started >= self.window
        ]
        for key in over:
            window = self._windows.pop(key)
            if window.repeats:
                self.inner.handle(self._summary(window, now))

    def _summary(self, window: _Window, now: float) -> logging.LogRecord:
        first = window.first
        seconds = max(1, round(now - window.started))
        return logging.makeLogRecord(
            {
                "name": first.name,
                "levelno": first.levelno,
                "levelname": first.levelname,
                "msg": "%s (repeated %d times in %d s)",
                "args": (first.getMessage(), window.repeats, seconds),
                "created": time.time(),
            }
        )

    def flush(self) -> None:
        self._summarise(self._clock(), everything=True)
        self.inner.flush()

    def close(self) -> None:
        self.flush()
        super().close()
