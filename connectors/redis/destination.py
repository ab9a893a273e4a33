"""The `redis-stream` destination: one stream entry per failure record.

The entry's `failure` field is the on-failure record in AWS's shape with the discarded
event embedded under `payload`, as AWS does for S3 destinations (esm-reference.md
10.2), so the records themselves are kept and can be replayed. `mapping`, `condition`
and `timestamp` are repeated as fields of their own, for filtering without parsing.
"""

from __future__ import annotations

import asyncio

import structlog
from redis.exceptions import AuthenticationError, NoPermissionError, RedisError, ResponseError

from bridge.codec import dumps
from bridge.errors import DestinationError, PermanentDestinationError
from bridge.failures import failure_document, iso_millis
from bridge.protocols import EventFormatter
from bridge.records import Delivery, FailureRecord
from connectors.redis.client import CONNECT_TIMEOUT_SECONDS, connect, is_refusal
from connectors.redis.config import RedisStreamDestinationConfig

REPLY_TIMEOUT_SECONDS = 10.0


class RedisStreamDestination:
    def __init__(self, name: str, config: RedisStreamDestinationConfig) -> None:
        self.name = name
        self.stream = config.stream
        self.maxlen = config.maxlen
        self._url = config.url.get_secret_value()
        self._where = f"destination {name!r} ({config.redacted_url()}, stream {config.stream!r})"
        self._client = connect(self._url, reply_timeout=REPLY_TIMEOUT_SECONDS)
        self._log = structlog.get_logger("connectors.redis").bind(
            destination=name, url=config.redacted_url(), stream=config.stream
        )

    async def start(self) -> None:
        """Check the server is there; an unreachable one is only logged, since the
        dispatcher retries each failure record until it is written."""
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_SECONDS):
                await self._client.ping()
        except (RedisError, OSError) as exc:
            self._log.warning("redis.destination_unreachable", error=str(exc) or repr(exc))

    async def send(self, failure: FailureRecord, formatter: EventFormatter) -> None:
        document = failure_document(failure, formatter, include_payload=True)
        fields: dict[str | bytes, bytes | str] = {
            "failure": dumps(document),
            "mapping": failure.mapping,
            "condition": failure.condition.value,
            "timestamp": iso_millis(failure.timestamp),
        }
        await self._add(fields)

    async def deliver(self, delivery: Delivery) -> None:
        """One entry: the document in its `record` field, beside `origin` and the
        attributes as fields of their own."""
        fields: dict[str | bytes, bytes | str] = {
            "record": delivery.body,
            "origin": delivery.origin,
        }
        fields.update({name: value for name, (_, value) in delivery.attributes.items()})
        await self._add(fields)

    async def _add(self, fields: dict[str | bytes, bytes | str]) -> None:
        try:
            await self._client.xadd(
                self.stream,
                fields,  # type: ignore[arg-type]
                maxlen=self.maxlen,
                approximate=True,
            )
        except (RedisError, OSError) as exc:
            refused = isinstance(exc, AuthenticationError | NoPermissionError) or (
                isinstance(exc, ResponseError) and is_refusal(exc)
            )
            kind = PermanentDestinationError if refused else DestinationError
            raise kind(f"{self._where}: XADD failed: {exc or type(exc).__name__}") from exc

    async def close(self) -> None:
        await self._client.aclose()
