"""Settings of the `mqtt` source.

The URL may hold a password, so it is a SecretStr and only its redacted form is ever
logged or written into errors; `server_address` (`mqtt://host:port`) is what records
carry.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal
from urllib.parse import unquote, urlsplit

from pydantic import Field, SecretStr, field_validator

from bridge.config.plugins import (
    STREAM,
    ConfigPath,
    Identity,
    PathSetting,
    SourceConfig,
    SourceContext,
)
from bridge.filtering.criteria import DataKey
from bridge.protocols import Source
from bridge.redaction import redact_url

SCHEMES = {"mqtt": 1883, "mqtts": 8883}
# MQTT 5's Session Expiry Interval that means "never" (MQTT 5.0, 3.1.2.11.2).
NEVER_EXPIRES = 0xFFFFFFFF
MAX_RECEIVE_MAXIMUM = 65535
# The largest packet MQTT can carry (MQTT 5.0, 2.2.3: a Remaining Length of 268435455).
MAX_PACKET_BYTES = 268_435_460
# Filter patterns look into the decoded payload under this key (esm-reference.md 11.2).
MQTT_PAYLOAD = DataKey("payload", ("payload",), "base64")

TopicFilter = Annotated[str, Field(min_length=1, max_length=65535)]


def check_topic_filter(topic: str) -> None:
    """Raise ValueError unless `topic` is a valid MQTT topic filter (MQTT 5.0, 4.7):
    `#` only as the whole last level, `+` only as a whole level, no NUL."""
    if "\0" in topic:
        raise ValueError(f"{topic!r}: a topic filter cannot hold NUL")
    levels = topic.split("/")
    for index, level in enumerate(levels):
        if "#" in level and (level != "#" or index != len(levels) - 1):
            raise ValueError(f"{topic!r}: '#' must be the whole last level (sensors/#)")
        if "+" in level and level != "+":
            raise ValueError(f"{topic!r}: '+' must be a whole level (sensors/+/temperature)")


def check_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES:
        raise ValueError("must start with mqtt:// or mqtts:// (TLS)")
    if not parts.hostname:
        raise ValueError("must name a host, e.g. mqtt://localhost:1883")
    try:
        _ = parts.port
    except ValueError:
        raise ValueError("has an invalid port") from None
    if parts.path.strip("/") or parts.query:
        raise ValueError("takes no path or query: mqtt://[user:password@]host:port")


class Endpoint:
    """Where the broker is and how to log in, read from the URL."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.tls = parts.scheme == "mqtts"
        self.host = parts.hostname or "localhost"
        self.port = parts.port or SCHEMES[parts.scheme]
        self.username = unquote(parts.username) if parts.username is not None else None
        self.password = unquote(parts.password) if parts.password is not None else None
        host = f"[{self.host}]" if ":" in self.host else self.host
        # Credential-free: what records and failure records name the broker by.
        self.address = f"{parts.scheme}://{host}:{self.port}"


