"""Event source mapping properties (CloudFormation's AWS::Lambda::EventSourceMapping and
SAM's SQS, Kinesis, DynamoDB, MSK, SelfManagedKafka and MQ events) as lambda-bridge mapping
settings, and destination ARNs as lambda-bridge destinations.

The property names are AWS's (esm-reference.md 2); lambda-bridge's settings are the same
names in snake_case, so most carry over one to one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from bridge.config.esm_names import SCALAR_SETTINGS
from bridge.importing.intrinsics import ResourceValue
from bridge.importing.model import ImportOptions, ImportResult
from bridge.importing.notes import Location, Notes


class EnvReference(str):
    """A `${VAR:-default}` the emitted config keeps as a reference (never escaped)."""


# Read past with a note: they change nothing locally.
READ_PAST = {
    "KmsKeyArn": "encryption of filter criteria is AWS's concern",
    "MetricsConfig": "lambda-bridge's /metrics has every mapping's metrics",
    "Tags": "tags are not used locally",
    "SecretsManagerKmsKeyId": "secrets are not read from Secrets Manager",
}
# Handled by the caller (the source's own properties).
SOURCE_PROPERTIES = {
    "Queue",
    "Stream",
    "EventSourceArn",
    "FunctionName",
    "StartingPosition",
    "StartingPositionTimestamp",
    "Topics",
    "KafkaBootstrapServers",
    "ConsumerGroupId",
    "SelfManagedEventSource",
    "SelfManagedKafkaEventSourceConfig",
    "AmazonManagedKafkaEventSourceConfig",
    "SourceAccessConfigurations",
    "Broker",
    "Queues",
    "DynamoDBStreamsEventSourceConfig",
}


@dataclass
class Converter:
    """Shared by the SAM and CloudFormation importers."""

    result: ImportResult
    options: ImportOptions
    notes: Notes

    def aws_settings(self) -> dict[str, Any]:
        settings: dict[str, Any] = {"region": self.options.region}
        if self.options.endpoint_url:
            settings["endpoint_url"] = self.options.endpoint_url
        return settings

    def mapping_settings(
        self, properties: dict[str, Any], location: Location, kind: str
    ) -> dict[str, Any]:
        """The mapping settings of the ESM properties besides the source's own."""
        settings: dict[str, Any] = {}
        for key, value in properties.items():
            where = (*location, key)
            if key in SCALAR_SETTINGS:
                settings[SCALAR_SETTINGS[key]] = _number(value)
            elif key == "FilterCriteria":
                filters = value.get("Filters", []) if isinstance(value, dict) else []
                patterns = [
                    _pattern(item.get("Pattern")) for item in filters if isinstance(item, dict)
                ]
                if patterns:
                    settings["filter_criteria"] = {"filters": [{"pattern": p} for p in patterns]}
            elif key == "ScalingConfig":
                if isinstance(value, dict) and "MaximumConcurrency" in value:
                    settings["scaling_config"] = {
                        "maximum_concurrency": _number(value["MaximumConcurrency"])
                    }
            elif key == "DestinationConfig":
                self._on_failure(settings, value, where, kind)
            elif key in READ_PAST:
                self.notes.info(where, f"read past: {READ_PAST[key]}")
            elif key not in SOURCE_PROPERTIES:
                self.notes.unsupported(where, f"{key} is not supported; left out")
        return settings

    def _on_failure(
        self, settings: dict[str, Any], value: Any, location: Location, kind: str
    ) -> None:
        on_failure = value.get("OnFailure") if isinstance(value, dict) else None
        arn = on_failure.get("Destination") if isinstance(on_failure, dict) else None
        if not isinstance(arn, str):
            self.notes.unsupported(
                location, "DestinationConfig without OnFailure.Destination; left out"
            )
            return
        if kind == "sqs":
            # DestinationConfig applies to streams and Kafka only (esm-reference.md 2).
            self.notes.unsupported(
                location,
                "an SQS mapping has no on-failure destination (the "
                "queue's redrive policy is its DLQ); left out",
            )
            return
        destination = self.destination(arn, (*location, "OnFailure", "Destination"))
        if destination is not None:
            name = self.result.destination_name(_short_name(arn), destination, location)
            settings["destination_config"] = {"on_failure": {"destination": name}}

    def destination(self, arn: str, location: Location) -> dict[str, Any] | None:
        """A destination for an ARN (SQS, SNS, S3, EventBridge, Lambda), or None with a
        warning."""
        parts = arn.split(":")
        service = parts[2] if len(parts) > 2 and parts[0] == "arn" else ""
        if service == "sqs":
            return {"type": "sqs", "queue_arn": arn, **self.aws_settings()}
        if service == "sns":
            return {"type": "sns", "topic_arn": arn, **self.aws_settings()}
        if service == "s3":
            return {"type": "s3", "bucket": arn, **self.aws_settings()}
        if service == "events":
            return {"type": "eventbridge", "event_bus": arn, **self.aws_settings()}
        if service == "lambda" and len(parts) >= 7:
            return {"type": "lambda", "function": parts[6]}
        if isinstance(arn, ResourceValue) or service:
            self.notes.unsupported(location, f"{arn} cannot be a destination locally; left out")
        else:
            self.notes.unsupported(location, f"{arn!r} is not an ARN; left out")
        return None

    # -- sources ------------------------------------------------------------------------

    def source(
        self, kind: str, properties: dict[str, Any], location: Location
    ) -> dict[str, Any] | None:
        """The lambda-bridge source for an ESM of this kind (sqs, kinesis, dynamodb, msk,
        kafka, mq); None with a warning when it cannot be made."""
        if kind == "sqs":
            queue = str(properties["Queue"])
            key = "queue_url" if queue.startswith(("http://", "https://")) else "queue_arn"
            return {"type": "sqs", key: queue, **self.aws_settings()}
        starting = _starting(properties)
        if kind == "kinesis":
            return {
                "type": "kinesis",
                "stream": str(properties["Stream"]),
                **starting,
                **self.aws_settings(),
            }
        if kind == "dynamodb":
            stream = properties["Stream"]
            if isinstance(stream, ResourceValue) and stream.attribute == "StreamArn":
                table = self.result_table_name(stream)
                return {
                    "type": "dynamodb-streams",
                    "table": table,
                    **starting,
                    **self.aws_settings(),
                }
            return {
                "type": "dynamodb-streams",
                "stream_arn": str(stream),
                **starting,
                **self.aws_settings(),
            }
        if kind in ("msk", "kafka"):
            return self._kafka(kind, properties, location, starting)
        if kind == "mq":
            return self._mq(properties, location)
        self.notes.unsupported(
            location, f"an event source of kind {kind} is not supported; left out"
        )
        return None

    def result_table_name(self, stream: ResourceValue) -> str:
        return stream.split(":table/", 1)[1].split("/stream/", 1)[0]

    def _kafka(
        self, kind: str, properties: dict[str, Any], location: Location, starting: dict[str, Any]
    ) -> dict[str, Any]:
        servers: Any = properties.get("KafkaBootstrapServers")
        managed = properties.get("SelfManagedEventSource")
        if servers is None and isinstance(managed, dict):
            servers = managed.get("Endpoints", {}).get("KafkaBootstrapServers")
        if not servers:
            servers = EnvReference("${KAFKA_BOOTSTRAP_SERVERS:-localhost:9092}")
            self.notes.info(
                location,
                "the brokers are not in the template: "
                "KAFKA_BOOTSTRAP_SERVERS (default localhost:9092)",
            )
        source: dict[str, Any] = {
            "type": "kafka",
            "bootstrap_servers": servers,
            "topics": list(properties.get("Topics", [])),
            **starting,
        }
        group = properties.get("ConsumerGroupId")
        for key in ("SelfManagedKafkaEventSourceConfig", "AmazonManagedKafkaEventSourceConfig"):
            config = properties.get(key)
            if isinstance(config, dict) and config.get("ConsumerGroupId"):
                group = config["ConsumerGroupId"]
        if group:
            source["consumer_group_id"] = str(group)
        if kind == "msk":
            source["msk_cluster_arn"] = str(
                properties.get("Stream", properties.get("EventSourceArn", ""))
            )
        if properties.get("SourceAccessConfigurations"):
            self.notes.unsupported(
                (*location, "SourceAccessConfigurations"),
                "credentials in Secrets Manager are not read: set "
                "sasl_*/ssl_* settings of the kafka source",
            )
        return source

    def _mq(self, properties: dict[str, Any], location: Location) -> dict[str, Any] | None:
        broker = properties.get("Broker", properties.get("EventSourceArn"))
        queues = [str(queue) for queue in properties.get("Queues", [])]
        engine = self.broker_engine(broker)
        broker_arn = str(broker)
        if engine is None:
            self.notes.unsupported(
                (*location, "Broker"),
                "the broker's engine is unknown (no "
                "AWS::AmazonMQ::Broker in the template): read as RabbitMQ",
            )
            engine = "RABBITMQ"
        if properties.get("SourceAccessConfigurations"):
            self.notes.info(
                (*location, "SourceAccessConfigurations"),
                "credentials in Secrets Manager are not read: give "
                "them in the broker URL's variable",
            )
        if engine.upper() == "ACTIVEMQ":
            url = EnvReference("${ACTIVEMQ_URL:-stomp://localhost:61613}")
            self.notes.info(
                location,
                "the broker URL: ACTIVEMQ_URL (default stomp://localhost:61613)",
            )
            return {
                "type": "activemq",
                "url": url,
                "queues": queues,
                "broker_arn": broker_arn,
            }
        url = EnvReference("${RABBITMQ_URL:-amqp://localhost:5672}")
        self.notes.info(location, "the broker URL: RABBITMQ_URL (default amqp://localhost:5672)")
        source: dict[str, Any] = {"type": "rabbitmq", "url": url, "queues": queues}
        # The virtual host comes as a VIRTUAL_HOST access configuration (esm-reference.md 2).
        for item in properties.get("SourceAccessConfigurations", []) or []:
            if isinstance(item, dict) and item.get("Type") == "VIRTUAL_HOST":
                source["virtual_host"] = str(item.get("URI"))
        if broker_arn.startswith("arn:aws:mq:"):
            source["broker_arn"] = broker_arn
        return source

    broker_engines: dict[str, str] | None = None

    def broker_engine(self, broker: Any) -> str | None:
        if isinstance(broker, ResourceValue) and self.broker_engines is not None:
            return self.broker_engines.get(broker.logical_id)
        return None


def _starting(properties: dict[str, Any]) -> dict[str, Any]:
    """StartingPosition, which a stream mapping must name on AWS (esm-reference.md 2);
    LATEST where a template leaves it out, as a local default."""
    starting: dict[str, Any] = {
        "starting_position": str(properties.get("StartingPosition", "LATEST"))
    }
    if "StartingPositionTimestamp" in properties:
        starting["starting_position_timestamp"] = _number(properties["StartingPositionTimestamp"])
    return starting


def _pattern(value: Any) -> Any:
    """A filter pattern: AWS takes JSON text; a mapping (some templates write one) too."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _number(value: Any) -> Any:
    """CloudFormation passes numbers and booleans as strings too ("10", "true")."""
    if isinstance(value, str):
        text = value.strip()
        if text.lower() in ("true", "false"):
            return text.lower() == "true"
        try:
            return int(text)
        except ValueError:
            try:
                return float(text)
            except ValueError:
                return value
    if isinstance(value, list):
        return [str(item) for item in value]
    return value


number = _number


def _short_name(arn: str) -> str:
    name = arn.rsplit(":", 1)[-1].rsplit("/", 1)[-1]
    return name.removesuffix(".fifo") or "destination"
