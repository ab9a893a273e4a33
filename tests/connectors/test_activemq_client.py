"""The activemq connector's STOMP client and source against small STOMP peers of the
test's own, saying what a real broker rarely does: refusing the login, closing during
the handshake, answering with a malformed frame, never sending a RECEIPT, breaking TLS."""

from __future__ import annotations

import asyncio
import os
import ssl
import subprocess
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from bridge.config.plugins import Identity, SourceContext
from bridge.errors import PermanentSourceError, SourceError
from bridge.pipeline.checkpoints import SqliteCheckpointStore
from bridge.testing import StandaloneOwnership
from connectors.activemq import client as stomp_client
from connectors.activemq.client import ConnectionLost, Refused, StompClient
from connectors.activemq.config import ActiveMQSourceConfig
from tests import services
from tests.connectors.test_mqtt_source import make_certificates

CONNECTED = b"CONNECTED\nversion:1.2\n\n\x00"


def run(body: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(body(), 30))


class Peer:
    """Reads CONNECT, writes `answer` (None: closes at once), then reads and ignores
    everything until the client closes the connection."""

    def __init__(self, answer: bytes | None) -> None:
        self.answer = answer
        self.port = 0
        self.writers: list[asyncio.StreamWriter] = []
        self.client_closed = asyncio.Event()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.answer is None:
            writer.close()
            return
        self.writers.append(writer)
        try:
            await reader.readuntil(b"\x00")
            writer.write(self.answer)
            await writer.drain()
            while await reader.read(65536):
                pass
        except (OSError, asyncio.IncompleteReadError):
            pass
        self.client_closed.set()
        writer.close()


@asynccontextmanager
async def peer(answer: bytes | None, tls: ssl.SSLContext | None = None) -> AsyncIterator[Peer]:
    serving = Peer(answer)
    server = await asyncio.start_server(serving.handle, "127.0.0.1", 0, ssl=tls)
    serving.port = server.sockets[0].getsockname()[1]
    try:
        yield serving
    finally:
        server.close()
        for writer in serving.writers:
            writer.close()


async def open_source(tmp_path: Path, port: int) -> None:
    config = ActiveMQSourceConfig.model_validate(
        {
            "type": "activemq",
            "url": f"stomp://app:Hunter2-secret@127.0.0.1:{port}",
            "queues": ["q"],
            "connect_timeout_seconds": 5,
        }
    )
    context = SourceContext(
        mapping="orders",
        identity=Identity(),
        checkpoints=SqliteCheckpointStore(tmp_path / "c.sqlite3"),
        state_dir=tmp_path,
    )
    source = config.build(context)
    try:
        await source.open(StandaloneOwnership())
    finally:
        await source.close()


def test_only_a_refused_login_fails_the_source_for_good(tmp_path: Path) -> None:
    """An ERROR frame answering CONNECT is a permanent error; a broker closing the
    connection during the handshake (restarting, at maximumConnections, failing over)
    or answering with another frame is a retriable one. No password in either."""

    async def body() -> None:
        refusal = b"ERROR\nmessage:User name [app] or password is invalid.\n\n\x00"
        async with peer(refusal) as refusing:
            with pytest.raises(PermanentSourceError, match="password is invalid") as refused:
                await open_source(tmp_path, refusing.port)
        assert "Hunter2-secret" not in str(refused.value)
        for answer in (None, b"MESSAGE\n\n\x00"):
            async with peer(answer) as closing:
                with pytest.raises(SourceError) as caught:
                    await open_source(tmp_path, closing.port)
            assert caught.value.retriable, caught.value
            assert "Hunter2-secret" not in str(caught.value)

    run(body)


@pytest.mark.parametrize(
    "answer",
    [b"CONNECTED\nno colon\n\n\x00", "CONNECTED\ncontent-length:\u00b2\n\n\x00".encode()],
)
def test_a_malformed_answer_to_connect_is_a_lost_connection(answer: bytes) -> None:
    """A frame the parser refuses during the handshake ends connect() with a
    ConnectionLost (not Refused), and the connection is closed, not left open."""

    async def body() -> None:
        async with peer(answer) as broker:
            client = StompClient("127.0.0.1", broker.port, heartbeat_seconds=0)
            with pytest.raises(ConnectionLost) as caught:
                await client.connect()
            assert not isinstance(caught.value, Refused)
            await asyncio.wait_for(broker.client_closed.wait(), 10)

    run(body)


def test_a_receipt_not_waited_for_any_more_is_forgotten() -> None:
    """confirmed() given up on (its own timeout, or the caller's) leaves no waiter."""

    async def body() -> None:
        async with peer(CONNECTED) as silent:
            client = StompClient("127.0.0.1", silent.port, heartbeat_seconds=0)
            await client.connect()
            reader = asyncio.create_task(client.run())
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(client.confirmed("SEND", {"destination": "/queue/q"}), 0.2)
            assert client._receipts == {}
            client.abort()
            await asyncio.gather(reader, return_exceptions=True)

    run(body)


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    try:
        return make_certificates(tmp_path_factory.mktemp("activemq-tls"))
    except (OSError, subprocess.CalledProcessError):
        services.unavailable("no openssl to make test certificates")
        raise


def test_a_tls_failure_while_writing_is_a_lost_connection(
    certificates: tuple[Path, Path, Path],
) -> None:
    """The TLS layer failing (ssl.SSLError, an OSError that is no ConnectionError) ends a
    write with a ConnectionLost, which the source handles, rather than escaping."""
    ca, certificate, key = certificates
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(certificate, key)

    async def body() -> None:
        async with peer(CONNECTED, server_tls) as broker:
            client = StompClient(
                "127.0.0.1",
                broker.port,
                tls=ssl.create_default_context(cafile=ca),
                heartbeat_seconds=0,
            )
            await client.connect()
            # A TLS record that cannot be decrypted, under the server's TLS layer.
            garbage = b"\x17\x03\x03\x00\x20" + b"\x00" * 32
            os.write(broker.writers[0].get_extra_info("socket").fileno(), garbage)
            assert client._reader is not None
            while client._reader.exception() is None:
                await asyncio.sleep(0.01)
            assert isinstance(client._reader.exception(), ssl.SSLError)
            with pytest.raises(ConnectionLost, match="writing to the broker failed"):
                await client.send_frames([b"\n"])
            client.abort()

    run(body)


def test_the_system_tls_context_is_made_off_the_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading the system's CA certificates takes tens of milliseconds: not on the loop."""
    threads: list[threading.Thread] = []
    make = ssl.create_default_context

    def recording(*args: Any, **kwargs: Any) -> ssl.SSLContext:
        threads.append(threading.current_thread())
        return make(*args, **kwargs)

    monkeypatch.setattr(stomp_client.ssl, "create_default_context", recording)

    async def body() -> None:
        async with peer(None) as closing:
            client = StompClient("127.0.0.1", closing.port, tls=True, heartbeat_seconds=0)
            with pytest.raises((ConnectionLost, OSError)):
                await client.connect()

    run(body)
    assert threads and threading.main_thread() not in threads