class MqttSourceConfig(SourceConfig):
    """Messages of MQTT topics, received at QoS 1 in a persistent session.

    The daemon connects with a fixed client id and Clean Start off, and its session
    outlives the connection (`session_expiry_seconds`): what is published while the
    daemon is down is kept by the broker and delivered when it is back. A message is
    acknowledged (PUBACK) only once its outcome is settled, so a message whose outcome
    was not settled when the daemon died is delivered again. MQTT has no negative
    acknowledgement and a broker resends an unacknowledged message only on a new
    connection, so the stream family's rules apply: the bridge retries a failed batch
    itself, in order, then gives it to the on-failure destination. Needs MQTT 5.
    """

    type: Literal["mqtt"]
    family = STREAM
    filter_data_key = MQTT_PAYLOAD
    url: SecretStr = Field(
        description="mqtt://[user:password@]host:port, or mqtts:// for TLS (port 8883)."
    )
    ca_file: PathSetting | None = Field(
        None,
        description="mqtts:// only: PEM file of the certificate authorities to trust "
        "(default: the system's).",
    )
    topics: list[TopicFilter] = Field(
        min_length=1,
        description="Topic filters to subscribe to; `+` matches one level, `#` the rest.",
    )
    client_id: str = Field(
        min_length=1,
        max_length=65535,
        description="The client id: it names the broker-side session, so it must be "
        "stable across restarts and used by this mapping only.",
    )
    qos: Literal[1] = Field(
        1,
        description="Subscription QoS. Only 1: QoS 0 is never redelivered, and a QoS 2 "
        "message is released by the client before the function has run.",
    )
    session_expiry_seconds: int = Field(
        NEVER_EXPIRES,
        ge=1,
        le=NEVER_EXPIRES,
        description="How long the broker keeps the session (and queues messages for it) "
        "while the daemon is disconnected; 4294967295: never expires.",
    )
    receive_maximum: int | None = Field(
        None,
        ge=1,
        le=MAX_RECEIVE_MAXIMUM,
        description="Unacknowledged messages the broker may send at once; default: four "
        "batches per lane, at least 1000.",
    )
    keepalive_seconds: int = Field(
        30,
        ge=5,
        le=65535,
        description="MQTT keep alive; a dead connection is noticed within about twice this.",
    )
    max_buffered_messages: int = Field(
        10_000,
        ge=1,
        le=10_000_000,
        description="Messages received and not yet read by the mapping; once this many "
        "wait, a QoS 0 message is dropped (logged and counted). QoS 1 messages are never "
        "dropped: the Receive Maximum bounds them.",
    )
    max_message_bytes: int = Field(
        8 * 1024 * 1024,
        ge=1024,
        le=MAX_PACKET_BYTES,
        description="The MQTT 5 Maximum Packet Size sent on CONNECT: the broker discards a "
        "larger message for this client instead of sending it (MQTT 5.0, 3.1.2.24).",
    )
    event_shape: Literal["records", "iot-rule"] = Field(
        "records",
        description='records: {"Records": [...]} batches; iot-rule: the payload itself, '
        "as an AWS IoT rule `SELECT *` invokes Lambda (needs batch_size 1).",
    )
    topic_key: str | None = Field(
        None,
        min_length=1,
        description="iot-rule shape: add the topic under this key, as `SELECT *, topic() "
        "AS <key>` does.",
    )

    @field_validator("url")
    @classmethod
    def _valid_url(cls, url: SecretStr) -> SecretStr:
        check_url(url.get_secret_value())
        return url

    @field_validator("topics")
    @classmethod
    def _valid_topics(cls, topics: list[str]) -> list[str]:
        for topic in topics:
            check_topic_filter(topic)
        repeated = sorted({topic for topic in topics if topics.count(topic) > 1})
        if repeated:
            raise ValueError(f"topics listed more than once: {', '.join(repeated)}")
        return topics

    def check(self) -> list[tuple[ConfigPath, str]]:
        problems: list[tuple[ConfigPath, str]] = []
        if self.topic_key is not None and self.event_shape != "iot-rule":
            problems.append((("topic_key",), "applies only to event_shape iot-rule"))
        if self.ca_file is not None:
            if not self.endpoint().tls:
                problems.append((("ca_file",), "applies only to mqtts:// URLs"))
            elif not self.ca_file.is_file():
                problems.append((("ca_file",), f"{self.ca_file} is not a file"))
        return problems

    def check_mapping(self, mapping: Any) -> list[tuple[ConfigPath, str]]:
        """The iot-rule shape is one message per invocation, as an IoT rule invokes
        Lambda, and has no item ids for a partial batch response."""
        problems: list[tuple[ConfigPath, str]] = []
        if self.event_shape == "iot-rule":
            if mapping.batch_size != 1:
                problems.append((("batch_size",), "must be 1 for event_shape iot-rule"))
            if mapping.function_response_types:
                problems.append(
                    (("function_response_types",), "do not apply to event_shape iot-rule")
                )
        if (
            self.receive_maximum is not None
            and mapping.batch_size is not None
            and self.receive_maximum < mapping.batch_size
        ):
            problems.append(
                (("source", "receive_maximum"), "must be at least batch_size, or no batch fills")
            )
        return problems

    def redacted_url(self) -> str:
        return redact_url(self.url.get_secret_value())

    def endpoint(self) -> Endpoint:
        return Endpoint(self.url.get_secret_value())

    def source_id(self) -> str:
        return f"mqtt:{self.endpoint().address}|{self.client_id}|{','.join(self.topics)}"

    def effective_receive_maximum(self, batch_size: int, lanes: int) -> int:
        if self.receive_maximum is not None:
            return self.receive_maximum
        return min(MAX_RECEIVE_MAXIMUM, max(1000, 4 * batch_size * lanes))

    def build(self, context: SourceContext) -> Source:
        from connectors.mqtt.source import MqttSource

        return MqttSource(self, context)

    @classmethod
    def sample_event(cls, count: int, identity: Identity) -> bytes:
        from connectors.mqtt.events import MessageRecords, sample_messages

        builder = MessageRecords(
            broker="mqtt://localhost:1883", client_id="lambda-bridge-sample", connection="sample"
        )
        records = [
            builder.record(message, 1_790_000_000.0 + index * 0.25)
            for index, message in enumerate(sample_messages(count))
        ]
        return builder.formatter("records", None).encode_event(records)
