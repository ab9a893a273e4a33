"""Settings of the `dynamodb-streams` source and the `dynamodb` checkpoint store (no SDK
import here)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from bridge.config.plugins import (
    AWS_STREAM,
    BuildContext,
    CheckpointStoreConfig,
    Identity,
    SourceConfig,
    SourceContext,
)
from bridge.filtering.criteria import DYNAMODB_RECORD
from bridge.protocols import CheckpointStore, Source
from connectors.aws.config import AwsConnectionConfig

TABLE_NAME = r"^[a-zA-Z0-9_.-]{3,255}$"


class DynamoDBStreamsSourceConfig(SourceConfig, AwsConnectionConfig):
    """A table's DynamoDB stream read shard by shard, in order per shard
    (esm-reference.md 1.5, 6 and 13), following the stream's shard rollover: a child
    shard is read once its parent is read to its end and settled. Positions are saved in
    the checkpoint store; a new stream (disabled and enabled again, so a new label)
    starts afresh."""

    checkpoints_in_store = True
    type: Literal["dynamodb-streams"]
    family = AWS_STREAM
    filter_data_key = DYNAMODB_RECORD
    table: str | None = Field(
        None, pattern=TABLE_NAME, description="Read the table's latest stream."
    )
    stream_arn: str | None = Field(
        None, pattern=r"^arn:aws[a-z-]*:dynamodb:", description="Or name the stream by its ARN."
    )
    starting_position: Literal["TRIM_HORIZON", "LATEST"] = Field(
        description="Where a new mapping starts; once positions are saved it resumes from them."
    )
    poll_interval_seconds: float = Field(
        0.25,
        gt=0,
        le=60,
        description="How often an idle shard is polled; a shard that returned records is "
        "polled again at once (AWS: 4 times a second, esm-reference.md 3).",
    )
    shard_discovery_interval_seconds: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="How often the shard list is refreshed; it is also refreshed whenever "
        "a shard ends.",
    )

    @model_validator(mode="after")
    def _table_or_stream(self) -> DynamoDBStreamsSourceConfig:
        if (self.table is None) == (self.stream_arn is None):
            raise ValueError("set either table or stream_arn")
        return self

    @property
    def described(self) -> str:
        return f"table {self.table}" if self.table else f"stream {self.stream_arn}"

    def api_description(self, mapping: str, identity: Identity) -> dict[str, Any]:
        """A `table` is shown by its table ARN: its stream's label is known only online."""
        arn = self.stream_arn
        if arn is None:
            region = self.region_or(identity.region)
            arn = f"arn:aws:dynamodb:{region}:{identity.account_id}:table/{self.table}"
        return {"EventSourceArn": arn, "StartingPosition": self.starting_position}

    async def check_exists(self, identity: Identity) -> str | None:
        from connectors.dynamodb.existence import missing_dynamodb_stream

        arn = self.api_description("", identity)["EventSourceArn"]
        return await missing_dynamodb_stream(self, arn, identity.region)

    def source_id(self) -> str:
        # The stream ARN (with its label) of a `table` is checked against the saved
        # positions when the source opens: a new stream of the table starts afresh.
        where = f"table/{self.table}" if self.table else str(self.stream_arn)
        return f"dynamodb-streams:{self.endpoint_url or 'aws'}:{self.region or ''}:{where}"

    def build(self, context: SourceContext) -> Source:
        from connectors.dynamodb.source import DynamoDBStreamsSource

        return DynamoDBStreamsSource(self, context)

    @classmethod
    def sample_event(cls, count: int, identity: Identity) -> bytes:
        from connectors.dynamodb.events import DynamoDBRecords, DynamoDBStreamsFormatter

        arn = (
            f"arn:aws:dynamodb:{identity.region}:{identity.account_id}"
            ":table/orders/stream/2026-01-01T00:00:00.000"
        )
        builder = DynamoDBRecords(stream_arn=arn, region=identity.region)
        names = ("INSERT", "MODIFY", "REMOVE")
        raws = []
        for index in range(count):
            name = names[index % 3]
            key = {"order_id": {"N": str(1000 + index // 3)}}
            old = {**key, "status": {"S": "created"}}
            new = {**key, "status": {"S": "created" if name == "INSERT" else "shipped"}}
            change = {
                "ApproximateCreationDateTime": 1_790_000_000.0 + index,
                "Keys": key,
                "SequenceNumber": str(100_000_000_000_000_000_000 + index * 100),
                "SizeBytes": 60,
                "StreamViewType": "NEW_AND_OLD_IMAGES",
            }
            if name != "REMOVE":
                change["NewImage"] = new
            if name != "INSERT":
                change["OldImage"] = old
            raws.append({"eventID": f"{index:032x}", "eventName": name, "dynamodb": change})
        records = builder.records("shardId-00000001790000000000-0a1b2c3d", raws)
        return DynamoDBStreamsFormatter(arn).encode_event(records)


class DynamoDBCheckpointStoreConfig(CheckpointStoreConfig, AwsConnectionConfig):
    """Positions in a DynamoDB table (key: namespace, partition), so several daemons, or a
    daemon that moves to another host, share them. Saves are staged and written at an
    interval and on close, as with the SQLite store."""

    type: Literal["dynamodb"]
    table: str = Field(pattern=TABLE_NAME, description="The table holding the positions.")
    create_table: bool = Field(
        False,
        description="Create the table (on-demand capacity) if it does not exist; otherwise a "
        "missing table is an error.",
    )
    flush_interval_seconds: float = Field(
        1.0, gt=0, le=60, description="How often staged positions are written."
    )
    lease_ttl_seconds: float = Field(
        10.0,
        ge=1,
        le=600,
        description="A shard lease lapses this long after its holder last renewed it; "
        "another daemon then takes the shard over.",
    )

    def build(self, context: BuildContext) -> CheckpointStore:
        from bridge.pipeline.leases import lease_owner
        from connectors.dynamodb.checkpoints import DynamoDBCheckpointStore

        return DynamoDBCheckpointStore(
            self, context.identity.region, lease_owner(context.state_dir)
        )
