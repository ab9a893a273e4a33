"""Redis stream entries as records modelled on Kinesis records (esm-reference.md 1.4).

A record carries its entry under `redis` the way a Kinesis record carries its data under
`kinesis`: the stream, the entry id (also the item identifier of partial batch
responses, like `sequenceNumber`, 6.4) and `approximateArrivalTimestamp` in epoch
seconds, taken from the millisecond part of the id. An entry's fields are not one
blob, so they are not base64 as a whole: values that are UTF-8 text stay text under
`fields`; any other value goes to `binaryFields` as base64, so nothing is lost. A field
name that is not UTF-8 is written as `base64:<base64 of the name>`.

Everything here is pure: no server is needed to build records or events.
"""

from __future__ import annotations

from base64 import b64encode
from collections.abc import Sequence
from typing import Any

from bridge.codec import dumps
from bridge.failures import iso_millis
from bridge.pipeline.events import RecordsEventFormatter
from bridge.records import Record

SCHEMA_VERSION = "1.0"
EVENT_SOURCE = "redis:streams"
EVENT_VERSION = "1.0"
EVENT_NAME = "redis:streams:entry"
BINARY_NAME_PREFIX = "base64:"


_decode = bytes.decode


def parse_entry_id(entry_id: str) -> tuple[int, int]:
    """`1700000000000-3` -> (1700000000000, 3); ValueError if it is not an entry id."""
    milliseconds, dash, sequence = entry_id.partition("-")
    if not dash or not milliseconds.isdigit() or not sequence.isdigit():
        raise ValueError(f"{entry_id!r} is not a stream entry id")
    return int(milliseconds), int(sequence)


def split_fields(raw: Sequence[bytes]) -> tuple[dict[str, str], dict[str, str]]:
    """(text fields, base64 fields) of a flat name/value list; a repeated name keeps its
    last value, as a JSON object can hold a name once."""
    try:
        # Nearly every entry is all text, and many have one field: decode it without a
        # Python-level loop.
        if len(raw) == 2:
            return {_decode(raw[0]): _decode(raw[1])}, {}
        values = map(_decode, raw)
        return dict(zip(values, values, strict=False)), {}
    except UnicodeDecodeError:
        pass
    text: dict[str, str] = {}
    binary: dict[str, str] = {}
    pairs = iter(raw)
    for raw_name, value in zip(pairs, pairs, strict=False):
        try:
            name = raw_name.decode()
        except UnicodeDecodeError:
            name = BINARY_NAME_PREFIX + b64encode(raw_name).decode("ascii")
        try:
            text[name] = value.decode()
        except UnicodeDecodeError:
            binary[name] = b64encode(value).decode("ascii")
            text.pop(name, None)
        else:
            if binary:
                binary.pop(name, None)
    return text, binary


class EntryRecords:
    """Builds Records from the entries of the streams of one Redis database."""

    def __init__(self, *, server_arn: str, region: str) -> None:
        # `redis://host:port/db`, without credentials; a stream's ARN appends `/<stream>`.
        self.server_arn = server_arn
        self.region = region
        self._stream_arns: dict[str, str] = {}
        self._templates: dict[str, bytes] = {}

    def stream_arn(self, stream: str) -> str:
        arn = self._stream_arns.get(stream)
        if arn is None:
            arn = self._stream_arns[stream] = f"{self.server_arn}/{stream}"
        return arn

    def record(self, stream: str, entry_id: str, raw: Sequence[bytes]) -> Record:
        milliseconds, sequence = parse_entry_id(entry_id)
        text, binary = split_fields(raw)
        template = self._templates.get(stream)
        if template is None:
            template = self._templates[stream] = self._template(stream)
        # The entry id is digits and a dash, and the arrival time a plain number: neither
        # needs escaping, so only the fields go through the encoder.
        entry = entry_id.encode()
        encoded = template % (
            entry,
            dumps(text),
            dumps(binary) if binary else b"{}",
            b"%d.%03d" % divmod(milliseconds, 1000),
            entry,
        )
        arrival = milliseconds / 1000
        return Record(
            stream, (milliseconds, sequence), entry_id, None, arrival, stream, entry_id, encoded
        )

    def _template(self, stream: str) -> bytes:
        """The JSON of a record of `stream`, with `%s` where each entry's values go."""

        def literal(value: str) -> bytes:
            return dumps(value).replace(b"%", b"%%")

        return (
            b'{"redis":{"streamSchemaVersion":"'
            + SCHEMA_VERSION.encode()
            + b'","stream":'
            + literal(stream)
            + b',"id":"%s","fields":%s,"binaryFields":%s,"approximateArrivalTimestamp":%s},'
            + b'"eventSource":"'
            + EVENT_SOURCE.encode()
            + b'","eventVersion":"'
            + EVENT_VERSION.encode()
            + b'","eventID":'
            + literal(f"{stream}:")[:-1]
            + b'%s"'
            + b',"eventName":"'
            + EVENT_NAME.encode()
            + b'","eventSourceARN":'
            + literal(self.stream_arn(stream))
            + b',"awsRegion":'
            + literal(self.region)
            + b"}"
        )

    def formatter(self, group: str) -> RedisStreamsFormatter:
        return RedisStreamsFormatter(self, group)


class RedisStreamsFormatter(RecordsEventFormatter):
    """`{"Records": [...]}`; failure records carry `RedisStreamsBatchInfo`."""

    def __init__(self, records: EntryRecords, group: str) -> None:
        self._records = records
        self.group = group

    def batch_info(self, records: Sequence[Record]) -> tuple[str, dict[str, Any]]:
        """Modelled on KinesisBatchInfo (esm-reference.md 10.1): a batch is one stream's
        entries, as a Kinesis batch is one shard's records."""
        first, last = records[0], records[-1]
        return "RedisStreamsBatchInfo", {
            "stream": first.partition,
            "group": self.group,
            "startEntryId": first.item_id,
            "endEntryId": last.item_id,
            "approximateArrivalOfFirstRecord": iso_millis(first.arrival),
            "approximateArrivalOfLastRecord": iso_millis(last.arrival),
            "batchSize": len(records),
            "streamArn": self._records.stream_arn(first.partition),
        }
