"""The connector types lambda-bridge knows: the built-in ones, and those installed
distributions register as entry points (groups `lambda_bridge.sources`, `.functions`,
`.destinations`, `.checkpoint_stores`). A type's settings class is imported only when a
config names it."""

from __future__ import annotations

import importlib
from functools import cache
from importlib.metadata import EntryPoint, entry_points
from typing import Any

_BUILTIN: dict[str, dict[str, str]] = {
    "sources": {
        "files": "connectors.files.config:FilesSourceConfig",
        "kafka": "connectors.kafka.config:KafkaSourceConfig",
        "redis-streams": "connectors.redis.config:RedisStreamsSourceConfig",
        "sqs": "connectors.sqs.config:SqsSourceConfig",
        "kinesis": "connectors.kinesis.config:KinesisSourceConfig",
        "dynamodb-streams": "connectors.dynamodb.config:DynamoDBStreamsSourceConfig",
        "schedule": "connectors.schedule.config:ScheduleSourceConfig",
        "nats": "connectors.nats.config:NatsSourceConfig",
        "rabbitmq": "connectors.rabbitmq.config:RabbitMqSourceConfig",
        "activemq": "connectors.activemq.config:ActiveMQSourceConfig",
        "mqtt": "connectors.mqtt.config:MqttSourceConfig",
    },
    "functions": {
        "python": "connectors.python.config:PythonFunctionConfig",
        "http": "connectors.http.config:HttpFunctionConfig",
        "subprocess": "connectors.subprocess.config:SubprocessFunctionConfig",
        "lambda": "connectors.awslambda.config:LambdaFunctionConfig",
        "runtime": "connectors.runtime.config:RuntimeFunctionConfig",
    },
    "checkpoint_stores": {
        "sqlite": "bridge.pipeline.checkpoints:SqliteCheckpointStoreConfig",
        "dynamodb": "connectors.dynamodb.config:DynamoDBCheckpointStoreConfig",
    },
    "destinations": {
        "file": "connectors.files.config:FileDestinationConfig",
        "kafka": "connectors.kafka.config:KafkaDestinationConfig",
        "redis-stream": "connectors.redis.config:RedisStreamDestinationConfig",
        "sqs": "connectors.sqs.config:SqsDestinationConfig",
        "sns": "connectors.sns.config:SnsDestinationConfig",
        "s3": "connectors.s3.config:S3DestinationConfig",
        "eventbridge": "connectors.eventbridge.config:EventBridgeDestinationConfig",
        "lambda": "bridge.asyncinvoke.destinations:LambdaDestinationConfig",
    },
}


def _load(reference: str) -> Any:
    module_name, _, attribute = reference.partition(":")
    return getattr(importlib.import_module(module_name), attribute)


@cache
def registered_names(kind: str) -> dict[str, str | EntryPoint]:
    """Type name -> where its config class is, for `kind`, without importing any: the
    built-in connectors, then those of installed distributions (entry points)."""
    found: dict[str, str | EntryPoint] = dict(_BUILTIN[kind])
    for entry in entry_points(group=f"lambda_bridge.{kind}"):
        found.setdefault(entry.name, entry)
    return found


@cache
def registered_type(kind: str, name: str) -> type[Any]:
    """The config class of one type, imported on first use."""
    where = registered_names(kind)[name]
    return _load(where) if isinstance(where, str) else where.load()  # type: ignore[no-any-return]


def registered(kind: str) -> dict[str, type[Any]]:
    """Type name -> config class for every type of `kind` (imports them all: for the
    schema, the API's mappings and messages listing the known types)."""
    return {name: registered_type(kind, name) for name in registered_names(kind)}
