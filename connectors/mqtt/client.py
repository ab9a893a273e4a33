"""One MQTT 5 connection, paho-mqtt driven by the asyncio event loop.

Why paho-mqtt and not aiomqtt: the bridge must send a message's PUBACK only once the
message's outcome is settled. paho-mqtt 2 offers that through its public API
(`Client(manual_ack=True)` and `Client.ack(mid, qos)`); aiomqtt 2 creates its paho
client without `manual_ack`, acknowledges every message as it arrives, and has no
public way to change that (nor does its Message carry the DUP flag). So this module
does what aiomqtt does underneath, through paho's documented external-loop API: the
socket callbacks register the socket with the event loop, `loop_read`/`loop_write`
run when it is readable/writable, and `loop_misc` runs once a second for keep alive.

Every paho call happens on the event loop's thread, except `connect`, whose blocking
TCP (and TLS) connect runs in a worker thread; the socket callbacks it triggers hand
over to the loop with `call_soon_threadsafe`.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
import uuid
from collections import deque
from collections.abc import Sequence
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from connectors.mqtt.config import Endpoint

# A readable socket may hold many PUBLISH packets; paho reads one per loop_read call.
READS_PER_WAKEUP = 256
KEEPALIVE_TICK_SECONDS = 1.0
# How long a DISCONNECT may wait behind the PUBACKs queued before it.
DISCONNECT_TIMEOUT_SECONDS = 3.0
# The topic filter `disconnect` unsubscribes from to make a round trip.
FLUSH_TOPIC = "lambda-bridge/round-trip"
# CONNACK reason codes after which retrying cannot help (MQTT 5.0, 3.2.2.2).
REFUSED_FOR_GOOD = frozenset(
    {
        "Unsupported protocol version",
        "Client identifier not valid",
        "Bad user name or password",
        "Not authorized",
        "Banned",
        "Bad authentication method",
    }
)

# SUBACK reason codes after which retrying cannot help (MQTT 5.0, 3.9.3).
SUBSCRIPTION_REFUSED_FOR_GOOD = frozenset(
    {
        "Not authorized",
        "Topic Filter invalid",
        "Shared Subscriptions not supported",
        "Wildcard Subscriptions not supported",
    }
)


class ConnectRefused(Exception):
    """The broker refused the connection or a subscription (`what`) with a reason code;
    `permanent` if retrying cannot help."""

    def __init__(self, reason: str, what: str = "the connection", permanent: bool = False) -> None:
        super().__init__(f"the broker refused {what}: {reason}")
        self.permanent = permanent or reason in REFUSED_FOR_GOOD


class Connection:
    """A connection in a persistent session; incoming messages wait in `messages`, each to
    be acknowledged with `ack` (in the order received, MQTT 5.0 4.6).

    The socket is always read, so the broker's PINGRESP is seen and the keep alive holds
    however slowly the mapping takes messages. QoS 1 messages are bounded by the Receive
    Maximum; QoS 0 ones are not, so one that arrives while `max_buffered` messages wait is
    dropped and counted in `dropped`."""

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        client_id: str,
        session_expiry_seconds: int,
        receive_maximum: int,
        keepalive_seconds: int,
        max_buffered: int,
        max_packet_bytes: int,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._endpoint = endpoint
        self._keepalive = keepalive_seconds
        self._properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        self._properties.SessionExpiryInterval = session_expiry_seconds
        self._properties.ReceiveMaximum = receive_maximum
        # The broker discards a larger message for this client (MQTT 5.0, 3.1.2.24).
        self._properties.MaximumPacketSize = max_packet_bytes
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
            reconnect_on_failure=False,
            manual_ack=True,
        )
        if endpoint.username is not None:
            client.username_pw_set(endpoint.username, endpoint.password)
        if endpoint.tls:
            client.tls_set_context(tls or ssl.create_default_context())
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_unsubscribe = self._on_unsubscribe
        client.on_message = self._on_message
        client.on_socket_open = self._on_socket_open
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_register_write
        client.on_socket_unregister_write = self._on_unregister_write
        self._client = client
        self.messages: deque[paho.MQTTMessage] = deque()
        self.arrived = asyncio.Event()
        # Set once the connection is gone, with why; never cleared (a new Connection
        # is made for the next one).
        self.lost: asyncio.Future[str] = self._loop.create_future()
        self._connected: asyncio.Future[bool] = self._loop.create_future()
        self._subscribed: dict[int, asyncio.Future[list[ReasonCode]]] = {}
        self._unsubscribed: dict[int, asyncio.Future[None]] = {}
        self._socket: Any = None
        self._writing = False
        self._max_buffered = max_buffered
        # QoS 0 messages dropped because `max_buffered` were waiting.
        self.dropped = 0

    # -- connecting --------------------------------------------------------------------

    async def connect(self) -> bool:
        """CONNECT with Clean Start off; True if the broker had our session. Raises
        OSError or ConnectRefused; the caller bounds how long it may take."""
        endpoint = self._endpoint
        result = await self._loop.run_in_executor(
            None,
            lambda: self._client.connect(
                endpoint.host,
                endpoint.port,
                keepalive=self._keepalive,
                clean_start=False,
                properties=self._properties,
            ),
        )
        if result != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise OSError(paho.error_string(result))
        return await self._connected

    async def subscribe(self, topics: Sequence[str], qos: int) -> None:
        """SUBSCRIBE to every topic filter; raises ConnectRefused if one is refused.
        Retained messages are sent only for a subscription the session did not have
        yet (Retain Handling 1), so reconnecting does not deliver them again."""
        options = SubscribeOptions(qos=qos, retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB)
        result, mid = self._client.subscribe([(topic, options) for topic in topics])
        if result != MQTTErrorCode.MQTT_ERR_SUCCESS or mid is None:
            raise OSError(paho.error_string(result))
        future = self._subscribed[mid] = self._loop.create_future()
        await asyncio.wait([future, self.lost], return_when=asyncio.FIRST_COMPLETED)
        if not future.done():
            raise OSError(f"connection lost while subscribing: {self.lost.result()}")
        for topic, code in zip(topics, future.result(), strict=False):
            what = f"the subscription to {topic!r}"
            if code.is_failure:
                name = code.getName()
                raise ConnectRefused(name, what, name in SUBSCRIPTION_REFUSED_FOR_GOOD)
            if code.value != qos:
                raise ConnectRefused(f"granted QoS {code.value} only", what, permanent=True)

    # -- settling and leaving ----------------------------------------------------------

    def ack(self, mid: int) -> None:
        """PUBACK a QoS 1 message (written by the event loop as the socket allows)."""
        self._client.ack(mid, 1)

    async def disconnect(self) -> None:
        """DISCONNECT after whatever is queued (PUBACKs first); the session stays."""
        if self.lost.done():
            return
        try:
            async with asyncio.timeout(DISCONNECT_TIMEOUT_SECONDS):
                await self._round_trip()
                if not self.lost.done():
                    self._client.disconnect()
                await asyncio.shield(self.lost)
        except TimeoutError:
            self.drop()

    async def _round_trip(self) -> None:
        """Wait until the broker has handled every packet sent so far. With Mosquitto, a
        PUBACK that arrives together with the DISCONNECT after it is sometimes not taken
        into account, and its message is sent again on the next connection; the broker
        handles a client's packets in order, so once it answers an UNSUBSCRIBE (of a
        filter the session never had: it changes nothing) the PUBACKs are in."""
        result, mid = self._client.unsubscribe(f"{FLUSH_TOPIC}/{uuid.uuid4().hex}")
        if result != MQTTErrorCode.MQTT_ERR_SUCCESS or mid is None:
            return
        answered = self._unsubscribed[mid] = self._loop.create_future()
        await asyncio.wait([answered, self.lost], return_when=asyncio.FIRST_COMPLETED)

    def drop(self) -> None:
        """Close the socket without a word to the broker."""
        self._forget_socket()
        sock = self._client.socket()
        if sock is not None:
            sock.close()
        if not self.lost.done():
            self.lost.set_result("closed")

    def keepalive(self) -> None:
        """PINGREQ when due, and the connection dropped if the broker stopped answering."""
        if not self.lost.done():
            self._client.loop_misc()

    # -- paho callbacks ----------------------------------------------------------------

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if self._connected.done():
            return
        if reason.is_failure:
            self._connected.set_exception(ConnectRefused(reason.getName()))
        else:
            self._connected.set_result(bool(flags.session_present))

    def _on_disconnect(
        self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        why = reason.getName() if isinstance(reason, ReasonCode) else str(reason)
        if not self.lost.done():
            self.lost.set_result(why)
        if not self._connected.done():
            self._connected.set_exception(OSError(f"connection closed: {why}"))
        self.arrived.set()

    def _on_subscribe(
        self, client: Any, userdata: Any, mid: int, codes: list[ReasonCode], props: Any
    ) -> None:
        future = self._subscribed.pop(mid, None)
        if future is not None and not future.done():
            future.set_result(codes)

    def _on_unsubscribe(
        self, client: Any, userdata: Any, mid: int, codes: list[ReasonCode], props: Any
    ) -> None:
        future = self._unsubscribed.pop(mid, None)
        if future is not None and not future.done():
            future.set_result(None)

    def _on_message(self, client: Any, userdata: Any, message: paho.MQTTMessage) -> None:
        if message.qos == 0 and len(self.messages) >= self._max_buffered:
            self.dropped += 1
            return
        self.messages.append(message)
        self.arrived.set()

    # -- the socket and the event loop -------------------------------------------------

    def _in_loop(self, callback: Any, *args: Any) -> None:
        if threading.get_ident() == self._loop_thread:
            callback(*args)
        else:
            self._loop.call_soon_threadsafe(callback, *args)

    def _on_socket_open(self, client: Any, userdata: Any, sock: Any) -> None:
        self._in_loop(self._watch, sock)

    def _on_socket_close(self, client: Any, userdata: Any, sock: Any) -> None:
        self._in_loop(self._forget_socket)

    def _on_register_write(self, client: Any, userdata: Any, sock: Any) -> None:
        if not self._writing:
            self._in_loop(self._want_write, sock)

    def _on_unregister_write(self, client: Any, userdata: Any, sock: Any) -> None:
        if self._writing:
            self._in_loop(self._written, sock)

    def _watch(self, sock: Any) -> None:
        if self.lost.done():
            # A connect that outlived its timeout: the connection was given up meanwhile.
            sock.close()
            return
        self._socket = sock
        self._loop.add_reader(sock, self._readable)

    def _forget_socket(self) -> None:
        sock, self._socket = self._socket, None
        if sock is not None:
            self._loop.remove_reader(sock)
            self._loop.remove_writer(sock)
        self._writing = False

    def _want_write(self, sock: Any) -> None:
        if sock is self._socket and not self._writing:
            self._writing = True
            self._loop.add_writer(sock, self._client.loop_write)

    def _written(self, sock: Any) -> None:
        if self._writing:
            self._writing = False
            self._loop.remove_writer(sock)

    def take(self, limit: int) -> list[paho.MQTTMessage]:
        """Up to `limit` of the messages received, oldest first."""
        messages = self.messages
        return [messages.popleft() for _ in range(min(limit, len(messages)))]

    def _readable(self) -> None:
        messages = self.messages
        # A TLS socket may hold decrypted bytes the selector cannot see.
        buffered = getattr(self._socket, "pending", None)
        for _ in range(READS_PER_WAKEUP):
            before = len(messages) + self.dropped
            if self._client.loop_read() != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return
            if len(messages) + self.dropped == before and not (buffered is not None and buffered()):
                return
