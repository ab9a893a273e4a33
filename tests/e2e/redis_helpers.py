"""Writing to and inspecting Redis streams from tests."""

from __future__ import annotations

import json
import uuid
from typing import Any

import redis


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url)


def add(
    url: str, stream: str, bodies: list[dict[str, Any]], ids: list[str] | None = None
) -> list[str]:
    """XADD each body as the field `body`; with `ids`, at those entry ids."""
    connection = client(url)
    try:
        pipe = connection.pipeline(transaction=False)
        for index, body in enumerate(bodies):
            pipe.xadd(stream, {"body": json.dumps(body)}, id=ids[index] if ids else "*")
        return [entry.decode() for entry in pipe.execute()]
    finally:
        connection.close()


def spread(url: str, streams: list[str], count: int, start: int = 0, **extra: Any) -> None:
    """Bodies {"n": n} for n in [start, start+count), round-robin over `streams`."""
    for offset, stream in enumerate(streams):
        numbers = range(start + offset, start + count, len(streams))
        add(url, stream, [{"n": n, **extra} for n in numbers])


def pending(url: str, stream: str, group: str) -> int:
    connection = client(url)
    try:
        return int(connection.xpending(stream, group)["pending"])
    finally:
        connection.close()


def redis_bodies(event: dict[str, Any]) -> list[dict[str, Any]]:
    return [json.loads(record["redis"]["fields"]["body"]) for record in event["Records"]]
