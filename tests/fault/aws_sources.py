"""The AWS sources of the fault suite (moto): a standard SQS queue and a Kinesis stream
of two shards. See tests/fault/sources.py for what a source provides."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.e2e import aws_helpers as aws
from tests.fault.sources import Body, Covered, Sender, sqlite_checkpoints

# -- SQS ----------------------------------------------------------------------------


class SqsSource:
    """A standard queue: unordered, so the partition is the queue itself."""

    kind = "sqs"
    handler_delay = 0.0
    ordered = False
    function_timeout = 2
    visibility_seconds = 5

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.url, _ = aws.new_queue(endpoint, visibility=self.visibility_seconds)
        self.partitions = ["queue"]

    def source_yaml(self) -> str:
        return (
            f"    source: {{type: sqs, queue_url: '{self.url}', endpoint_url: '{self.endpoint}', "
            "wait_time_seconds: 1}\n"
        )

    def partition_for(self, number: int, chosen: int) -> str:
        return "queue"

    def sender(self) -> Sender:
        return _SqsSender(self.endpoint, self.url)

    def checkpoint(self, root: Path) -> tuple[dict[str, Any], Covered] | None:
        return None

    def left_behind(self, root: Path, last: dict[str, Any]) -> list[str]:
        depth = aws.queue_depth(self.endpoint, self.url)
        return [f"{depth} messages still in the queue"] if depth else []


class _SqsSender:
    def __init__(self, endpoint: str, url: str) -> None:
        self.endpoint, self.url = endpoint, url

    def send(self, bodies: list[Body]) -> None:
        aws.send(self.endpoint, self.url, bodies)

    def close(self) -> None:
        return None


# -- Kinesis ------------------------------------------------------------------------


class KinesisSource:
    """Two shards; each record is put into the shard the producer chose for it with
    PutRecord's ExplicitHashKey, so the producer numbers records per shard."""

    kind = "kinesis"
    handler_delay = 0.0
    ordered = True
    function_timeout = 3

    def __init__(self, endpoint: str, shards: int = 2) -> None:
        self.endpoint = endpoint
        self.stream = aws.new_stream(endpoint, shards)
        listed = aws.client("kinesis", endpoint).list_shards(StreamName=self.stream)["Shards"]
        self.hash_keys: dict[str, str] = {
            shard["ShardId"]: shard["HashKeyRange"]["StartingHashKey"] for shard in listed
        }
        self.partitions = sorted(self.hash_keys)

    def source_yaml(self) -> str:
        return (
            f"    source: {{type: kinesis, stream: {self.stream}, endpoint_url: '{self.endpoint}', "
            "starting_position: TRIM_HORIZON, poll_interval_seconds: 0.2}\n"
        )

    def partition_for(self, number: int, chosen: int) -> str:
        return self.partitions[chosen % len(self.partitions)]

    def sender(self) -> Sender:
        return _KinesisSender(self.endpoint, self.stream, self.hash_keys)

    def checkpoint(self, root: Path) -> tuple[dict[str, Any], Covered] | None:
        saved = {
            shard: int(value)
            for shard, value in sqlite_checkpoints(root).items()
            if value.isdigit()
        }
        # The saved sequence number is the last settled record's: it is not read again.
        return saved, lambda sequence, last: sequence <= last

    def left_behind(self, root: Path, last: dict[str, Any]) -> list[str]:
        floor = self.checkpoint(root)
        assert floor is not None
        saved, _ = floor
        behind = {
            shard: (saved.get(shard), sequence)
            for shard, sequence in last.items()
            if saved.get(shard) != sequence
        }
        if not behind:
            return []
        return [f"saved positions behind the last delivered (saved, wanted): {behind}"]


class _KinesisSender:
    def __init__(self, endpoint: str, stream: str, hash_keys: dict[str, str]) -> None:
        self.client = aws.client("kinesis", endpoint)
        self.stream, self.hash_keys = stream, hash_keys

    def send(self, bodies: list[Body]) -> None:
        for body in bodies:
            self.client.put_record(
                StreamName=self.stream,
                Data=json.dumps(body).encode(),
                PartitionKey=body["id"],
                ExplicitHashKey=self.hash_keys[body["p"]],
            )

    def close(self) -> None:
        return None
