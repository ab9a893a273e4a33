"""A small asyncio STOMP 1.2 client: what the `activemq` source and its tests need.

Connect (with login and passcode, heart-beats both ways), subscribe with
`client-individual` acknowledgement, acknowledge or refuse (NACK) single messages,
send, and disconnect once the broker confirmed every frame sent before. Frames are
parsed by `connectors.activemq.stomp` within fixed bounds.

Nothing here reconnects: a lost connection ends `run()` with a ConnectionLost, and
the source's session starts over with a new connection (the broker hands the
unacknowledged messages of the old one out again).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Mapping

from connectors.activemq.stomp import Frame, FrameError, FrameParser, encode

READ_CHUNK = 256 * 1024
# A peer silent this many heart-beat intervals is taken for gone (STOMP 1.2 leaves the
# tolerance to the client).
MISSED_HEARTBEATS = 2.5
RECEIPT_WAIT_SECONDS = 5.0


class ConnectionLost(Exception):
    """The connection ended, or the broker refused something (an ERROR frame)."""


class Refused(ConnectionLost):
    """The broker answered CONNECT with an ERROR frame (bad login, no permission)."""


class StompClient:
    """One connection to a broker."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        tls: bool | ssl.SSLContext = False,
        login: str | None = None,
        passcode: str | None = None,
        heartbeat_seconds: float = 10.0,
        max_body: int = 16 * 1024 * 1024,
    ) -> None:
        self.host = host
        self.port = port
        self._tls = tls
        self._login = login
        self._passcode = passcode
        self._heartbeat = heartbeat_seconds
        self._parser = FrameParser(max_body)
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._receipts: dict[str, asyncio.Future[None]] = {}
        self._next_receipt = 0
        self.messages: asyncio.Queue[Frame] = asyncio.Queue()
        # Set when a message arrives or the connection ends (readers clear it).
        self.arrived = asyncio.Event()
        self.server = ""
        self.closed: ConnectionLost | None = None
        self._send_every: float | None = None
        self._expect_every: float | None = None

    async def connect(self) -> None:
        """Open the connection and log in; raises OSError, ConnectionLost, or Refused when
        the broker refused the login (callers bound the time it takes). On any failure
        the connection is dropped."""
        try:
            await self._connect()
        except FrameError as exc:
            self.abort()
            raise ConnectionLost(f"the broker's answer to CONNECT: {exc}") from None
        except BaseException:
            self.abort()
            raise

    async def _connect(self) -> None:
        context = self._tls
        if context is True:
            # Loading the system's CA certificates takes tens of milliseconds.
            context = await asyncio.to_thread(ssl.create_default_context)
        self._reader, self._writer = await asyncio.open_connection(
            self.host, self.port, ssl=context or None, limit=READ_CHUNK
        )
        heartbeat_ms = int(self._heartbeat * 1000)
        headers = {
            "accept-version": "1.2",
            "host": self.host,
            "heart-beat": f"{heartbeat_ms},{heartbeat_ms}",
        }
        if self._login is not None:
            headers["login"] = self._login
        if self._passcode is not None:
            headers["passcode"] = self._passcode
        self._writer.write(encode("CONNECT", headers))
        frame = await self._read_frame()
        if frame.command == "ERROR":
            raise Refused(_error_text(frame))
        if frame.command != "CONNECTED":
            raise ConnectionLost(f"the broker answered CONNECT with {frame.command[:20]}")
        self.server = frame.headers.get("server", "")
        self._agree_heartbeats(frame.headers.get("heart-beat", "0,0"), heartbeat_ms)

    def _agree_heartbeats(self, offered: str, ours: int) -> None:
        """STOMP 1.2 heart-beating: each side beats at the slower of what one can send
        and the other wants."""
        send, _, expect = offered.partition(",")
        try:
            server_sends, server_wants = int(send), int(expect)
        except ValueError:
            return
        if ours and server_wants:
            self._send_every = max(ours, server_wants) / 1000
        if ours and server_sends:
            self._expect_every = max(ours, server_sends) / 1000

    async def _read_frame(self) -> Frame:
        """The next frame during the handshake (before `run` reads)."""
        assert self._reader is not None
        while True:
            data = await self._reader.read(READ_CHUNK)
            if not data:
                raise ConnectionLost("the broker closed the connection")
            frames = self._parser.feed(data)
            if frames:
                for frame in frames[1:]:
                    self._dispatch(frame)
                return frames[0]

    async def run(self) -> None:
        """Read frames until the connection ends; raises ConnectionLost then."""
        assert self._reader is not None
        try:
            async with asyncio.TaskGroup() as group:
                if self._send_every:
                    group.create_task(self._beat(self._send_every))
                group.create_task(self._read_all())
        except* (ConnectionLost, OSError, FrameError) as failures:
            error = failures.exceptions[0]
            lost = error if isinstance(error, ConnectionLost) else ConnectionLost(str(error))
            self._lost(lost)
            raise lost from None
        finally:
            self._close_transport()

    async def _read_all(self) -> None:
        assert self._reader is not None
        silence = self._expect_every * MISSED_HEARTBEATS if self._expect_every else None
        while True:
            try:
                async with asyncio.timeout(silence):
                    data = await self._reader.read(READ_CHUNK)
            except TimeoutError:
                raise ConnectionLost(f"no heart-beat from the broker for {silence:g} s") from None
            if not data:
                raise ConnectionLost("the broker closed the connection")
            for frame in self._parser.feed(data):
                self._dispatch(frame)

    def _dispatch(self, frame: Frame) -> None:
        if frame.command == "MESSAGE":
            self.messages.put_nowait(frame)
            self.arrived.set()
        elif frame.command == "RECEIPT":
            waiter = self._receipts.pop(frame.headers.get("receipt-id", ""), None)
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
        elif frame.command == "ERROR":
            raise ConnectionLost(_error_text(frame))

    async def _beat(self, every: float) -> None:
        while True:
            await asyncio.sleep(every)
            self._write(b"\n")
            await self._drain()

    def _lost(self, error: ConnectionLost) -> None:
        if self.closed is None:
            self.closed = error
        self.arrived.set()
        for waiter in self._receipts.values():
            if not waiter.done():
                waiter.set_exception(error)
        self._receipts.clear()

    # -- writing ---------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        if self.closed is not None:
            raise self.closed
        assert self._writer is not None
        self._writer.write(data)

    async def _drain(self) -> None:
        assert self._writer is not None
        try:
            await self._writer.drain()
        except (OSError, RuntimeError) as exc:
            # OSError: ConnectionError, and what else the socket or TLS (ssl.SSLError) met.
            error = ConnectionLost(f"writing to the broker failed: {exc}")
            self._lost(error)
            raise error from None

    async def send_frames(self, frames: list[bytes]) -> None:
        """Write already-encoded frames in one go."""
        self._write(b"".join(frames))
        await self._drain()

    async def subscribe(
        self, subscription: str, destination: str, headers: Mapping[str, str]
    ) -> None:
        frame = {"id": subscription, "destination": destination, **headers}
        await self.confirmed("SUBSCRIBE", frame)

    async def confirmed(
        self,
        command: str,
        headers: Mapping[str, str],
        body: bytes = b"",
        *,
        sized: bool = True,
    ) -> None:
        """Send a frame and wait until the broker has processed it (a RECEIPT)."""
        self._next_receipt += 1
        receipt = f"r-{self._next_receipt}"
        waiter = asyncio.get_running_loop().create_future()
        self._receipts[receipt] = waiter
        try:
            self._write(encode(command, {**headers, "receipt": receipt}, body, sized=sized))
            await self._drain()
            async with asyncio.timeout(RECEIPT_WAIT_SECONDS):
                await waiter
        finally:
            self._receipts.pop(receipt, None)

    async def disconnect(self) -> None:
        """DISCONNECT once the broker has processed what was sent (best effort), then close."""
        if self._writer is None:
            return
        if self.closed is None:
            with contextlib.suppress(ConnectionLost, TimeoutError, OSError):
                await self.confirmed("DISCONNECT", {})
            self._lost(ConnectionLost("disconnected"))
        self._close_transport()

    def abort(self) -> None:
        """Drop the connection at once, as a crashed process would."""
        self._lost(ConnectionLost("aborted"))
        self._close_transport()

    def _close_transport(self) -> None:
        writer = self._writer
        if writer is not None and not writer.is_closing():
            writer.close()


def _error_text(frame: Frame) -> str:
    message = frame.headers.get("message", "")
    detail = frame.body[:300].decode("utf-8", "replace").strip()
    text = f"the broker sent an ERROR: {message}"
    return f"{text} ({detail})" if detail and detail != message else text
