"""A Kafka destination's failure records read back, for `lambda-bridge failures`.

The failure topic (a `kafka` destination, or `kafka://topic` of the mapping's cluster)
holds one message per failed record (esm-reference.md 10.4), its `payload` the record's
own event. It is read from the beginning to its current end without a consumer group
(nothing is committed); a record's id is `<partition>-<offset>` of its message. Only the
records of the mapping's topics are listed. Redriving one of a `kafka` mapping produces
the original message again to its topic and partition, with its key, value and headers
and the header `lambda-bridge-redriven: <failure id>`; a record of another kind of
source is redriven by invoking the function with its event. The ledger of what was
redriven is `state_dir/redrive/<mapping>.<destination>.jsonl`: run redrives where the
daemon's state folder is.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from bridge.codec import JSONDecodeError, dumps, loads
from bridge.failurestores import (
    REDRIVEN_MARK,
    Redeliver,
    RedriveError,
    StoredFailure,
    well_formed,
)
from connectors.kafka.client import client_settings
from connectors.kafka.config import KafkaDestinationConfig, KafkaSourceConfig

FETCH_TIMEOUT_MS = 1000


class KafkaFailureStore:
    def __init__(self, config: KafkaDestinationConfig, mapping: Any, ledger_path: Path) -> None:
        self._config = config
        source = mapping.source
        self._source = source if isinstance(source, KafkaSourceConfig) else None
        self.where = f"topic {config.topic!r} of {config.servers_text}"
        self.ledger_path = ledger_path
        self._producer: AIOKafkaProducer | None = None

    async def open(self) -> None:
        return None

    async def failures(self) -> list[StoredFailure]:
        consumer = AIOKafkaConsumer(enable_auto_commit=False, **client_settings(self._config))
        try:
            await consumer.start()
            await consumer.topics()  # fetches the cluster's metadata
            partitions = consumer.partitions_for_topic(self._config.topic) or set()
            assigned = [TopicPartition(self._config.topic, p) for p in sorted(partitions)]
            consumer.assign(assigned)
            await consumer.seek_to_beginning(*assigned)
            ends = await consumer.end_offsets(assigned)
            found: list[StoredFailure] = []
            while [tp for tp in assigned if await consumer.position(tp) < ends[tp]]:
                batches = await consumer.getmany(*assigned, timeout_ms=FETCH_TIMEOUT_MS)
                for tp, messages in batches.items():
                    found.extend(self._failure(tp, m) for m in messages if m.offset < ends[tp])
        except KafkaError as exc:
            raise RedriveError(f"{self.where}: cannot read it: {exc}") from exc
        finally:
            await consumer.stop()
        found = [failure for failure in found if self._of_mapping(failure)]
        return sorted(found, key=lambda failure: str(failure.document.get("timestamp", "")))

    def _failure(self, tp: TopicPartition, message: Any) -> StoredFailure:
        failure_id = f"{tp.partition}-{message.offset}"
        try:
            document = loads(message.value or b"")
        except JSONDecodeError:
            document = None
        if not isinstance(document, dict):
            raise RedriveError(f"{self.where}: message {failure_id} is not a failure record")
        return StoredFailure(failure_id, document)

    def _of_mapping(self, failure: StoredFailure) -> bool:
        if self._source is None:
            return True
        try:
            topics = {record.get("topic") for record in _records(failure)}
        except (AttributeError, TypeError):  # malformed: not known to be the mapping's
            return False
        return bool(topics) and topics <= set(self._source.topics)

    async def redrive(self, failure: StoredFailure, redeliver: Redeliver) -> bool:
        payload = failure.document.get("payload")
        if not isinstance(payload, dict):
            raise RedriveError(f"{failure.id} holds no records (no payload)")
        if self._source is None:
            return await redeliver(dumps(payload))
        with well_formed(failure.id):  # all read before any is produced
            messages = [_message(record, failure.id) for record in _records(failure)]
        producer = await self._started()
        try:
            for topic, value, key, partition, headers in messages:
                await producer.send_and_wait(
                    topic, value, key=key, partition=partition, headers=headers
                )
        except KafkaError as exc:
            raise RedriveError(f"{failure.id}: cannot produce to the source: {exc}") from exc
        return True

    async def _started(self) -> AIOKafkaProducer:
        if self._producer is None:
            assert self._source is not None
            producer = AIOKafkaProducer(
                acks="all", enable_idempotence=False, **client_settings(self._source)
            )
            try:
                await producer.start()
            except KafkaError as exc:
                await producer.stop()
                raise RedriveError(f"cannot reach {self._source.servers_text}: {exc}") from exc
            self._producer = producer
        return self._producer

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None


def _records(failure: StoredFailure) -> list[dict[str, Any]]:
    payload = failure.document.get("payload")
    batches = payload.get("records", {}) if isinstance(payload, dict) else {}
    return [record for records in batches.values() for record in records]


def _message(
    record: dict[str, Any], failure_id: str
) -> tuple[str, bytes, bytes | None, int, list[tuple[str, bytes]]]:
    """Topic, value, key, partition and headers of the message a failed record was."""
    headers = [
        (name, bytes(values))
        for header in record.get("headers", [])
        for name, values in header.items()
    ]
    headers.append((REDRIVEN_MARK, failure_id.encode()))
    key = record.get("key")
    return (
        str(record["topic"]),
        base64.b64decode(record.get("value") or ""),
        base64.b64decode(key) if isinstance(key, str) else None,
        int(record["partition"]),
        headers,
    )
