"""Settings of the `kinesis` source (no SDK import here)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from bridge.config.plugins import (
    AWS_STREAM,
    Identity,
    SourceConfig,
    SourceContext,
    check_start_timestamp,
)
from bridge.filtering.criteria import KINESIS_DATA
from bridge.protocols import Source
from connectors.aws.config import AwsConnectionConfig

ARN_PREFIX = "arn:"


def default_identity_arn(identity: Identity) -> str:
    return f"arn:aws:iam::{identity.account_id}:role/lambda-bridge"


class KinesisSourceConfig(SourceConfig, AwsConnectionConfig):
    """A Kinesis data stream read shard by shard, in order per shard (esm-reference.md 1.4,
    6 and 13), following splits and merges: a child shard is read once its parents are
    read to their end and settled. Positions are saved in the checkpoint store."""

    checkpoints_in_store = True
    type: Literal["kinesis"]
    family = AWS_STREAM
    filter_data_key = KINESIS_DATA
    stream: str = Field(min_length=1, max_length=2048, description="Stream name or ARN.")
    starting_position: Literal["TRIM_HORIZON", "LATEST", "AT_TIMESTAMP"] = Field(
        description="Where a new mapping starts; once positions are saved it resumes from them."
    )
    starting_position_timestamp: float | None = Field(
        None, description="Epoch seconds, with AT_TIMESTAMP; not in the future."
    )
    invoke_identity_arn: str | None = Field(
        None,
        pattern=r"^arn:",
        description="Written as each record's invokeIdentityArn; "
        "default arn:aws:iam::<aws.account_id>:role/lambda-bridge.",
    )
    poll_interval_seconds: float = Field(
        1.0,
        gt=0,
        le=60,
        description="How often an idle shard is polled; a shard that returned records is "
        "polled again at once (AWS: once a second, esm-reference.md 3).",
    )
    shard_discovery_interval_seconds: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="How often the shard list is refreshed; it is also refreshed whenever "
        "a shard ends.",
    )

    @model_validator(mode="after")
    def _timestamp_with_at_timestamp(self) -> KinesisSourceConfig:
        check_start_timestamp(self.starting_position, self.starting_position_timestamp)
        return self

    @property
    def stream_is_arn(self) -> bool:
        return self.stream.startswith(ARN_PREFIX)

    @property
    def stream_name(self) -> str:
        return self.stream.rpartition("/")[2] if self.stream_is_arn else self.stream

    def api_description(self, mapping: str, identity: Identity) -> dict[str, Any]:
        arn = self.stream
        if not self.stream_is_arn:
            region = self.region_or(identity.region)
            arn = f"arn:aws:kinesis:{region}:{identity.account_id}:stream/{self.stream}"
        described: dict[str, Any] = {
            "EventSourceArn": arn,
            "StartingPosition": self.starting_position,
        }
        if self.starting_position_timestamp is not None:
            described["StartingPositionTimestamp"] = self.starting_position_timestamp
        return described

    async def check_exists(self, identity: Identity) -> str | None:
        from connectors.kinesis.existence import missing_kinesis_stream

        arn = self.api_description("", identity)["EventSourceArn"]
        return await missing_kinesis_stream(self, arn, identity.region)

    def source_id(self) -> str:
        # The resolved ARN and creation time are checked against the saved positions when
        # the source opens, which catches a recreated stream of the same name.
        return f"kinesis:{self.endpoint_url or 'aws'}:{self.region or ''}:{self.stream}"

    def build(self, context: SourceContext) -> Source:
        from connectors.kinesis.source import KinesisSource

        return KinesisSource(self, context)

    @classmethod
    def sample_event(cls, count: int, identity: Identity) -> bytes:
        from connectors.kinesis.events import KinesisEventFormatter, KinesisRecords

        arn = f"arn:aws:kinesis:{identity.region}:{identity.account_id}:stream/orders"
        builder = KinesisRecords(
            stream_arn=arn,
            region=identity.region,
            invoke_identity_arn=default_identity_arn(identity),
        )
        first = 49_650_000_000_000_000_000_000_000_000_000_000_000_000_000_000_000_000
        raws = [
            {
                "SequenceNumber": str(first + index * 1_000_000),
                "ApproximateArrivalTimestamp": 1_790_000_000.123 + index * 0.25,
                "Data": b'{"order_id": %d, "status": "created"}' % (1000 + index),
                "PartitionKey": f"customer-{index % 3}",
            }
            for index in range(count)
        ]
        records = builder.records("shardId-000000000000", raws)
        return KinesisEventFormatter(arn).encode_event(records)
