"""Settings of the `kafka` source and destination."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from bridge.config.plugins import (
    KAFKA,
    BuildContext,
    ConfigPath,
    DestinationConfig,
    Identity,
    PathSetting,
    SourceConfig,
    SourceContext,
    StrictModel,
    check_start_timestamp,
)
from bridge.failurestores import FailureStore
from bridge.filtering.criteria import KAFKA_VALUE
from bridge.protocols import Destination, Source

DESTINATION_SCHEME = "kafka://"


class KafkaConnectionConfig(StrictModel):
    """How to reach the cluster: shared by the source and the destination."""

    bootstrap_servers: list[str] = Field(
        min_length=1, max_length=10, description="host:port list, or one comma-separated string."
    )
    client_id: str = "lambda-bridge"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_ca_file: PathSetting | None = None
    ssl_cert_file: PathSetting | None = None
    ssl_key_file: PathSetting | None = None
    ssl_key_password: SecretStr | None = None
    ssl_check_hostname: bool = True

    @field_validator("bootstrap_servers", mode="before")
    @classmethod
    def _split_servers(cls, value: object) -> object:
        if isinstance(value, str):
            return [server.strip() for server in value.split(",") if server.strip()]
        return value

    @field_validator("bootstrap_servers")
    @classmethod
    def _host_and_port(cls, servers: list[str]) -> list[str]:
        for server in servers:
            host, _, port = server.rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"{server!r} is not host:port")
        return servers

    @model_validator(mode="after")
    def _sasl_needs_credentials(self) -> KafkaConnectionConfig:
        if self.security_protocol.startswith("SASL_"):
            missing = [
                name
                for name in ("sasl_mechanism", "sasl_username", "sasl_password")
                if getattr(self, name) is None
            ]
            if missing:
                raise ValueError(
                    f"security_protocol {self.security_protocol} needs {', '.join(missing)}"
                )
        return self

    def connection_problems(self) -> list[tuple[ConfigPath, str]]:
        return [
            ((name,), f"{str(path)!r} does not exist")
            for name in ("ssl_ca_file", "ssl_cert_file", "ssl_key_file")
            if (path := getattr(self, name)) is not None and not path.is_file()
        ]

    def connection(self) -> KafkaConnectionConfig:
        return KafkaConnectionConfig.model_validate(
            self.model_dump(include=set(KafkaConnectionConfig.model_fields))
        )

    @property
    def servers_text(self) -> str:
        return ",".join(self.bootstrap_servers)


class KafkaSourceConfig(SourceConfig, KafkaConnectionConfig):
    """A Kafka consumer group reading `topics`, ordered per partition
    (esm-reference.md sections 1.6 and 7)."""

    type: Literal["kafka"]
    family = KAFKA
    filter_data_key = KAFKA_VALUE
    topics: list[str] = Field(
        min_length=1, description="Topics to read (AWS allows one; several are accepted here)."
    )
    consumer_group_id: str | None = Field(
        None, min_length=1, max_length=200, description="Default: lambda-bridge-<mapping name>."
    )
    starting_position: Literal["TRIM_HORIZON", "LATEST", "AT_TIMESTAMP"] = Field(
        description="Where a new group starts; ignored once it has committed offsets (as on AWS)."
    )
    starting_position_timestamp: float | None = Field(
        None, description="Epoch seconds, with AT_TIMESTAMP."
    )
    msk_cluster_arn: str | None = Field(
        None,
        pattern=r"^arn:aws[a-z-]*:kafka:",
        description="Deliver the Amazon MSK event shape (aws:kafka) with this eventSourceArn.",
    )
    fetch_max_wait_seconds: float = Field(
        0.1,
        gt=0,
        le=30,
        description="How long the broker may hold a fetch for data (Kafka's fetch.max.wait.ms).",
    )
    session_timeout_seconds: float = Field(10.0, ge=1, le=300)
    heartbeat_interval_seconds: float = Field(3.0, gt=0, le=100)

    @field_validator("topics")
    @classmethod
    def _topic_names(cls, topics: list[str]) -> list[str]:
        for topic in topics:
            if not 1 <= len(topic) <= 249:
                raise ValueError(f"topic name {topic!r} must be 1 to 249 characters")
        return topics

    @model_validator(mode="after")
    def _timestamp_with_at_timestamp(self) -> KafkaSourceConfig:
        check_start_timestamp(self.starting_position, self.starting_position_timestamp)
        return self

    def check(self) -> list[tuple[ConfigPath, str]]:
        return self.connection_problems()

    def source_id(self) -> str:
        return f"kafka:{self.servers_text}:{','.join(self.topics)}:{self.consumer_group_id or ''}"

    def api_description(self, mapping: str, identity: Identity) -> dict[str, Any]:
        group = {"ConsumerGroupId": self.consumer_group_id or f"lambda-bridge-{mapping}"}
        described: dict[str, Any] = {
            "Topics": list(self.topics),
            "StartingPosition": self.starting_position,
        }
        if self.starting_position_timestamp is not None:
            described["StartingPositionTimestamp"] = self.starting_position_timestamp
        if self.msk_cluster_arn is not None:
            described["EventSourceArn"] = self.msk_cluster_arn
            described["AmazonManagedKafkaEventSourceConfig"] = group
        else:
            servers = {"KAFKA_BOOTSTRAP_SERVERS": list(self.bootstrap_servers)}
            described["SelfManagedEventSource"] = {"Endpoints": servers}
            described["SelfManagedKafkaEventSourceConfig"] = group
        return described

    def destination_for(self, reference: str) -> DestinationConfig | None:
        """`kafka://topic`: the failed records go to a topic of the same cluster, which may
        not be one of the source topics (esm-reference.md 10.4)."""
        if not reference.startswith(DESTINATION_SCHEME):
            return None
        topic = reference.removeprefix(DESTINATION_SCHEME)
        if not topic:
            raise ValueError("kafka:// needs a topic name")
        if topic in self.topics:
            raise ValueError(
                f"the failure topic {topic!r} may not be a source topic of this mapping"
            )
        settings = self.connection().model_dump()
        return KafkaDestinationConfig.model_validate({**settings, "type": "kafka", "topic": topic})

    def build(self, context: SourceContext) -> Source:
        from connectors.kafka.source import KafkaSource

        return KafkaSource(self, context)

    @classmethod
    def sample_event(cls, count: int, identity: Identity) -> bytes:
        from connectors.kafka.events import KafkaEventFormatter, KafkaMessage

        formatter = KafkaEventFormatter("b-1.example.com:9092,b-2.example.com:9092")
        messages = [
            KafkaMessage(
                "orders",
                index % 2,
                100 + index // 2,
                1_790_000_000_000 + index,
                0,
                f"order-{index}".encode(),
                b'{"amount": 42}',
                [("source", b"web")],
            )
            for index in range(count)
        ]
        return formatter.encode_event([formatter.record(message) for message in messages])


class KafkaDestinationConfig(DestinationConfig, KafkaConnectionConfig):
    """Failed records produced to a topic, one message per record, keyed like the original."""

    type: Literal["kafka"]
    topic: str = Field(min_length=1, max_length=249)

    def failure_store(self, destination: str, mapping: Any, context: BuildContext) -> FailureStore:
        from connectors.kafka.failurestore import KafkaFailureStore

        shown = destination.replace("://", "-").replace("/", "-")
        ledger = context.state_dir / "redrive" / f"{mapping.name}.{shown}.jsonl"
        return KafkaFailureStore(self, mapping, ledger)

    def build(self, name: str, context: BuildContext) -> Destination:
        from connectors.kafka.destination import KafkaTopicDestination

        return KafkaTopicDestination(name, self)
