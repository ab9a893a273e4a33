"""Declaring, publishing to and inspecting RabbitMQ queues from tests (aio-pika)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aio_pika


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def through_port(url: str, port: int) -> str:
    """The same URL, reaching the broker on another loopback port (a proxy)."""
    parts = urlsplit(url)
    user_info = parts.netloc.rpartition("@")[0]
    netloc = f"{user_info}@127.0.0.1:{port}" if user_info else f"127.0.0.1:{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))


async def declare_queue(url: str, queue: str, arguments: Mapping[str, Any] | None = None) -> None:
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        await channel.declare_queue(queue, durable=True, arguments=dict(arguments or {}))


async def delete_queue(url: str, queue: str) -> None:
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        await channel.queue_delete(queue)


async def publish(url: str, queue: str, bodies: Iterable[bytes], **properties: Any) -> None:
    """Each body as a persistent message on the default exchange, confirmed."""
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        for data in bodies:
            message = aio_pika.Message(
                data, delivery_mode=aio_pika.DeliveryMode.PERSISTENT, **properties
            )
            await channel.default_exchange.publish(message, routing_key=queue)


async def message_count(url: str, queue: str) -> int:
    """Messages ready in the queue (not those delivered and unacknowledged)."""
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        return int(declared.declaration_result.message_count or 0)


async def drain(
    url: str, queue: str, timeout: float = 1.0
) -> list[aio_pika.abc.AbstractIncomingMessage]:
    """Take every message of the queue (acknowledged), until none came for `timeout`."""
    taken: list[aio_pika.abc.AbstractIncomingMessage] = []
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        declared = await channel.get_queue(queue)
        while True:
            message = await declared.get(fail=False, timeout=timeout)
            if message is None:
                return taken
            await message.ack()
            taken.append(message)


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)
