"""Sending to and draining ActiveMQ queues from tests, over STOMP with the connector's
own client (each send confirmed by a RECEIPT, so it is on the broker when it returns)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from connectors.activemq.client import StompClient
from connectors.activemq.stomp import Frame, encode


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@contextlib.asynccontextmanager
async def connected(url: str) -> AsyncIterator[StompClient]:
    parts = urlsplit(url)
    client = StompClient(
        parts.hostname or "127.0.0.1",
        parts.port or 61613,
        login=parts.username,
        passcode=parts.password,
        heartbeat_seconds=0,
    )
    async with asyncio.timeout(10):
        await client.connect()
    reader = asyncio.create_task(client.run())
    try:
        yield client
    finally:
        await client.disconnect()
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)


async def send(
    url: str,
    queue: str,
    bodies: Sequence[bytes | str | dict[str, Any]],
    *,
    headers: Mapping[str, str] | None = None,
    persistent: bool = True,
) -> None:
    """Send each body to the queue: str and dict bodies as TextMessages (no
    content-length), bytes as BytesMessages."""
    extra = {"persistent": "true" if persistent else "false", **(headers or {})}
    async with connected(url) as client:
        for body in bodies:
            if isinstance(body, bytes):
                data, text = body, False
            else:
                data, text = (json.dumps(body) if isinstance(body, dict) else body).encode(), True
            await client.confirmed(
                "SEND", {"destination": f"/queue/{queue}", **extra}, data, sized=not text
            )


def send_now(url: str, queue: str, bodies: Sequence[bytes | str | dict[str, Any]]) -> None:
    asyncio.run(send(url, queue, bodies))


async def drain(url: str, queue: str, wanted: int, timeout: float = 15.0) -> list[Frame]:
    """Take (and acknowledge) messages from the queue until `wanted` came or the time is up."""
    frames: list[Frame] = []
    async with connected(url) as client:
        await client.subscribe("drain", f"/queue/{queue}", {"ack": "client-individual"})
        deadline = time.monotonic() + timeout
        while len(frames) < wanted and time.monotonic() < deadline:
            try:
                frame = await asyncio.wait_for(client.messages.get(), 0.2)
            except TimeoutError:
                continue
            frames.append(frame)
            await client.send_frames([encode("ACK", {"id": frame.headers["ack"]})])
    return frames


def drain_now(url: str, queue: str, wanted: int, timeout: float = 15.0) -> list[Frame]:
    return asyncio.run(drain(url, queue, wanted, timeout))


def decoded(message: dict[str, Any]) -> Any:
    """A message of an event: its data, parsed as JSON when it is."""
    text = base64.b64decode(message["data"]).decode()
    try:
        return json.loads(text)
    except ValueError:
        return text
