"""Settings of the `nats` source: a JetStream stream read through a durable pull consumer
(no client library import here).

The URL may hold a user and password or a token, so it is kept as a SecretStr and only
its redacted form is ever logged; `server_address` is the credential-free
`nats://host:port` written into records.
"""

from __future__ import annotations

import re
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from bridge.config.plugins import (
    QUEUE,
    ConfigPath,
    Identity,
    PathSetting,
    SourceConfig,
    SourceContext,
)
from bridge.filtering.criteria import MQ_DATA
from bridge.protocols import Source
from bridge.redaction import redact_url

SCHEMES = ("nats", "tls")
DEFAULT_PORT = 4222
# The message body, base64 in the record, decoded as UTF-8 and parsed when it is JSON;
# a body that is not text, or a pattern and body of different kinds, leave only the
# metadata to match, as for Amazon MQ's `data` (esm-reference.md 11.2, 11.4).
# Stream and consumer names: no whitespace, `.`, `*`, `>`, path separators (NATS ADR-6).
_NAME = r"^[^\s.*>/\\]{1,255}$"
_SUBJECT_TOKEN = re.compile(r"^[^\s]+$")


def _servers(url: str) -> list[str]:
    return [part.strip() for part in url.split(",") if part.strip()]


def check_url(url: str) -> None:
    """Raise ValueError unless `url` is one or more comma-separated nats:// or tls:// URLs."""
    servers = _servers(url)
    if not servers:
        raise ValueError("must name a server, e.g. nats://localhost:4222")
    for server in servers:
        parts = urlsplit(server)
        if parts.scheme not in SCHEMES:
            raise ValueError("each server must start with nats:// or tls://")
        if not parts.hostname:
            raise ValueError("each server needs a host, e.g. nats://localhost:4222")
        try:
            _ = parts.port
        except ValueError:
            raise ValueError("has an invalid port") from None


def redacted_url(url: str) -> str:
    return ",".join(redact_url(server) for server in _servers(url))


def server_address(url: str) -> str:
    """`nats://host:port` of the first server, never credentials."""
    parts = urlsplit(_servers(url)[0])
    host = parts.hostname or "localhost"
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}:{parts.port or DEFAULT_PORT}"


def check_subject(subject: str) -> None:
    tokens = subject.split(".")
    if any(not token or not _SUBJECT_TOKEN.match(token) for token in tokens):
        raise ValueError("must be a NATS subject: dot-separated tokens without spaces")
    if ">" in tokens[:-1] or any(token != ">" and ">" in token for token in tokens):
        raise ValueError("`>` may only be the last token of a subject")
    if any(token != "*" and "*" in token for token in tokens):
        raise ValueError("`*` must be a whole token of a subject")


