"""Event building shared by sources: `{"Records": [...]}`, and records grouped by
partition under their keys (Kafka's `records`, RabbitMQ's `rmqMessagesByQueue`)."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from itertools import groupby
from operator import attrgetter
from typing import Any

from bridge.codec import dumps
from bridge.pipeline.responses import string_identifier
from bridge.records import Record

_RECORDS_OPEN = b'{"Records":['
_RECORDS_CLOSE = b"]}"
_PARTITION = attrgetter("partition")


def encode_grouped(records: Sequence[Record]) -> bytes:
    """`"<partition>":[record, ...]` for each partition of `records`, comma-separated, in
    the order each partition first appears, from each record's cached JSON."""
    groups: dict[str, list[Record]] = {}
    for key, run in groupby(records, _PARTITION):
        group = groups.get(key)
        if group is None:
            groups[key] = list(run)
        else:
            group.extend(run)
    return b",".join(
        dumps(key) + b":[" + b",".join(map(Record.encode, group)) + b"]"
        for key, group in groups.items()
    )


class RecordsEventFormatter:
    """`{"Records": [record, ...]}`, assembled from each record's cached JSON.

    Subclasses name their failure record's `<Source>BatchInfo`.
    """

    envelope_bytes = len(_RECORDS_OPEN) + len(_RECORDS_CLOSE)

    def encode_event(self, records: Sequence[Record]) -> bytes:
        return _RECORDS_OPEN + b",".join(map(Record.encode, records)) + _RECORDS_CLOSE

    def parse_item_identifier(self, raw: object) -> Hashable | None:
        return string_identifier(raw)

    def stable_position(self, record: Record) -> Any:
        return record.position

    def batch_info(self, records: Sequence[Record]) -> tuple[str, dict[str, Any]]:
        raise NotImplementedError(f"{type(self).__name__} must describe its failure records")
