"""The `s3` destination: one object per failure record (esm-reference.md 10.2).

The object is the invocation record with the discarded event embedded under `payload`
(as a JSON object), stored at the key Lambda uses:

    [prefix/]aws/lambda/<ESM-UUID>/<shardID>/YYYY/MM/DD/YYYY-MM-DDTHH.MM.SS-<random UUID>

The date and time are the failure's timestamp in UTC. A mapping here has no ESM UUID,
so a stable one stands in: `mapping_uuid(name)`, uuid5 of the mapping name in the
fixed namespace `MAPPING_NAMESPACE`; a mapping keeps its folder across restarts and
daemons. The shard id is the first record's partition (a Kinesis shard id as is;
other sources' partitions percent-encoded, so a file path stays one key segment).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import uuid
from typing import Any
from urllib.parse import quote

import structlog

from bridge.codec import dumps
from bridge.config.plugins import BuildContext
from bridge.errors import BridgeError, DestinationError, PermanentDestinationError
from bridge.failures import failure_document
from bridge.protocols import EventFormatter
from bridge.records import Delivery, FailureRecord
from connectors.aws.client import announce_endpoint, aws_client, aws_errors
from connectors.s3.config import S3DestinationConfig

# uuid5(NAMESPACE_URL, "lambda-bridge:event-source-mapping"), written out because it must
# never change: every mapping's folder would move.
MAPPING_NAMESPACE = uuid.UUID("d476290b-54dc-507b-8b05-0ce4b63b5e5e")
# Longer partitions (deep file paths) are shortened to keep keys well under S3's 1024.
MAX_SHARD_SEGMENT = 200
READ_TIMEOUT_SECONDS = 60.0


def mapping_uuid(mapping: str) -> uuid.UUID:
    """The stand-in for the ESM UUID of a mapping: the same name gives the same UUID."""
    return uuid.uuid5(MAPPING_NAMESPACE, mapping)


def shard_segment(partition: str) -> str:
    """A partition as one URL-safe key segment."""
    segment = quote(partition, safe="-_.~") or "-"
    if len(segment) > MAX_SHARD_SEGMENT:
        digest = hashlib.sha256(partition.encode()).hexdigest()[:16]
        segment = f"{segment[: MAX_SHARD_SEGMENT - 17]}-{digest}"
    return segment


def object_key(failure: FailureRecord, prefix: str = "", unique: uuid.UUID | None = None) -> str:
    """Where a failure record goes (esm-reference.md 10.2)."""
    moment = dt.datetime.fromtimestamp(failure.timestamp, tz=dt.UTC)
    shard = shard_segment(failure.records[0].partition)
    return (
        f"{prefix}aws/lambda/{mapping_uuid(failure.mapping)}/{shard}/"
        f"{moment:%Y/%m/%d}/{moment:%Y-%m-%dT%H.%M.%S}-{unique or uuid.uuid4()}"
    )


class _Unreachable(BridgeError):
    """The service did not answer; send() will try again."""


class S3Destination:
    def __init__(self, name: str, config: S3DestinationConfig, context: BuildContext) -> None:
        self.name = name
        self.bucket = config.bucket
        self.prefix = config.prefix
        self._connection = config.connection()
        self._region = self._connection.region_or(context.identity.region)
        self._where = f"destination {name!r} (bucket {config.bucket})"
        self._client: Any = None
        self._stack = contextlib.AsyncExitStack()
        self._log = structlog.get_logger("connectors.s3").bind(
            destination=name, bucket=config.bucket
        )

    async def start(self) -> None:
        """Open the client and check the bucket (HeadBucket, which needs s3:ListBucket as
        AWS asks of S3 destinations): a missing bucket or denied access fails here; an
        unreachable service is only logged, since send() is retried."""
        announce_endpoint(self._log, self._connection, "S3", f"bucket {self.bucket}", self._region)
        with aws_errors(
            self._where,
            "creating the client",
            retriable=DestinationError,
            permanent=PermanentDestinationError,
        ):
            self._client = await self._stack.enter_async_context(
                aws_client(self._connection, "s3", self._region, read_timeout=READ_TIMEOUT_SECONDS)
            )
        try:
            with aws_errors(
                self._where,
                "HeadBucket",
                retriable=_Unreachable,
                permanent=PermanentDestinationError,
            ):
                await self._client.head_bucket(Bucket=self.bucket)
        except _Unreachable as exc:
            self._log.warning("s3.destination_unreachable", error=str(exc))

    async def send(self, failure: FailureRecord, formatter: EventFormatter) -> None:
        client = self._client
        assert client is not None, "start() was not called"
        body = dumps(failure_document(failure, formatter, include_payload=True))
        key = object_key(failure, self.prefix)
        await self._put(client, key, body)
        self._log.debug("s3.failure_written", key=key, bytes=len(body))

    async def deliver(self, delivery: Delivery) -> None:
        """One object per document, under `[prefix/]aws/lambda/async/<origin>/YYYY/MM/DD/`
        (AWS documents no key layout for asynchronous records; this one mirrors 10.2)."""
        client = self._client
        assert client is not None, "start() was not called"
        moment = dt.datetime.now(tz=dt.UTC)
        key = (
            f"{self.prefix}aws/lambda/async/{shard_segment(delivery.origin)}/"
            f"{moment:%Y/%m/%d}/{moment:%Y-%m-%dT%H.%M.%S}-{uuid.uuid4()}"
        )
        await self._put(client, key, delivery.body)

    async def _put(self, client: Any, key: str, body: bytes) -> None:
        with aws_errors(
            self._where,
            "PutObject",
            retriable=DestinationError,
            permanent=PermanentDestinationError,
        ):
            await client.put_object(
                Bucket=self.bucket, Key=key, Body=body, ContentType="application/json"
            )

    async def close(self) -> None:
        self._client = None
        await self._stack.aclose()
