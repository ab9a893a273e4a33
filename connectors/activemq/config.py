"""Settings of the `activemq` source (Amazon MQ for ActiveMQ), without importing its client.

The broker is reached over STOMP (`stomp://` or `stomp+ssl://`, as Amazon MQ lists its
endpoints). The URL may hold the user and password; they may also be given apart
(`username`, `password`). Either way only the redacted URL is ever logged or shown.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal
from urllib.parse import unquote, urlsplit

from pydantic import Field, SecretStr, StringConstraints, field_validator

from bridge.config.plugins import AMAZON_MQ, Identity, SourceConfig, SourceContext
from bridge.filtering.criteria import MQ_DATA
from bridge.protocols import Source
from bridge.redaction import redact_url

SCHEMES = {"stomp": False, "stomp+ssl": True, "stomp+tls": True}
DEFAULT_PORTS = {False: 61613, True: 61614}

# Amazon MQ filters on `data`, decoded as UTF-8; a pattern and a payload that are not
# both JSON (or both text) match on the other fields only (esm-reference.md 11.2, 11.4).


def _check_url(url: SecretStr) -> SecretStr:
    parts = urlsplit(url.get_secret_value())
    if parts.scheme not in SCHEMES:
        raise ValueError("must start with stomp:// or stomp+ssl://")
    if not parts.hostname:
        raise ValueError("must name the broker's host")
    try:
        _ = parts.port
    except ValueError:
        raise ValueError("has an invalid port") from None
    return url


class ActiveMQSourceConfig(SourceConfig):
    """Messages of one ActiveMQ queue, as Lambda delivers Amazon MQ for ActiveMQ
    (esm-reference.md 1.7, 8).

    A message is acknowledged once its batch succeeded (or a filter left it out). After
    a failed batch the messages stay unacknowledged and come again after
    `redelivery_delay_seconds`, marked `redelivered`; one that fails again after
    `maximum_redeliveries` redeliveries is handed back with NACK, which ActiveMQ takes
    as a poison acknowledgement: the broker's dead-letter strategy moves it to its
    dead-letter queue (ActiveMQ.DLQ unless configured otherwise). This is the JMS client
    redelivery policy Lambda's consumer applies with ActiveMQ's defaults.
    """

    type: Literal["activemq"]
    family = AMAZON_MQ
    filter_data_key = MQ_DATA
    url: SecretStr = Field(
        description="stomp://[user:password@]host:port, or stomp+ssl:// for TLS "
        "(Amazon MQ's STOMP endpoint).",
    )
    username: str | None = Field(None, min_length=1, description="Instead of the URL's user.")
    password: SecretStr | None = Field(None, description="Instead of the URL's password.")
    queues: list[
        Annotated[str, StringConstraints(min_length=1, max_length=1000, pattern=r"^[^\s/]")]
    ] = Field(
        min_length=1,
        max_length=1,
        description="The queue to read; one, as Lambda allows one queue per mapping (`Queues`).",
    )
    broker_arn: str | None = Field(
        None,
        pattern=r"^arn:aws[a-z-]*:mq:[a-z0-9-]+:\d{12}:broker:[^:]+:b-[0-9a-f-]+$",
        description="The `eventSourceArn` of events; default: one made of the broker's "
        "address, the account and the region.",
    )
    maximum_redeliveries: int = Field(
        5,
        ge=-1,
        le=1000,
        description="Redeliveries after a failed batch before the message goes to the "
        "dead-letter queue; -1: no limit. Lambda's is 5 (ActiveMQ's own default is 6), "
        "esm-reference.md 8.",
    )
    redelivery_delay_seconds: float = Field(
        1.0,
        ge=0,
        le=3600,
        description="How long a message of a failed batch waits before it comes again "
        "(ActiveMQ's initialRedeliveryDelay, 1 s).",
    )
    prefetch: int | None = Field(
        None,
        ge=1,
        le=100_000,
        description="Messages the broker sends ahead without acknowledgement; default: "
        "batch_size times (maximum_concurrency + 1).",
    )
    heartbeat_seconds: float = Field(
        10.0, ge=0, le=3600, description="STOMP heart-beats; a silent broker is given up."
    )
    connect_timeout_seconds: float = Field(10.0, gt=0, le=300)
    max_message_bytes: int = Field(
        8 * 1024 * 1024,
        ge=1024,
        le=256 * 1024 * 1024,
        description="A message body larger than this is not read: it is acknowledged, "
        "logged and counted as dropped (Lambda drops messages over 6 MB, 8).",
    )

    _check_url = field_validator("url")(_check_url)

    @property
    def queue(self) -> str:
        return self.queues[0]

    @property
    def tls(self) -> bool:
        return SCHEMES[urlsplit(self.url.get_secret_value()).scheme]

    @property
    def address(self) -> tuple[str, int]:
        parts = urlsplit(self.url.get_secret_value())
        return parts.hostname or "localhost", parts.port or DEFAULT_PORTS[self.tls]

    @property
    def credentials(self) -> tuple[str | None, str | None]:
        parts = urlsplit(self.url.get_secret_value())
        login = self.username or (unquote(parts.username) if parts.username else None)
        if self.password is not None:
            return login, self.password.get_secret_value()
        return login, unquote(parts.password) if parts.password is not None else None

    @property
    def redacted_url(self) -> str:
        return redact_url(self.url.get_secret_value())

    def arn(self, identity: Identity) -> str:
        """`broker_arn`, else `arn:aws:mq:<region>:<account>:broker:<host>:b-<uuid>`,
        the uuid derived from host and port so it stays the same across restarts."""
        if self.broker_arn is not None:
            return self.broker_arn
        host, port = self.address
        broker_id = uuid.uuid5(uuid.NAMESPACE_URL, f"stomp://{host}:{port}")
        name = host.split(".")[0] or "broker"
        return f"arn:aws:mq:{identity.region}:{identity.account_id}:broker:{name}:b-{broker_id}"

    def source_id(self) -> str:
        host, port = self.address
        return f"activemq:{host}:{port}:{self.queue}"

    def api_description(self, mapping: str, identity: Identity) -> dict[str, Any]:
        return {"EventSourceArn": self.arn(identity), "Queues": [self.queue]}

    def build(self, context: SourceContext) -> Source:
        from connectors.activemq.source import ActiveMQSource

        return ActiveMQSource(self, context)

    @classmethod
    def sample_event(cls, count: int, identity: Identity) -> bytes:
        from connectors.activemq.events import sample_event

        return sample_event(count, identity)
