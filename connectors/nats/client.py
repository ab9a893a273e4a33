"""Connecting to NATS and setting up what the source reads: the stream (which must
exist, unless `create_stream`) and the durable pull consumer (created if missing; an
existing one is used with its own settings, and any that differ from the configured
ones are named in one warning line)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import nats.errors
import nats.js.errors
import structlog
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    ConsumerInfo,
    DeliverPolicy,
    StorageType,
    StreamConfig,
)

from bridge.errors import PermanentSourceError, SourceError
from bridge.redaction import describe_error
from connectors.nats.config import NatsSourceConfig

# How long the first connection may take before open() fails (and the mapping retries).
CONNECT_TIMEOUT_SECONDS = 5.0
# Requests to the JetStream API (stream and consumer info, creation).
API_TIMEOUT_SECONDS = 5.0
RECONNECT_WAIT_SECONDS = 0.5
# A connection that went silent (no PONG to three PINGs sent 10 s apart) counts as lost.
PING_INTERVAL_SECONDS = 10
MAX_OUTSTANDING_PINGS = 3


@contextlib.contextmanager
def nats_errors(where: str, doing: str) -> Iterator[None]:
    """Turn the client's errors into SourceErrors naming what was being done."""
    try:
        yield
    except SourceError:
        raise
    except nats.js.errors.NotFoundError as exc:
        raise PermanentSourceError(f"{where}: {doing}: {describe_error(exc)}") from None
    except (TimeoutError, nats.errors.Error, OSError) as exc:
        raise SourceError(f"{where}: {doing} failed: {describe_error(exc)}") from None


@dataclass
class ConnectionEvents:
    """What the connection's callbacks report, for the source's `problem`."""

    on_problem: Callable[[str | None], None]
    on_closed: Callable[[], None]
    last_error: str = ""

    async def error(self, error: Exception) -> None:
        self.last_error = describe_error(error)

    async def disconnected(self) -> None:
        reason = f"disconnected from the NATS server ({self.last_error or 'connection lost'})"
        self.on_problem(reason)

    async def reconnected(self) -> None:
        self.on_problem(None)

    async def closed(self) -> None:
        self.on_closed()


async def connect(
    config: NatsSourceConfig, events: ConnectionEvents, name: str, where: str
) -> Client:
    """Connect, reconnecting for ever once connected; SourceError if the first connection
    does not succeed within CONNECT_TIMEOUT_SECONDS."""
    options: dict[str, Any] = {
        "servers": [part.strip() for part in config.url.get_secret_value().split(",")],
        "name": name,
        "connect_timeout": 2,
        "allow_reconnect": True,
        "max_reconnect_attempts": -1,
        "reconnect_time_wait": RECONNECT_WAIT_SECONDS,
        "ping_interval": PING_INTERVAL_SECONDS,
        "max_outstanding_pings": MAX_OUTSTANDING_PINGS,
        "error_cb": events.error,
        "disconnected_cb": events.disconnected,
        "reconnected_cb": events.reconnected,
        "closed_cb": events.closed,
    }
    if config.credentials_file is not None:
        options["user_credentials"] = str(config.credentials_file)
    client = Client()
    try:
        await asyncio.wait_for(client.connect(**options), CONNECT_TIMEOUT_SECONDS)
    except (TimeoutError, nats.errors.Error, OSError) as exc:
        with contextlib.suppress(Exception):
            await client.close()
        reason = events.last_error or describe_error(exc)
        raise SourceError(f"{where}: cannot connect: {reason}") from None
    return client


async def ensure_stream(js: JetStreamContext, config: NatsSourceConfig, where: str) -> None:
    """The stream must exist; with `create_stream` a missing one is created."""
    try:
        await js.stream_info(config.stream)
        return
    except nats.js.errors.NotFoundError:
        if not config.create_stream:
            raise PermanentSourceError(
                f"{where}: no stream {config.stream!r} on the server (create it, or set "
                "create_stream: true)"
            ) from None
    except nats.errors.NoRespondersError:
        raise SourceError(f"{where}: JetStream is not enabled on the server") from None
    with nats_errors(where, "creating the stream"):
        await js.add_stream(
            StreamConfig(
                name=config.stream, subjects=[config.subject or ""], storage=StorageType.FILE
            )
        )


