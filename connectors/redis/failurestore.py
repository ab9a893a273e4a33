"""The `redis-stream` destination's failure records read back, for `lambda-bridge failures`.

A mapping's records are the destination stream's entries whose `mapping` field names it
(XRANGE, oldest first); a record's id is its entry id. Redriving a record of a
`redis-streams` mapping re-publishes its entries to the stream each came from, in one
MULTI/EXEC (all or none), with their fields as they were (binary values and names
decoded again) plus `lambda-bridge-redriven: <failure id>`; the mapping then delivers
them as new entries. A record of another kind of source is redriven by invoking the
function with its event. What was redriven is kept in a ledger in the daemon's state
folder, `state_dir/redrive/<mapping>.<destination>.jsonl` (the failure stream itself is
left as the daemon wrote it): run redrives where that folder is.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from redis.exceptions import RedisError

from bridge.codec import JSONDecodeError, dumps, loads
from bridge.failurestores import (
    REDRIVEN_MARK,
    Redeliver,
    RedriveError,
    StoredFailure,
    well_formed,
)
from connectors.redis.client import connect
from connectors.redis.config import RedisStreamDestinationConfig, RedisStreamsSourceConfig

PAGE = 500
REPLY_TIMEOUT_SECONDS = 10.0
NAME_PREFIX = "base64:"


class RedisFailureStore:
    def __init__(
        self, config: RedisStreamDestinationConfig, mapping: Any, ledger_path: Path
    ) -> None:
        self._config = config
        self._mapping = str(mapping.name)
        source = mapping.source
        self._source = source if isinstance(source, RedisStreamsSourceConfig) else None
        self.where = f"stream {config.stream!r} of {config.redacted_url()}"
        self.ledger_path = ledger_path
        self._client = connect(config.url.get_secret_value(), reply_timeout=REPLY_TIMEOUT_SECONDS)
        self._source_client = (
            connect(self._source.url.get_secret_value(), reply_timeout=REPLY_TIMEOUT_SECONDS)
            if self._source is not None
            else None
        )

    async def open(self) -> None:
        return None

    async def failures(self) -> list[StoredFailure]:
        found: list[StoredFailure] = []
        start = "-"
        while True:
            try:
                page: list[Any] = (
                    await self._client.xrange(self._config.stream, min=start, count=PAGE) or []
                )
            except (RedisError, OSError) as exc:
                raise RedriveError(f"{self.where}: XRANGE failed: {exc}") from exc
            for entry_id, fields in page:
                failure = self._failure(_text(entry_id), fields or {})
                if failure is not None:
                    found.append(failure)
            if len(page) < PAGE:
                return found
            start = "(" + _text(page[-1][0])

    def _failure(self, entry_id: str, fields: dict[Any, Any]) -> StoredFailure | None:
        named = {_text(name): value for name, value in fields.items()}
        if _text(named.get("mapping", b"")) != self._mapping or "failure" not in named:
            return None
        try:
            document = loads(named["failure"])
        except JSONDecodeError:
            document = None
        if not isinstance(document, dict):
            raise RedriveError(f"{self.where}: entry {entry_id} is not a failure record")
        return StoredFailure(entry_id, document)

    async def redrive(self, failure: StoredFailure, redeliver: Redeliver) -> bool:
        payload = failure.document.get("payload")
        if not isinstance(payload, dict):
            raise RedriveError(f"{failure.id} holds no records (no payload)")
        if self._source is None or self._source_client is None:
            return await redeliver(dumps(payload))
        with well_formed(failure.id):
            entries = [_entry(record, failure.id) for record in payload.get("Records", [])]
        for stream, _ in entries:
            if stream not in self._source.streams:
                raise RedriveError(f"{failure.id}: stream {stream!r} is not read by the mapping")
        try:
            async with self._source_client.pipeline(transaction=True) as pipe:
                for stream, fields in entries:
                    pipe.xadd(stream, fields)  # type: ignore[arg-type]
                await pipe.execute()
        except (RedisError, OSError) as exc:
            raise RedriveError(f"{failure.id}: XADD to the source failed: {exc}") from exc
        return True

    async def close(self) -> None:
        await self._client.aclose()
        if self._source_client is not None:
            await self._source_client.aclose()


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _name(name: str) -> bytes:
    if name.startswith(NAME_PREFIX):
        return base64.b64decode(name.removeprefix(NAME_PREFIX))
    return name.encode()


def _entry(record: dict[str, Any], failure_id: str) -> tuple[str, dict[bytes, bytes]]:
    """The stream and fields of the entry a redis-streams record was made of (README:
    "redis-streams: records modelled on Kinesis records")."""
    entry = record["redis"]
    fields = {_name(name): str(value).encode() for name, value in entry["fields"].items()}
    fields.update(
        {_name(name): base64.b64decode(value) for name, value in entry["binaryFields"].items()}
    )
    fields[REDRIVEN_MARK.encode()] = failure_id.encode()
    return str(entry["stream"]), fields
