"""Event building shared by sources whose event is `{"Records": [...]}`."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

from bridge.pipeline.responses import string_identifier
from bridge.records import Record

_RECORDS_OPEN = b'{"Records":['
_RECORDS_CLOSE = b"]}"


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
