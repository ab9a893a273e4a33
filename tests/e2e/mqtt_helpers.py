"""A plain paho-mqtt client for tests: publish messages, and make a session exist.

A persistent session only queues messages once it exists, so a test that publishes
before the bridge first connects makes the session first (`make_session`), as a
deployment's first start does.
"""

from __future__ import annotations

import base64
import json
import ssl
import threading
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

TIMEOUT = 10.0


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def _client(url: str, client_id: str = "") -> paho.Client:
    parts = urlsplit(url)
    client = paho.Client(
        CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv5
    )
    if parts.username is not None:
        client.username_pw_set(unquote(parts.username), unquote(parts.password or ""))
    connected = threading.Event()
    client.on_connect = lambda *args: connected.set()
    client.loop_start()
    properties = None
    if client_id:
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = 0xFFFFFFFF
    client.connect(
        parts.hostname or "127.0.0.1",
        parts.port or 1883,
        clean_start=not client_id,
        properties=properties,
    )
    if not connected.wait(TIMEOUT):
        raise RuntimeError("no CONNACK from the broker")
    return client


def tls_publisher(url: str, ca_file: Path) -> paho.Client:
    """A connected client for an mqtts:// URL whose broker's CA is `ca_file`; the caller
    disconnects it and stops its loop."""
    parts = urlsplit(url)
    client = paho.Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5)
    client.tls_set_context(ssl.create_default_context(cafile=ca_file))
    connected = threading.Event()
    client.on_connect = lambda *args: connected.set()
    client.loop_start()
    client.connect(parts.hostname or "127.0.0.1", parts.port or 8883)
    if not connected.wait(TIMEOUT):
        raise RuntimeError("no CONNACK from the broker")
    return client


def _close(client: paho.Client) -> None:
    client.disconnect()
    client.loop_stop()


def publish_properties(**values: Any) -> Properties:
    """MQTT 5 PUBLISH properties by paho's names (ContentType, UserProperty, ...)."""
    properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    for name, value in values.items():
        setattr(properties, name, value)
    return properties


def make_session(url: str, client_id: str, topics: Sequence[str]) -> None:
    """Create the persistent session of `client_id`, subscribed at QoS 1, and leave it."""
    client = _client(url, client_id)
    done = threading.Event()
    client.on_subscribe = lambda *args: done.set()
    client.subscribe([(topic, 1) for topic in topics])
    if not done.wait(TIMEOUT):
        raise RuntimeError("no SUBACK from the broker")
    _close(client)


def publish(
    url: str,
    messages: Iterable[tuple[str, bytes]],
    *,
    qos: int = 1,
    retain: bool = False,
    properties: Properties | None = None,
) -> None:
    """Publish (topic, payload) pairs in order and wait until the broker has each."""
    client = _client(url)
    try:
        infos = [
            client.publish(topic, payload, qos=qos, retain=retain, properties=properties)
            for topic, payload in messages
        ]
        for info in infos:
            info.wait_for_publish(TIMEOUT)
    finally:
        _close(client)


def publish_json(url: str, topic: str, documents: Iterable[Any]) -> None:
    publish(url, [(topic, json.dumps(document).encode()) for document in documents])


def payload_of(item: dict[str, Any]) -> Any:
    """The JSON document an event record carries in `payload` (base64)."""
    return json.loads(base64.b64decode(item["payload"]))
