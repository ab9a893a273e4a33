"""Failure records produced to a Kafka topic (`kafka://topic`, esm-reference.md 10.4).

One message per failed record. Its value is the invocation record with `KafkaBatchInfo`
describing that one record (`recordInfo`) and `payload` holding the record's own event;
for records read from Kafka the message keeps the original key (so it lands on the
partition the key maps to) and headers. AWS's example for this destination names the
condition `RetriesExhausted` (not `RetryAttemptsExhausted`); that name is used here.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    InvalidTopicError,
    KafkaError,
    MessageSizeTooLargeError,
    RecordTooLargeError,
    TopicAuthorizationFailedError,
)

from bridge.codec import dumps
from bridge.errors import DestinationError, PermanentDestinationError
from bridge.failures import failure_document
from bridge.protocols import EventFormatter
from bridge.records import Delivery, FailureCondition, FailureRecord, Record
from connectors.kafka.client import client_settings
from connectors.kafka.config import KafkaDestinationConfig
from connectors.kafka.events import KafkaEventFormatter

# The broker refuses these for good: retrying the same record cannot help.
REFUSED = (
    TopicAuthorizationFailedError,
    ClusterAuthorizationFailedError,
    InvalidTopicError,
    MessageSizeTooLargeError,
    RecordTooLargeError,
)
TOPIC_DESTINATION_CONDITIONS = {FailureCondition.RETRY_ATTEMPTS_EXHAUSTED: "RetriesExhausted"}


class KafkaTopicDestination:
    def __init__(self, name: str, config: KafkaDestinationConfig) -> None:
        self.name = name
        self.config = config
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        # The broker gaps of some Kafka-compatible servers rule out idempotent producers.
        producer = AIOKafkaProducer(
            acks="all", enable_idempotence=False, **client_settings(self.config)
        )
        try:
            await producer.start()
        except KafkaError as exc:
            await producer.stop()
            raise DestinationError(
                f"destination {self.name!r}: cannot reach {self.config.servers_text}: {exc}"
            ) from exc
        self._producer = producer

    def message_for(
        self, failure: FailureRecord, record: Record, formatter: EventFormatter
    ) -> tuple[bytes | None, bytes, list[tuple[str, bytes]]]:
        """The key, value and headers of the message that carries one failed record."""
        single = dataclasses.replace(failure, records=[record])
        document = failure_document(single, formatter, include_payload=True)
        key: bytes | None = None
        headers: list[tuple[str, bytes]] = []
        if isinstance(formatter, KafkaEventFormatter):
            document["KafkaBatchInfo"] = formatter.record_info(record)
            condition = TOPIC_DESTINATION_CONDITIONS.get(failure.condition)
            if condition:
                document["requestContext"]["condition"] = condition
            key, headers = _key_and_headers(record.payload)
        return key, dumps(document), headers

    async def send(self, failure: FailureRecord, formatter: EventFormatter) -> None:
        producer = self._producer
        assert producer is not None, "start() was not called"
        try:
            sends = []
            for record in failure.records:
                key, value, headers = self.message_for(failure, record, formatter)
                sends.append(
                    await producer.send(self.config.topic, value, key=key, headers=headers)
                )
            await asyncio.gather(*sends)
        except KafkaError as exc:
            kind = PermanentDestinationError if isinstance(exc, REFUSED) else DestinationError
            raise kind(
                f"destination {self.name!r}: cannot produce to {self.config.topic}: {exc}"
            ) from exc

    async def deliver(self, delivery: Delivery) -> None:
        """One message: the document as its value, the attributes as headers."""
        producer = self._producer
        assert producer is not None, "start() was not called"
        headers = [(name, value.encode()) for name, (_, value) in delivery.attributes.items()]
        try:
            await (await producer.send(self.config.topic, delivery.body, headers=headers))
        except KafkaError as exc:
            kind = PermanentDestinationError if isinstance(exc, REFUSED) else DestinationError
            raise kind(
                f"destination {self.name!r}: cannot produce to {self.config.topic}: {exc}"
            ) from exc

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None


def _key_and_headers(payload: dict[str, Any]) -> tuple[bytes | None, list[tuple[str, bytes]]]:
    key = base64.b64decode(payload["key"]) if isinstance(payload.get("key"), str) else None
    headers = [
        (name, bytes(values))
        for header in payload.get("headers", [])
        for name, values in header.items()
    ]
    return key, headers
