"""The `dynamodb-streams` source: GetRecords on every shard of a table's stream, in order
per shard (esm-reference.md 1.5, 3, 6 and 13); the shard machinery is shared with
Kinesis (`connectors.shardstreams.shards`)."""

from __future__ import annotations

import contextlib
import math
from typing import Any

from bridge.config.plugins import SourceContext
from bridge.errors import PermanentSourceError, SourceError
from connectors.aws.client import announce_endpoint, aws_client, aws_errors
from connectors.dynamodb.config import DynamoDBStreamsSourceConfig
from connectors.dynamodb.events import DynamoDBRecords, DynamoDBStreamsFormatter
from connectors.shardstreams.lineage import (
    AFTER_SEQUENCE_NUMBER,
    AT_TIMESTAMP,
    TRIM_HORIZON,
    Fetched,
    Position,
    ShardInfo,
)
from connectors.shardstreams.sdk import parse_timestamps_as_epoch
from connectors.shardstreams.shards import ShardedStreamSource

# The most records one GetRecords call on a DynamoDB stream may return.
RECORDS_PER_CALL = 1000
READ_TIMEOUT_SECONDS = 30.0
RETENTION_SECONDS = 24 * 3600.0


class DynamoDBStreamsSource(ShardedStreamSource):
    def __init__(self, config: DynamoDBStreamsSourceConfig, context: SourceContext) -> None:
        super().__init__(
            mapping=context.mapping,
            namespace=f"{context.mapping}|{config.source_id()}",
            store=context.checkpoints,
            starting_position=config.starting_position,
            starting_timestamp=None,
            poll_interval=config.poll_interval_seconds,
            discovery_interval=config.shard_discovery_interval_seconds,
            where=f"dynamodb {config.described}",
            logger="connectors.dynamodb",
        )
        self.config = config
        self._region = config.region_or(context.identity.region)
        self._factor = context.parallelization_factor
        self.formatter: DynamoDBStreamsFormatter = DynamoDBStreamsFormatter(config.stream_arn or "")
        self._builder: DynamoDBRecords | None = None
        self._stream_arn = config.stream_arn or ""
        self._exit = contextlib.AsyncExitStack()
        self._client: Any = None

    @property
    def source_arn(self) -> str:
        return self.formatter.source_arn

    def _errors(self, doing: str) -> contextlib.AbstractContextManager[None]:
        return aws_errors(self.where, doing, retriable=SourceError, permanent=PermanentSourceError)

    async def _connect(self) -> str:
        config = self.config
        announce_endpoint(self._log, config, "dynamodbstreams", config.described, self._region)
        if config.table is not None:
            self._stream_arn = await self._latest_stream(config.table)
        with self._errors("connect"):
            self._client = await self._exit.enter_async_context(
                aws_client(
                    config, "dynamodbstreams", self._region, read_timeout=READ_TIMEOUT_SECONDS
                )
            )
        parse_timestamps_as_epoch(self._client)
        arn = self._stream_arn
        self.formatter.source_arn = arn
        self._builder = DynamoDBRecords(
            stream_arn=arn,
            region=arn.split(":")[3] or self._region,
            parallelization_factor=self._factor,
        )
        # The ARN ends with the stream label: a new stream of the table is a new identity.
        return arn

    async def _latest_stream(self, table: str) -> str:
        with self._errors("DescribeTable"):
            async with aws_client(self.config, "dynamodb", self._region) as dynamodb:
                description = (await dynamodb.describe_table(TableName=table))["Table"]
        arn = description.get("LatestStreamArn")
        if not arn:
            raise PermanentSourceError(
                f"{self.where}: the table has no stream; enable DynamoDB Streams on it "
                "(StreamSpecification) or name a stream with stream_arn"
            )
        return str(arn)

    async def _list_shards(self) -> list[ShardInfo]:
        shards: list[ShardInfo] = []
        request: dict[str, Any] = {"StreamArn": self._stream_arn}
        while True:
            description = (await self._client.describe_stream(**request))["StreamDescription"]
            for shard in description.get("Shards", ()):
                parent = shard.get("ParentShardId")
                ending = shard.get("SequenceNumberRange", {}).get("EndingSequenceNumber")
                shards.append(ShardInfo(shard["ShardId"], (parent,) if parent else (), ending))
            last = description.get("LastEvaluatedShardId")
            if not last:
                return shards
            request["ExclusiveStartShardId"] = last

    async def _shard_iterator(self, shard_id: str, position: Position) -> str:
        kind = position.kind
        if kind == AT_TIMESTAMP:
            # No AT_TIMESTAMP iterator here: read from the start, and the shard machinery
            # drops what was created before the time.
            kind = TRIM_HORIZON
        request: dict[str, Any] = {
            "StreamArn": self._stream_arn,
            "ShardId": shard_id,
            "ShardIteratorType": kind,
        }
        if kind == AFTER_SEQUENCE_NUMBER:
            request["SequenceNumber"] = position.sequence
        response = await self._client.get_shard_iterator(**request)
        iterator: str = response["ShardIterator"]
        return iterator

    async def _fetch(self, shard_id: str, iterator: str) -> Fetched:
        response = await self._client.get_records(ShardIterator=iterator, Limit=RECORDS_PER_CALL)
        raws = response.get("Records")
        assert self._builder is not None
        records = self._builder.records(shard_id, raws) if raws else []
        return Fetched(records, response.get("NextShardIterator"), False)

    def _tip_marker(self, opened_at: float) -> Position:
        # A restart before anything of the shard settled reads it again from when the
        # mapping first opened; creation times may be whole seconds, so from that second.
        return Position(AT_TIMESTAMP, timestamp=float(math.floor(opened_at)))

    async def _oldest_sequence(self, shard_id: str) -> str | None:
        iterator = await self._shard_iterator(shard_id, Position(TRIM_HORIZON))
        oldest = (await self._client.get_records(ShardIterator=iterator, Limit=1)).get("Records")
        return str(oldest[0]["dynamodb"]["SequenceNumber"]) if oldest else None

    @property
    def retention_seconds(self) -> float:
        """DynamoDB Streams keeps records for 24 hours."""
        return RETENTION_SECONDS

    async def _disconnect(self) -> None:
        self._client = None
        await self._exit.aclose()
