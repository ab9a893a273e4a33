"""Settings of the `redis-streams` source and the `redis-stream` destination.

The URL may hold a password, so it is kept as a SecretStr and only its redacted form
(`redacted_url`) is ever logged or written into ids; `server_arn` is the credential-free
`redis://host:port/db` written into records.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import Field, SecretStr, field_validator

from bridge.config.plugins import (
    STREAM,
    BuildContext,
    DestinationConfig,
    Identity,
    SourceConfig,
    SourceContext,
)
from bridge.failurestores import FailureStore
from bridge.protocols import Destination, Source

SCHEMES = ("redis", "rediss")
DEFAULT_PORT = 6379
REDACTED = "***"
# Query options of redis-py's URL syntax that hold secrets.
SECRET_OPTIONS = frozenset({"password", "ssl_password"})

StreamKey = Annotated[str, Field(min_length=1)]


def check_url(url: str) -> None:
    """Raise ValueError unless `url` is a redis:// or rediss:// URL redis-py can use."""
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES:
        raise ValueError("must start with redis:// or rediss://")
    try:
        _ = parts.port
    except ValueError:
        raise ValueError("has an invalid port") from None
    database = parts.path.strip("/")
    if database and not database.isdigit():
        raise ValueError("path must be a database number, e.g. redis://host:6379/0")


def redacted_url(url: str) -> str:
    """The URL with its password (in the user info or the query) replaced by `***`."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        user_info, _, host = netloc.rpartition("@")
        user = user_info.partition(":")[0]
        netloc = f"{user}:{REDACTED}@{host}"
    query = parts.query
    if query:
        options = parse_qsl(query, keep_blank_values=True)
        query = urlencode(
            [(key, REDACTED if key in SECRET_OPTIONS else value) for key, value in options],
            safe="*",
        )
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def server_arn(url: str) -> str:
    """`redis://host:port/db`: which database records come from, never credentials."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    if ":" in host:
        host = f"[{host}]"
    options = dict(parse_qsl(parts.query))
    database = options.get("db") or parts.path.strip("/") or "0"
    return f"{parts.scheme}://{host}:{parts.port or DEFAULT_PORT}/{database}"


def _validated_url(url: SecretStr) -> SecretStr:
    check_url(url.get_secret_value())
    return url


class RedisStreamsSourceConfig(SourceConfig):
    """Entries of Redis streams, read through a consumer group, as Kinesis-like records.

    Each stream is read in order by one daemon at a time: daemons sharing the group
    split the streams between them through leases held in Redis, and a daemon that
    takes a stream over first claims what its previous owner left unacknowledged. The
    stream family's settings apply (retries, record age, bisect, on-failure
    destination); each stream is one lane, so `parallelization_factor` has no effect.
    Every consumer of a group must list the same streams. Needs Redis 6.2 or later
    (XAUTOCLAIM).
    """

    type: Literal["redis-streams"]
    family = STREAM
    url: SecretStr = Field(
        description="redis://[user:password@]host:port/db or rediss:// for TLS.",
    )
    streams: list[StreamKey] = Field(min_length=1, description="Stream keys to read.")
    group: str | None = Field(
        None, min_length=1, description="Consumer group; default: lambda-bridge-<mapping>."
    )
    consumer: str | None = Field(
        None,
        min_length=1,
        description="Consumer name; default: <hostname>-<hash of the state folder>, "
        "stable across restarts.",
    )
    starting_position: Literal["TRIM_HORIZON", "LATEST"] = Field(
        description="Where a new group starts: TRIM_HORIZON (id 0) or LATEST ($). "
        "An existing group keeps its position.",
    )
    claim_idle_after_seconds: float = Field(
        30.0,
        ge=0,
        le=86400,
        description="Entries a former owner of a stream left unacknowledged are claimed "
        "once idle this long.",
    )
    lease_ttl_seconds: float = Field(
        10.0,
        ge=1,
        le=3600,
        description="A stream lease (and membership) lapses this long after its holder "
        "stops renewing it; renewed every third of it.",
    )
    block_seconds: float = Field(
        1.0, gt=0, le=60, description="How long one read waits for new entries."
    )
    read_count: int = Field(
        500, ge=1, le=10_000, description="Entries read per stream and request."
    )

    _check_url = field_validator("url")(_validated_url)

    @field_validator("streams")
    @classmethod
    def _distinct(cls, streams: list[str]) -> list[str]:
        repeated = sorted({stream for stream in streams if streams.count(stream) > 1})
        if repeated:
            raise ValueError(f"streams listed more than once: {', '.join(repeated)}")
        return streams

    def redacted_url(self) -> str:
        return redacted_url(self.url.get_secret_value())

    def source_id(self) -> str:
        group = self.group or "lambda-bridge-<mapping>"
        return f"redis-streams:{self.redacted_url()}|{','.join(self.streams)}|{group}"

    def build(self, context: SourceContext) -> Source:
        from connectors.redis.source import RedisStreamsSource

        return RedisStreamsSource(self, context)

    @classmethod
    def sample_event(cls, count: int, identity: Identity) -> bytes:
        from connectors.redis.events import EntryRecords

        builder = EntryRecords(server_arn="redis://localhost:6379/0", region=identity.region)
        records = []
        for index in range(count):
            fields = [b"order_id", str(1000 + index).encode(), b"status", b"created"]
            if index % 2:
                fields += [b"thumbnail", b"\x89PNG\r\n\x1a\n"]
            entry_id = f"{1_790_000_000_000 + index * 250}-0"
            records.append(builder.record("orders", entry_id, fields))
        return builder.formatter("lambda-bridge-sample").encode_event(records)


class RedisStreamDestinationConfig(DestinationConfig):
    """Failure records added to a Redis stream, each with the discarded event."""

    type: Literal["redis-stream"]
    url: SecretStr = Field(description="redis://[user:password@]host:port/db or rediss://.")
    stream: StreamKey = Field(description="The stream key failure records are added to.")
    maxlen: int | None = Field(
        None, ge=1, description="Keep about this many entries (XADD MAXLEN ~)."
    )

    _check_url = field_validator("url")(_validated_url)

    def redacted_url(self) -> str:
        return redacted_url(self.url.get_secret_value())

    def failure_store(self, destination: str, mapping: Any, context: BuildContext) -> FailureStore:
        from connectors.redis.failurestore import RedisFailureStore

        ledger = context.state_dir / "redrive" / f"{mapping.name}.{destination}.jsonl"
        return RedisFailureStore(self, mapping, ledger)

    def build(self, name: str, context: BuildContext) -> Destination:
        from connectors.redis.destination import RedisStreamDestination

        return RedisStreamDestination(name, self)