@dataclass(frozen=True)
class ConsumerSettings:
    """The consumer's settings the source works with (its own, if it existed)."""

    ack_wait: float
    max_deliver: int
    max_ack_pending: int
    # Messages delivered and not yet acknowledged when the source opened.
    ack_pending: int


def wanted_consumer(config: NatsSourceConfig, name: str, max_ack_pending: int) -> ConsumerConfig:
    return ConsumerConfig(
        durable_name=name,
        filter_subject=config.subject,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=config.ack_wait_seconds,
        max_deliver=config.max_deliver,
        max_ack_pending=max_ack_pending,
        deliver_policy=DeliverPolicy.NEW if config.deliver_policy == "new" else DeliverPolicy.ALL,
    )


def differences(wanted: ConsumerConfig, found: ConsumerConfig) -> list[str]:
    """The settings of an existing consumer that are not the configured ones."""
    found_max_deliver = found.max_deliver if found.max_deliver not in (None, 0) else -1
    pairs: list[tuple[str, Any, Any]] = [
        ("filter subject", found.filter_subject or None, wanted.filter_subject),
        ("ack_wait", found.ack_wait, wanted.ack_wait),
        ("max_deliver", found_max_deliver, wanted.max_deliver),
        ("max_ack_pending", found.max_ack_pending, wanted.max_ack_pending),
    ]
    return [f"{label} {have!r} instead of {want!r}" for label, have, want in pairs if have != want]


async def ensure_consumer(
    js: JetStreamContext,
    config: NatsSourceConfig,
    *,
    name: str,
    max_ack_pending: int,
    where: str,
    warn: Callable[[str], None],
) -> ConsumerSettings:
    """Create the durable pull consumer if it is missing; use an existing one as it is."""
    wanted = wanted_consumer(config, name, max_ack_pending)
    info: ConsumerInfo | None = None
    try:
        info = await js.consumer_info(config.stream, name, timeout=API_TIMEOUT_SECONDS)
    except nats.js.errors.NotFoundError:
        pass
    except (TimeoutError, nats.errors.Error, OSError) as exc:
        raise SourceError(
            f"{where}: looking the consumer up failed: {describe_error(exc)}"
        ) from None
    if info is None:
        with nats_errors(where, "creating the consumer"):
            info = await js.add_consumer(config.stream, wanted, timeout=API_TIMEOUT_SECONDS)
    else:
        found = info.config
        if found.deliver_subject:
            raise PermanentSourceError(
                f"{where}: consumer {name!r} is a push consumer; the nats source needs a "
                "pull consumer (delete it, or name another one)"
            )
        if found.ack_policy != AckPolicy.EXPLICIT:
            raise PermanentSourceError(
                f"{where}: consumer {name!r} has ack policy {found.ack_policy}; the nats "
                "source needs explicit acknowledgements"
            )
        changed = differences(wanted, found)
        if changed:
            warn(
                f"consumer {name!r} exists with other settings than configured "
                f"({'; '.join(changed)}); it is used as it is: update or delete it to apply "
                "the configuration"
            )
    settings = info.config
    return ConsumerSettings(
        ack_wait=float(settings.ack_wait or config.ack_wait_seconds),
        max_deliver=settings.max_deliver if settings.max_deliver not in (None, 0) else -1,
        max_ack_pending=settings.max_ack_pending or -1,
        ack_pending=info.num_ack_pending or 0,
    )


async def settle_quietly(
    work: Awaitable[None], log: Any, event: str, count: int, consequence: str
) -> bool:
    """Run a settling request; on a connection fault log it (the server then delivers
    the messages again: nothing is lost) and return False."""
    try:
        await work
    except (TimeoutError, nats.errors.Error, OSError) as exc:
        log.warning(event, messages=count, error=describe_error(exc), consequence=consequence)
        return False
    return True


def logger(mapping: str, where: str) -> Any:
    return structlog.get_logger("connectors.nats").bind(mapping=mapping, source=where)
