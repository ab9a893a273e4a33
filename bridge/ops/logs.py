"""structlog setup: console output on a TTY, JSON lines otherwise.

Event names are stable and dotted (`batch.invoked`, `batch.failed`,
`record.sent_to_destination`, ...) and carry the mapping, batch size, attempt and
duration as fields. Record bodies are only ever logged at debug level. Client
libraries' repeated lines are counted rather than written (bridge.ops.repeats).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TextIO

import orjson
import structlog

from bridge.ops.repeats import RepeatLimitingHandler

if TYPE_CHECKING:
    from bridge.records import Record

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def _json_dumps(value: Any, **_: Any) -> str:
    return orjson.dumps(value, default=str).decode()


# Client libraries retry on their own and log every attempt; their warnings would drown
# the bridge's own `mapping.*` and `*.unreachable` events, which say the same once.
QUIET_LIBRARIES = {"aiokafka": logging.ERROR, "watchdog": logging.WARNING}


def configure(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> None:
    stream = stream or sys.stderr
    use_json = fmt == "json" or (fmt == "auto" and not stream.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any
    if use_json:
        shared.append(structlog.processors.format_exc_info)
        renderer = structlog.processors.JSONRenderer(serializer=_json_dumps)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=stream.isatty())
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
        )
    )
    root = logging.getLogger()
    root.handlers = [RepeatLimitingHandler(handler)]
    root.setLevel(max(_LEVELS[level], logging.WARNING))
    for name, library_level in QUIET_LIBRARIES.items():
        logging.getLogger(name).setLevel(library_level)


def batch_fields(records: Sequence[Record]) -> dict[str, object]:
    """The batch size and its partition (or how many partitions it spans), for logs."""
    partitions = {record.partition for record in records}
    if len(partitions) == 1:
        return {"batch_size": len(records), "partition": next(iter(partitions))}
    return {"batch_size": len(records), "partitions": len(partitions)}
