"""Settings of the `rabbitmq` source (Amazon MQ for RabbitMQ; no client import here).

The broker is named by an `amqp://` or `amqps://` URL. Credentials, as Lambda's
`BASIC_AUTH` secret holds them, go either in the URL's user info or in `username` and
`password` (which win); both the URL and the password are secrets, and only the
redacted URL is ever logged or written into ids. The virtual host comes from the URL's
path or from `virtual_host` (Lambda's `VIRTUAL_HOST` access configuration), `/` if
neither says.
"""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any, Literal
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from bridge.config.plugins import (
    AMAZON_MQ,
    Identity,
    SourceConfig,
    SourceContext,
)
from bridge.filtering.criteria import MQ_DATA
from bridge.protocols import Source
from bridge.redaction import redact_url

SCHEMES = ("amqp", "amqps")
DEFAULT_VIRTUAL_HOST = "/"
# AMQP 0-9-1's prefetch count is a 16-bit number.
MAX_PREFETCH = 65_535

# RabbitMQ mappings run one batch at a time (one execution environment per mapping,
# esm-reference.md 13), and take no scaling_config; `maximum_concurrency` raises that, as
# AWS support can.
RABBITMQ = dataclasses.replace(
    AMAZON_MQ,
    settings=AMAZON_MQ.settings - {"scaling_config"},
    concurrency_default=1,
)

# Amazon MQ's data key is `data`, base64, decoded as UTF-8 first; a JSON pattern part
# that meets a plain-text message (or the other way round) leaves only the metadata to
# match (esm-reference.md 11.2, 11.4).


def check_url(url: str) -> None:
    """Raise ValueError unless `url` is an amqp:// or amqps:// URL with a host."""
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES:
        raise ValueError("must start with amqp:// or amqps://")
    try:
        _ = parts.port
    except ValueError:
        raise ValueError("has an invalid port") from None
    if not parts.hostname:
        raise ValueError("needs a host, e.g. amqp://broker.example.com:5672/")


def _validated_url(url: SecretStr) -> SecretStr:
    check_url(url.get_secret_value())
    return url


