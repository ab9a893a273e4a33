"""The redis-py client both ends use, and what its errors mean for a mapping."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import (
    AuthenticationError,
    NoPermissionError,
    RedisError,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bridge.errors import BridgeError, PermanentSourceError, SourceError

CONNECT_TIMEOUT_SECONDS = 5.0
# Replies are raw (see `connect`); these are parsed here.
RAW_REPLY_COMMANDS = ("XREADGROUP", "XAUTOCLAIM")
# Server replies that mean we are refused for good, not for now.
REFUSED_PREFIXES = ("NOAUTH", "WRONGPASS", "NOPERM", "WRONGTYPE")


def _raw(response: Any, **options: Any) -> Any:
    return response


def connect(url: str, *, reply_timeout: float) -> Redis:
    """A client that never retries on its own and replies in RESP2 shapes.

    redis-py's retries would re-send a command whose reply was lost; for XREADGROUP
    that strands the entries of the lost reply in our pending list while reading
    carries on past them. A connection error must instead end the session: the next
    one reads the pending list first. `reply_timeout` must exceed the longest BLOCK.
    """
    pool = ConnectionPool.from_url(
        url,
        socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
        socket_timeout=reply_timeout,
        socket_keepalive=True,
        retry=Retry(NoBackoff(), 0),
    )
    # The URL may ask for RESP3; the replies parsed below are RESP2 shapes.
    pool.connection_kwargs["protocol"] = 2
    client = Redis.from_pool(pool)
    for command in RAW_REPLY_COMMANDS:
        client.set_response_callback(command, _raw)
    return client


def is_refusal(error: ResponseError) -> bool:
    return str(error).startswith(REFUSED_PREFIXES)


@contextmanager
def source_errors(where: str, doing: str) -> Iterator[None]:
    """Redis errors as SourceError (reconnect with backoff) or PermanentSourceError
    (bad credentials or permissions, a key that is not a stream).

    `where` names the server by its redacted URL; redis-py's messages name only host
    and port, never the password.
    """
    try:
        yield
    except BridgeError:
        raise
    except (AuthenticationError, NoPermissionError) as exc:
        raise PermanentSourceError(f"{where}: {doing}: refused: {exc}") from exc
    except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
        raise SourceError(f"{where}: {doing}: {exc or type(exc).__name__}") from exc
    except ResponseError as exc:
        if is_refusal(exc):
            raise PermanentSourceError(f"{where}: {doing}: refused: {exc}") from exc
        raise SourceError(f"{where}: {doing}: {exc}") from exc
    except RedisError as exc:
        raise SourceError(f"{where}: {doing}: {exc or type(exc).__name__}") from exc
