"""The `kinesis` source: GetRecords on every shard of a stream, in order per shard
(esm-reference.md 1.4, 3, 6 and 13); the shard machinery is in `shards`."""

from __future__ import annotations

import contextlib
from typing import Any

from bridge.config.plugins import SourceContext
from bridge.errors import PermanentSourceError, SourceError
from connectors.aws.client import announce_endpoint, aws_client, aws_errors
from connectors.kinesis.config import KinesisSourceConfig, default_identity_arn
from connectors.kinesis.events import KinesisEventFormatter, KinesisRecords, epoch_seconds
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

# The most records one GetRecords call may return.
RECORDS_PER_CALL = 10_000
READ_TIMEOUT_SECONDS = 30.0
# A stream's retention unless DescribeStreamSummary says otherwise (24 hours).
DEFAULT_RETENTION_SECONDS = 24 * 3600.0


class KinesisSource(ShardedStreamSource):
    def __init__(self, config: KinesisSourceConfig, context: SourceContext) -> None:
        super().__init__(
            mapping=context.mapping,
            namespace=f"{context.mapping}|{config.source_id()}",
            store=context.checkpoints,
            starting_position=config.starting_position,
            starting_timestamp=config.starting_position_timestamp,
            poll_interval=config.poll_interval_seconds,
            discovery_interval=config.shard_discovery_interval_seconds,
            where=f"kinesis stream {config.stream}",
            logger="connectors.kinesis",
        )
        self.config = config
        self._region = config.region_or(context.identity.region)
        self._identity_arn = config.invoke_identity_arn or default_identity_arn(context.identity)
        self._factor = context.parallelization_factor
        self.formatter: KinesisEventFormatter = KinesisEventFormatter(
            config.stream if config.stream_is_arn else ""
        )
        self._builder: KinesisRecords | None = None
        # GetRecords takes the stream the way the config names it (name or ARN).
        self._stream_param = (
            {"StreamARN": config.stream} if config.stream_is_arn else {"StreamName": config.stream}
        )
        self._exit = contextlib.AsyncExitStack()
        self._client: Any = None
        self._retention_seconds = DEFAULT_RETENTION_SECONDS

    @property
    def source_arn(self) -> str:
        return self.formatter.source_arn

    async def _connect(self) -> str:
        config = self.config
        announce_endpoint(self._log, config, "kinesis", f"stream {config.stream}", self._region)
        with aws_errors(
            self.where, "connect", retriable=SourceError, permanent=PermanentSourceError
        ):
            self._client = await self._exit.enter_async_context(
                aws_client(config, "kinesis", self._region, read_timeout=READ_TIMEOUT_SECONDS)
            )
        parse_timestamps_as_epoch(self._client)
        with aws_errors(
            self.where,
            "DescribeStreamSummary",
            retriable=SourceError,
            permanent=PermanentSourceError,
        ):
            summary = (await self._client.describe_stream_summary(**self._stream_param))[
                "StreamDescriptionSummary"
            ]
        arn: str = summary["StreamARN"]
        self.formatter.source_arn = arn
        self._builder = KinesisRecords(
            stream_arn=arn,
            region=arn.split(":")[3] or self._region,
            invoke_identity_arn=self._identity_arn,
            parallelization_factor=self._factor,
        )
        self._retention_seconds = float(summary.get("RetentionPeriodHours") or 24) * 3600
        created = epoch_seconds(summary["StreamCreationTimestamp"])
        return f"{arn}@{created:.3f}"

    async def _list_shards(self) -> list[ShardInfo]:
        shards: list[ShardInfo] = []
        request: dict[str, Any] = dict(self._stream_param)
        while True:
            page = await self._client.list_shards(**request)
            for shard in page.get("Shards", ()):
                parents = tuple(
                    parent
                    for parent in (shard.get("ParentShardId"), shard.get("AdjacentParentShardId"))
                    if parent
                )
                ending = shard.get("SequenceNumberRange", {}).get("EndingSequenceNumber")
                shards.append(ShardInfo(shard["ShardId"], parents, ending))
            token = page.get("NextToken")
            if not token:
                return shards
            # With a NextToken the stream may not be named again.
            request = {"NextToken": token}

    async def _shard_iterator(self, shard_id: str, position: Position) -> str:
        request: dict[str, Any] = {
            **self._stream_param,
            "ShardId": shard_id,
            "ShardIteratorType": position.kind,
        }
        if position.kind == AFTER_SEQUENCE_NUMBER:
            request["StartingSequenceNumber"] = position.sequence
        elif position.kind == AT_TIMESTAMP:
            request["Timestamp"] = position.timestamp
        response = await self._client.get_shard_iterator(**request)
        iterator: str = response["ShardIterator"]
        return iterator

    async def _fetch(self, shard_id: str, iterator: str) -> Fetched:
        request: dict[str, Any] = {"ShardIterator": iterator, "Limit": RECORDS_PER_CALL}
        if self.config.stream_is_arn:
            request["StreamARN"] = self.config.stream
        response = await self._client.get_records(**request)
        raws = response.get("Records")
        assert self._builder is not None
        records = self._builder.records(shard_id, raws) if raws else []
        behind = bool(response.get("MillisBehindLatest"))
        return Fetched(records, response.get("NextShardIterator"), behind)

    async def _oldest_sequence(self, shard_id: str) -> str | None:
        iterator = await self._shard_iterator(shard_id, Position(TRIM_HORIZON))
        request: dict[str, Any] = {"ShardIterator": iterator, "Limit": 1}
        if self.config.stream_is_arn:
            request["StreamARN"] = self.config.stream
        oldest = (await self._client.get_records(**request)).get("Records")
        return str(oldest[0]["SequenceNumber"]) if oldest else None

    @property
    def retention_seconds(self) -> float:
        return self._retention_seconds

    def _tip_marker(self, opened_at: float) -> Position:
        # A restart before anything of the shard settled resumes from when the mapping
        # first opened, not from the tip it has then, which would skip what came between.
        return Position(AT_TIMESTAMP, timestamp=opened_at)

    async def _disconnect(self) -> None:
        self._client = None
        await self._exit.aclose()