class NatsSourceConfig(SourceConfig):
    """Messages of a JetStream stream, read through a durable pull consumer, as records
    modelled on SQS messages (esm-reference.md 1.2, 5).

    The queue family's settings apply: a message is acknowledged once its batch succeeded
    or it was filtered out; a failed one is negatively acknowledged (`nak`) and the server
    delivers it again, up to the consumer's `max_deliver`, as an SQS queue's redrive
    policy decides about its messages (5.1). With ReportBatchItemFailures only the reported
    messages are nak'ed (5.2). With `ordered_by_subject`, the messages of each subject are
    delivered in order, one batch at a time per subject, as an SQS FIFO message group (5.3).
    """

    type: Literal["nats"]
    family = QUEUE
    filter_data_key = MQ_DATA
    url: SecretStr = Field(
        description="nats://[user:password@]host:4222 (tls:// for TLS); several servers "
        "of a cluster separated by commas."
    )
    stream: str = Field(pattern=_NAME, description="The JetStream stream to read.")
    subject: str | None = Field(
        None,
        description="The consumer's filter subject (wildcards allowed, e.g. orders.>); "
        "default: every subject of the stream.",
    )
    consumer: str | None = Field(
        None,
        pattern=_NAME,
        description="The durable consumer's name; default: the mapping's name. Created if "
        "missing; an existing one is used with its own settings.",
    )
    credentials_file: PathSetting | None = Field(
        None, description="A NATS .creds file (user JWT and NKey seed)."
    )
    ack_wait_seconds: float = Field(
        30.0,
        ge=1,
        le=86_400,
        description="The consumer's ack wait: an unacknowledged message is delivered again "
        "after this long. Messages with the bridge are kept in progress (+WPI) meanwhile.",
    )
    max_deliver: int = Field(
        -1,
        ge=-1,
        description="How often the server delivers a message at most (-1: without limit); "
        "a message failed that often is no longer delivered.",
    )
    nak_delay_seconds: list[float] = Field(
        default_factory=list,
        description="How long a failed message waits before it is delivered again: the "
        "n-th value after its n-th delivery, the last one from then on; empty: at once.",
    )
    ordered_by_subject: bool = Field(
        False,
        description="Deliver the messages of each subject in order, one batch at a time "
        "per subject; a failure holds its subject's later messages back until it is "
        "delivered again.",
    )
    deliver_policy: Literal["all", "new"] = Field(
        "all",
        description="Where a new consumer starts: every message in the stream (all) or "
        "the ones that arrive from now on (new). An existing consumer keeps its position.",
    )
    create_stream: bool = Field(
        False,
        description="Create the stream if it is missing, on `subject` (file storage, "
        "limits retention); otherwise a missing stream fails the mapping.",
    )
    fetch_wait_seconds: float = Field(
        1.0, gt=0, le=5, description="How long one pull request waits for messages."
    )

    @field_validator("url")
    @classmethod
    def _check_url(cls, url: SecretStr) -> SecretStr:
        check_url(url.get_secret_value())
        return url

    @field_validator("subject")
    @classmethod
    def _check_subject(cls, subject: str | None) -> str | None:
        if subject is not None:
            check_subject(subject)
        return subject

    @field_validator("max_deliver")
    @classmethod
    def _not_zero(cls, value: int) -> int:
        if value == 0:
            raise ValueError("must be -1 (without limit) or at least 1")
        return value

    @field_validator("nak_delay_seconds")
    @classmethod
    def _delays(cls, delays: list[float]) -> list[float]:
        if any(delay < 0 or delay > 86_400 for delay in delays):
            raise ValueError("each delay must be between 0 and 86400 seconds")
        return delays

    @model_validator(mode="after")
    def _stream_needs_subject(self) -> NatsSourceConfig:
        if self.create_stream and self.subject is None:
            raise ValueError("create_stream needs `subject`: the subjects the stream takes")
        return self

    def redacted_url(self) -> str:
        return redacted_url(self.url.get_secret_value())

    def server_address(self) -> str:
        return server_address(self.url.get_secret_value())

    def consumer_name(self, mapping: str) -> str:
        return self.consumer or mapping

    def nak_delay(self, delivered: int) -> float | None:
        """The delay of the nak after a message's `delivered`-th delivery; None: at once."""
        delays = self.nak_delay_seconds
        if not delays:
            return None
        delay = delays[min(max(delivered, 1), len(delays)) - 1]
        return delay or None

    def source_id(self) -> str:
        consumer = self.consumer or "<mapping>"
        return f"nats:{self.redacted_url()}|{self.stream}|{consumer}"

    def check_mapping(self, mapping: Any) -> list[tuple[ConfigPath, str]]:
        """The consumer defaults to the mapping's name, which may hold a `.`: a NATS
        consumer name may not."""
        name = getattr(mapping, "name", "")
        if self.consumer is None and "." in name:
            return [
                (
                    ("source", "consumer"),
                    f"the mapping's name {name!r} holds a '.', which a NATS consumer name "
                    "cannot: set consumer",
                )
            ]
        return []

    def build(self, context: SourceContext) -> Source:
        from connectors.nats.source import NatsSource

        return NatsSource(self, context)

    @classmethod
    def sample_event(cls, count: int, identity: Identity) -> bytes:
        from connectors.nats.events import JetStreamRecords, sample_message

        records = JetStreamRecords(
            server="nats://localhost:4222",
            stream="ORDERS",
            consumer="orders",
            region=identity.region,
            ordered=False,
        )
        return records.formatter().encode_event(
            [records.record(*sample_message(n)) for n in range(count)]
        )