class RabbitMqSourceConfig(SourceConfig):
    """Messages of one RabbitMQ queue, as Lambda delivers Amazon MQ for RabbitMQ
    (esm-reference.md 1.8, 8).

    A message is acknowledged once its batch succeeded, or when a filter leaves it out
    (11.5); a failed batch is handed back to the broker whole (basic.nack with requeue)
    and comes again with `redelivered: true`, until it succeeds or the broker lets the
    messages expire (message TTL, a quorum queue's delivery limit, a dead-letter
    exchange). Messages the bridge holds when its connection closes are redelivered by
    the broker.
    """

    type: Literal["rabbitmq"]
    family = RABBITMQ
    filter_data_key = MQ_DATA
    url: SecretStr = Field(
        description="amqp://[user:password@]host:port[/vhost] or amqps:// for TLS "
        "(Amazon MQ brokers listen on amqps://...:5671).",
    )
    queues: list[str] = Field(
        min_length=1,
        max_length=1,
        description="The queue to read; one, as Lambda allows one queue per mapping.",
    )
    virtual_host: str | None = Field(
        None,
        min_length=1,
        description="The virtual host (Lambda's VIRTUAL_HOST); default: the URL's path, else /.",
    )
    username: str | None = Field(
        None, min_length=1, description="User name (BASIC_AUTH); default: the URL's."
    )
    password: SecretStr | None = Field(
        None, description="Password (BASIC_AUTH), e.g. ${RABBITMQ_PASSWORD}; default: the URL's."
    )
    broker_arn: str | None = Field(
        None,
        pattern=r"^arn:aws[a-z-]*:mq:[a-z0-9-]+:\d{12}:broker:[^:]+:b-[0-9a-f-]+$",
        description="The eventSourceArn events carry; default: one made up from the host.",
    )
    prefetch_count: int | None = Field(
        None,
        ge=1,
        le=MAX_PREFETCH,
        description="Unacknowledged messages the broker hands the bridge at once; "
        "default: batch_size x maximum_concurrency.",
    )
    requeue_delay_seconds: float = Field(
        1.0,
        ge=0,
        le=300,
        description="How long a failed batch is held before it is handed back to the "
        "broker, so a failing function is not called in a tight loop.",
    )
    connect_timeout_seconds: float = Field(
        10.0, gt=0, le=300, description="How long connecting to the broker may take."
    )

    _check_url = field_validator("url")(_validated_url)

    @field_validator("queues")
    @classmethod
    def _queue_names(cls, queues: list[str]) -> list[str]:
        for queue in queues:
            if not 1 <= len(queue) <= 255:
                raise ValueError(f"queue name {queue!r} must be 1 to 255 characters")
        return queues

    @model_validator(mode="after")
    def _one_virtual_host(self) -> RabbitMqSourceConfig:
        in_url = self._url_virtual_host()
        if in_url is not None and self.virtual_host is not None and in_url != self.virtual_host:
            raise ValueError(
                f"the URL names virtual host {in_url!r} and virtual_host says "
                f"{self.virtual_host!r}; give it once"
            )
        return self

    def _url_virtual_host(self) -> str | None:
        path = urlsplit(self.url.get_secret_value()).path
        return unquote(path[1:]) if len(path) > 1 else None

    @property
    def queue(self) -> str:
        return self.queues[0]

    @property
    def vhost(self) -> str:
        return self.virtual_host or self._url_virtual_host() or DEFAULT_VIRTUAL_HOST

    @property
    def host(self) -> str:
        return urlsplit(self.url.get_secret_value()).hostname or "localhost"

    def redacted_url(self) -> str:
        return redact_url(self.url.get_secret_value())

    def connection_url(self) -> str:
        """The URL the client connects with: `username`/`password` put in, and the
        virtual host as its path. Never log it."""
        parts = urlsplit(self.url.get_secret_value())
        user = self.username if self.username is not None else unquote(parts.username or "")
        password = (
            self.password.get_secret_value()
            if self.password is not None
            else unquote(parts.password or "")
        )
        host = parts.hostname or "localhost"
        if ":" in host:
            host = f"[{host}]"
        netloc = host if parts.port is None else f"{host}:{parts.port}"
        if user or password:
            netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{netloc}"
        path = "/" + quote(self.vhost, safe="")
        return urlunsplit((parts.scheme, netloc, path, parts.query, ""))

    def arn_for(self, identity: Identity) -> str:
        """`broker_arn`, else an Amazon MQ broker ARN named after the host, with an id
        that stays the same for the same host and port."""
        if self.broker_arn is not None:
            return self.broker_arn
        parts = urlsplit(self.url.get_secret_value())
        name = "".join(c if c.isalnum() or c in "-_" else "-" for c in self.host)[:50]
        broker_id = uuid.uuid5(uuid.NAMESPACE_URL, f"{parts.scheme}://{self.host}:{parts.port}")
        return f"arn:aws:mq:{identity.region}:{identity.account_id}:broker:{name}:b-{broker_id}"

    def source_id(self) -> str:
        return f"rabbitmq:{self.redacted_url()}|{self.vhost}|{self.queue}"

    def api_description(self, mapping: str, identity: Identity) -> dict[str, Any]:
        return {
            "EventSourceArn": self.arn_for(identity),
            "Queues": list(self.queues),
            "SourceAccessConfigurations": [{"Type": "VIRTUAL_HOST", "URI": self.vhost}],
        }

    def build(self, context: SourceContext) -> Source:
        from connectors.rabbitmq.source import RabbitMqSource

        return RabbitMqSource(self, context)

    @classmethod
    def sample_event(cls, count: int, identity: Identity) -> bytes:
        from connectors.rabbitmq.events import RabbitMqEventFormatter, sample_records

        arn = (
            f"arn:aws:mq:{identity.region}:{identity.account_id}:broker:pizzaBroker:"
            "b-9bcfa592-423a-4942-879d-eb284b418fc8"
        )
        formatter = RabbitMqEventFormatter(arn)
        return formatter.encode_event(sample_records(count))
