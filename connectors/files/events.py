"""S3 event notification records for file changes (esm-reference.md 1.10).

A handler written for S3 triggers runs unchanged: `eventName` is `ObjectCreated:Put` or
`ObjectRemoved:Delete`, the key is URL-encoded from its bytes the way S3 encodes it (form
encoding: spaces become `+`, `/` stays; keys.py has names that are not UTF-8), `size`
and `eTag` (MD5 of the content, as for a single-part upload) are only on created
objects, and `sequencer` is an upper-case hex string that grows with every event. The
sequencer is also the item identifier for partial batch responses.
"""

from __future__ import annotations

import base64
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bridge.codec import dumps
from bridge.failures import iso_millis
from bridge.pipeline.events import RecordsEventFormatter
from bridge.records import Record
from connectors.files.keys import encode_key, shown_key

CREATED = "ObjectCreated:Put"
REMOVED = "ObjectRemoved:Delete"
PRINCIPAL = "lambda-bridge"


class Sequencer:
    """Strictly increasing 18-digit hex numbers, anchored on wall-clock nanoseconds and
    on the last value delivered before a restart, so they keep growing even if the
    clock is set back."""

    def __init__(self) -> None:
        self._last = 0
        self._lock = threading.Lock()

    def continue_after(self, value: int) -> None:
        with self._lock:
            self._last = max(self._last, value)

    def next(self) -> int:
        with self._lock:
            self._last = max(time.time_ns(), self._last + 1)
            return self._last


def sequencer_text(value: int) -> str:
    return f"{value:018X}"


@dataclass(frozen=True, slots=True)
class FileChange:
    """What a record reports: the key, and the file's state after the change (None if removed)."""

    key: str
    size: int | None = None
    mtime_ns: int | None = None
    etag: str | None = None
    # When the change happened: the later of mtime and ctime (a moved-in or copied file
    # keeps its old mtime but gets a new ctime), or when a removal was seen.
    changed_ns: int = 0

    @property
    def removed(self) -> bool:
        return self.size is None


def s3_record(
    change: FileChange,
    *,
    bucket: str,
    region: str,
    configuration_id: str,
    sequencer: str,
    event_time: float,
) -> dict[str, Any]:
    s3_object: dict[str, Any] = {"key": encode_key(change.key)}
    if not change.removed:
        s3_object["size"] = change.size
        s3_object["eTag"] = change.etag
    s3_object["sequencer"] = sequencer
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": region,
        "eventTime": iso_millis(event_time),
        "eventName": REMOVED if change.removed else CREATED,
        "userIdentity": {"principalId": PRINCIPAL},
        "requestParameters": {"sourceIPAddress": "127.0.0.1"},
        "responseElements": {
            "x-amz-request-id": os.urandom(8).hex().upper(),
            "x-amz-id-2": base64.b64encode(os.urandom(48)).decode(),
        },
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": configuration_id,
            "bucket": {
                "name": bucket,
                "ownerIdentity": {"principalId": PRINCIPAL},
                "arn": f"arn:aws:s3:::{bucket}",
            },
            "object": s3_object,
        },
    }


class FileEventBuilder:
    """Turns file changes into Records for one watched folder (thread-safe)."""

    def __init__(
        self,
        *,
        root: str,
        bucket: str,
        region: str,
        configuration_id: str,
    ) -> None:
        self.root = root
        self.bucket = bucket
        self.region = region
        self.configuration_id = configuration_id
        self._sequencer = Sequencer()

    def continue_after(self, sequencer: int) -> None:
        """Issue only sequencers above one delivered before (by an earlier run)."""
        self._sequencer.continue_after(sequencer)

    def record(self, change: FileChange) -> Record:
        value = self._sequencer.next()
        sequencer = sequencer_text(value)
        event_time = change.changed_ns / 1e9 if change.changed_ns else time.time()
        payload = s3_record(
            change,
            bucket=self.bucket,
            region=self.region,
            configuration_id=self.configuration_id,
            sequencer=sequencer,
            event_time=event_time,
        )
        partition = shown_key(change.key)
        return Record(
            partition=partition,
            position=value,
            item_id=sequencer,
            # Only the JSON is kept: a folder taken on at start holds many records, and
            # their dicts would make every garbage collection pass longer on the loop.
            payload=None,
            arrival=event_time,
            # Each file is its own key: its events in order, files independent of each
            # other (bridge.pipeline.keyed_lanes).
            lane=partition,
            handle=change,
            # Encoded here, where records are built (on a worker thread), not on the loop.
            encoded=dumps(payload),
        )

    @property
    def formatter(self) -> FileEventFormatter:
        return FileEventFormatter(self.root, self.bucket)


class FileEventFormatter(RecordsEventFormatter):
    def __init__(self, root: str, bucket: str) -> None:
        self.root = root
        self.bucket = bucket

    def stable_position(self, record: Record) -> Any:
        """None: a file's sequencer is issued anew each time its change is seen."""
        return None

    def batch_info(self, records: Sequence[Record]) -> tuple[str, dict[str, Any]]:
        """Modelled on KinesisBatchInfo (esm-reference.md 10.1), for a folder; `keys` are
        the records' partitions, the keys shown as text."""
        first, last = records[0], records[-1]
        return "FilesBatchInfo", {
            "path": self.root,
            "bucket": self.bucket,
            "startSequencer": first.item_id,
            "endSequencer": last.item_id,
            "approximateArrivalOfFirstRecord": iso_millis(first.arrival),
            "approximateArrivalOfLastRecord": iso_millis(last.arrival),
            "batchSize": len(records),
            "keys": [record.partition for record in records],
        }
