"""The `mqtt` source against a real Mosquitto: wildcards, the persistent session,
redelivery of what was not acknowledged, retained messages, MQTT 5 properties and
credentials.

Each test uses its own topics and client id. Sources are driven as a mapping drives
them (tests.connectors.reading); waits poll for up to `TIMEOUT`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from bridge.config.plugins import Identity, SourceContext
from bridge.errors import PermanentSourceError, SourceError
from bridge.protocols import Source
from bridge.testing import StandaloneOwnership
from connectors.mqtt.config import MqttSourceConfig
from connectors.mqtt.source import MqttSource
from tests import services
from tests.connectors.reading import TIMEOUT, collect, quiet, run, settle
from tests.e2e import mqtt_helpers as mqtt


class Session:
    """One test's client id and topic prefix on a broker, and sources for them."""

    def __init__(self, url: str, tmp_path: Path, topics: list[str] | None = None) -> None:
        self.url = url
        self.tmp_path = tmp_path
        self.base = mqtt.unique("t")
        self.client_id = mqtt.unique("bridge")
        self.topics = topics or [f"{self.base}/#"]

    def source(self, url: str | None = None, **settings: Any) -> Source:
        config = MqttSourceConfig.model_validate(
            {
                "type": "mqtt",
                "url": url or self.url,
                "topics": self.topics,
                "client_id": self.client_id,
                **settings,
            }
        )
        context = SourceContext(
            mapping="sensors",
            identity=Identity(),
            checkpoints=None,  # type: ignore[arg-type]
            state_dir=self.tmp_path,
        )
        return config.build(context)

    async def opened(self, **settings: Any) -> Source:
        source = self.source(**settings)
        await source.open(StandaloneOwnership())
        return source

    def publish(self, suffix: str, *payloads: bytes, **options: Any) -> None:
        mqtt.publish(self.url, [(f"{self.base}/{suffix}", p) for p in payloads], **options)


def payloads(records: list[Any]) -> list[bytes]:
    return [base64.b64decode(record.payload["payload"]) for record in records]


def test_wildcards_pick_the_topics_they_match(mqtt_url: str, tmp_path: Path) -> None:
    """`+` matches one level, `#` the rest (and the level above it)."""
    space = Session(mqtt_url, tmp_path)
    space.topics = [f"{space.base}/+/temperature", f"{space.base}/alarms/#"]

    async def main() -> None:
        source = await space.opened()
        try:
            space.publish("hall/temperature", b"1")
            space.publish("hall/floor/temperature", b"no: two levels")
            space.publish("alarms", b"2")
            space.publish("alarms/fire/upstairs", b"3")
            space.publish("humidity", b"no: not subscribed")
            records = await collect(source, 3)
            records += await quiet(source)
            topics = [record.payload["topic"] for record in records]
            assert topics == [
                f"{space.base}/hall/temperature",
                f"{space.base}/alarms",
                f"{space.base}/alarms/fire/upstairs",
            ]
            assert payloads(records) == [b"1", b"2", b"3"]
        finally:
            await source.close()

    run(main)


def test_messages_published_while_away_come_when_back(mqtt_url: str, tmp_path: Path) -> None:
    """The session outlives the connection: what was published while no source was
    connected is delivered, in order, when one connects with the same client id."""
    space = Session(mqtt_url, tmp_path)

    async def main() -> None:
        first = await space.opened()
        await first.close()
        space.publish("a", *[b"%d" % n for n in range(20)])
        second = await space.opened()
        try:
            records = await collect(second, 20)
            assert payloads(records) == [b"%d" % n for n in range(20)]
            assert not any(record.payload["dup"] for record in records)
            await settle(second, records)
        finally:
            await second.close()
        third = await space.opened()
        try:
            assert await quiet(third) == []
        finally:
            await third.close()

    run(main)


def test_unacknowledged_messages_come_again_marked_dup(mqtt_url: str, tmp_path: Path) -> None:
    """Settled up to the second of four, then closed: the broker sends the other two
    again on the next connection, with DUP set, and no more."""
    space = Session(mqtt_url, tmp_path)

    async def main() -> None:
        first = await space.opened()
        try:
            space.publish("a", b"0", b"1", b"2", b"3")
            records = await collect(first, 4)
            assert payloads(records) == [b"0", b"1", b"2", b"3"]
            await settle(first, records[:2])
        finally:
            await first.close()
        second = await space.opened()
        try:
            again = await collect(second, 2)
            again += await quiet(second)
            assert payloads(again) == [b"2", b"3"]
            assert all(record.payload["dup"] for record in again)
            # A crash journal entry recognises them (bridge.pipeline.journal).
            position = second.formatter.stable_position
            assert [position(r) for r in again] == [position(r) for r in records[2:]]
            space.publish("a", b"4")
            [later] = await collect(second, 1)
            assert not position(records[2]) <= position(later) <= position(records[3])
        finally:
            await second.close()

    run(main)


def test_acknowledgements_right_before_close_are_not_lost(mqtt_url: str, tmp_path: Path) -> None:
    """Settled but for the last message, then closed at once, again and again: the broker
    has every PUBACK before the DISCONNECT (without the round trip in
    Connection.disconnect, Mosquitto lost the last one about one time in four), so only
    the unsettled message comes again each time."""
    space = Session(mqtt_url, tmp_path)

    async def main() -> None:
        await (await space.opened()).close()
        left: list[bytes] = []
        for round_number in range(8):
            sent = [b"%d-%d" % (round_number, n) for n in range(4)]
            space.publish("a", *sent)
            source = await space.opened()
            try:
                records = await collect(source, len(left) + 4)
                records += await quiet(source, 0.2)
                assert payloads(records) == left + sent
                await settle(source, records[:-1])
                left = sent[-1:]
            finally:
                await source.close()

    run(main)


def test_a_crashed_source_leaves_its_messages_with_the_broker(
    mqtt_url: str, tmp_path: Path
) -> None:
    """A source whose process died (its connection gone without DISCONNECT, its
    background work stopped) acknowledged nothing unsettled: a new connection with the
    same client id takes the session over and gets those messages again."""
    space = Session(mqtt_url, tmp_path)

    async def main() -> None:
        ownership = StandaloneOwnership()
        first = space.source()
        await first.open(ownership)
        space.publish("a", b"0", b"1", b"2")
        records = await collect(first, 3)
        await settle(first, records[:1])
        await ownership.tasks.close()
        second = await space.opened()
        try:
            again = await collect(second, 2)
            again += await quiet(second)
            assert payloads(again) == [b"1", b"2"]
            with pytest.raises(SourceError, match="connection lost"):
                # The broker took the session over from the first connection.
                for _ in range(20):
                    await first.read()
        finally:
            await second.close()
            await first.close()

    run(main)


def test_retained_messages_are_not_sent_again_on_reconnect(mqtt_url: str, tmp_path: Path) -> None:
    """A retained message comes once, flagged, when the subscription is new; resuming
    the session does not subscribe afresh (Retain Handling 1)."""
    space = Session(mqtt_url, tmp_path)
    space.publish("state", b"on", retain=True)

    async def main() -> None:
        first = await space.opened()
        try:
            [record] = await collect(first, 1)
            assert (payloads([record]), record.payload["retain"]) == ([b"on"], True)
            await settle(first, [record])
        finally:
            await first.close()
        second = await space.opened()
        try:
            assert await quiet(second) == []
        finally:
            await second.close()
        mqtt.publish(mqtt_url, [(f"{space.base}/state", b"")], retain=True)

    run(main)


def test_qos_0_messages_and_mqtt5_properties(mqtt_url: str, tmp_path: Path) -> None:
    """A message published at QoS 0 arrives at QoS 0 (nothing to acknowledge); the MQTT 5
    properties a publisher set are in the record."""
    space = Session(mqtt_url, tmp_path)
    properties = mqtt.publish_properties(
        ContentType="application/json",
        PayloadFormatIndicator=1,
        ResponseTopic="replies/1",
        CorrelationData=b"\x01\x02",
        UserProperty=[("firmware", "1.4.2"), ("site", "north")],
    )

    async def main() -> None:
        source = await space.opened()
        try:
            space.publish("a", b'{"t": 1}', properties=properties)
            space.publish("b", b"fire and forget", qos=0)
            first, second = await collect(source, 2)
            assert first.payload["properties"] == {
                "payloadFormatIndicator": 1,
                "contentType": "application/json",
                "responseTopic": "replies/1",
                "correlationData": base64.b64encode(b"\x01\x02").decode(),
                "userProperties": [
                    {"key": "firmware", "value": "1.4.2"},
                    {"key": "site", "value": "north"},
                ],
            }
            assert (first.payload["qos"], second.payload["qos"]) == (1, 0)
            assert second.payload["properties"] == {}
            await settle(source, [first, second])
        finally:
            await source.close()

    run(main)


def test_a_flood_of_qos_0_while_the_mapping_does_not_read_keeps_the_connection(
    mqtt_url: str, tmp_path: Path
) -> None:
    """QoS 0 messages are not held back by the Receive Maximum. While the mapping does
    not read (its lanes full), the source keeps reading the socket, so the keep alive
    holds: past `max_buffered_messages` it drops QoS 0 messages and says how many, the
    connection outlives twice the keep alive, and QoS 1 messages published later still
    arrive after the QoS 0 ones it kept."""
    space = Session(mqtt_url, tmp_path)
    limit, flood, keepalive = 100, 1000, 5

    async def main() -> None:
        with structlog.testing.capture_logs() as logs:
            source = await space.opened(max_buffered_messages=limit, keepalive_seconds=keepalive)
            assert isinstance(source, MqttSource)
            try:
                await asyncio.to_thread(
                    space.publish, "a", *[b"%d" % n for n in range(flood)], qos=0
                )
                await until(lambda: source.dropped == flood - limit, "the flood to be dropped")
                # Unread for longer than a keep alive without PINGRESP may last.
                await asyncio.sleep(2 * keepalive + 2)
                space.publish("b", b"later-0", b"later-1")
                records = await collect(source, limit + 2)
                records += await quiet(source)
                assert payloads(records) == [b"%d" % n for n in range(limit)] + [
                    b"later-0",
                    b"later-1",
                ]
                assert [record.payload["qos"] for record in records[-2:]] == [1, 1]
                await settle(source, records)
            finally:
                await source.close()
        drops = [entry for entry in logs if entry["event"] == "mqtt.qos0_dropped"]
        assert drops and sum(entry["dropped"] for entry in drops) == flood - limit
        assert all(entry["log_level"] == "warning" for entry in drops)
        assert [entry["session"] for entry in logs if entry["event"] == "mqtt.connected"] == [
            "new"
        ], "the source connected more than once"

    run(main)


async def until(check: Any, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + TIMEOUT
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def test_a_message_over_max_message_bytes_is_not_delivered(mqtt_url: str, tmp_path: Path) -> None:
    """`max_message_bytes` is the Maximum Packet Size of the CONNECT: the broker discards
    a larger message for this client and sends the smaller ones."""
    space = Session(mqtt_url, tmp_path)

    async def main() -> None:
        source = await space.opened(max_message_bytes=2048)
        try:
            space.publish("a", b"small-0", b"x" * 4096, b"small-1")
            space.publish("a", b"y" * 4096, qos=0)
            space.publish("a", b"small-2", qos=0)
            records = await collect(source, 3)
            records += await quiet(source)
            assert payloads(records) == [b"small-0", b"small-1", b"small-2"]
            await settle(source, records)
        finally:
            await source.close()

    run(main)


def test_iot_rule_shape_through_the_source(mqtt_url: str, tmp_path: Path) -> None:
    space = Session(mqtt_url, tmp_path)

    async def main() -> None:
        source = await space.opened(event_shape="iot-rule", topic_key="topic")
        try:
            space.publish("kitchen", b'{"temperature": 22}')
            [record] = await collect(source, 1)
            event = json.loads(source.formatter.encode_event([record]))
            assert event == {"temperature": 22, "topic": f"{space.base}/kitchen"}
        finally:
            await source.close()

    run(main)


# -- credentials ----------------------------------------------------------------------

USER, PASSWORD = "bridge", "S3cret-pa55word"


@pytest.fixture(scope="module")
def secured_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A mosquitto of its own that admits only USER with PASSWORD."""
    workdir = tmp_path_factory.mktemp("secured-mosquitto")
    password_file = workdir / "passwords"
    password_file.touch(mode=0o600)
    try:
        subprocess.run(
            ["mosquitto_passwd", "-b", str(password_file), USER, PASSWORD],
            check=True,
            capture_output=True,
        )
    except (OSError, subprocess.CalledProcessError):
        services.unavailable("no mosquitto_passwd: install Debian's mosquitto")
    server = services.mosquitto_server(workdir, password_file=password_file)
    try:
        yield f"mqtt://{USER}:{PASSWORD}@127.0.0.1:{server.port}"
    finally:
        server.stop()


def test_credentials_work_and_are_never_shown(secured_url: str, tmp_path: Path) -> None:
    """The right password reads; a wrong one fails the mapping for good (no point in
    retrying) with a message that holds neither password; no log line holds one."""
    space = Session(secured_url, tmp_path)
    wrong = secured_url.replace(PASSWORD, "Wr0ng-pa55word")

    async def main() -> None:
        with structlog.testing.capture_logs() as logs:
            source = await space.opened()
            try:
                space.publish("a", b"hello")
                assert payloads(await collect(source, 1)) == [b"hello"]
            finally:
                await source.close()
            refused = space.source(url=wrong)
            try:
                with pytest.raises(PermanentSourceError) as caught:
                    await refused.open(StandaloneOwnership())
            finally:
                await refused.close()
        text = f"{caught.value} {caught.value!r} {logs}"
        assert "Bad user name or password" in str(caught.value) or "Not authorized" in str(
            caught.value
        )
        assert PASSWORD not in text and "Wr0ng-pa55word" not in text
        assert "***" in str(caught.value)

    run(main)


# -- TLS ------------------------------------------------------------------------------


def make_certificates(folder: Path) -> tuple[Path, Path, Path]:
    """(CA certificate, server certificate for 127.0.0.1, server key), made with openssl."""

    def openssl(*arguments: str) -> None:
        subprocess.run(["openssl", *arguments], check=True, capture_output=True, cwd=folder)

    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=test-ca",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    )
    openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    )
    (folder / "san.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "san.cnf",
        "-out",
        "server.pem",
    )
    return folder / "ca.pem", folder / "server.pem", folder / "server.key"


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """(mqtts:// URL, CA file) of a mosquitto of its own that speaks only TLS."""
    workdir = tmp_path_factory.mktemp("tls-mosquitto")
    try:
        ca, certificate, key = make_certificates(workdir)
    except (OSError, subprocess.CalledProcessError):
        services.unavailable("no openssl to make test certificates")
        raise
    server = services.mosquitto_server(
        workdir, listener_options=(f"cafile {ca}", f"certfile {certificate}", f"keyfile {key}")
    )
    try:
        yield f"mqtts://127.0.0.1:{server.port}", ca
    finally:
        server.stop()


def test_tls_with_a_private_ca(tls_broker: tuple[str, Path], tmp_path: Path) -> None:
    """mqtts:// with `ca_file` reads over TLS; without it the broker's certificate is not
    trusted and the connection is refused."""
    url, ca = tls_broker
    space = Session(url, tmp_path)

    async def main() -> None:
        untrusted = space.source()
        try:
            with pytest.raises(SourceError, match="CERTIFICATE_VERIFY_FAILED"):
                await untrusted.open(StandaloneOwnership())
        finally:
            await untrusted.close()
        source = await space.opened(ca_file=str(ca))
        await source.close()
        # The session exists now; a plain client publishes over TLS too.
        source = await space.opened(ca_file=str(ca))
        try:
            publisher = mqtt.tls_publisher(url, ca)
            try:
                for n in range(50):
                    publisher.publish(f"{space.base}/a", b"%d" % n, qos=1).wait_for_publish(10)
            finally:
                publisher.disconnect()
                publisher.loop_stop()
            records = await collect(source, 50)
            assert payloads(records) == [b"%d" % n for n in range(50)]
            await settle(source, records)
        finally:
            await source.close()

    run(main)


def test_the_ca_file_is_read_off_the_event_loop(
    tls_broker: tuple[str, Path], tmp_path: Path
) -> None:
    """Loading `ca_file` reads a file, which must not hold up the event loop. With the CA
    behind a named pipe, opening waits until a coroutine of the same loop writes it (a
    watchdog thread writes it instead if the loop is stuck, so the test fails, not hangs)."""
    url, ca = tls_broker
    space = Session(url, tmp_path)
    pipe = tmp_path / "ca.pipe"
    os.mkfifo(pipe)
    written = threading.Event()
    writers: list[str] = []

    def write(who: str) -> None:
        while not written.is_set():
            try:
                fd = os.open(pipe, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:  # no reader yet
                time.sleep(0.01)
                continue
            with os.fdopen(fd, "wb") as out:
                out.write(ca.read_bytes())
            writers.append(who)
            written.set()

    def watchdog() -> None:
        if not written.wait(TIMEOUT):
            write("a watchdog thread: the event loop was blocked")

    async def main() -> None:
        threading.Thread(target=watchdog, daemon=True).start()
        opening = asyncio.ensure_future(space.opened(ca_file=str(pipe)))
        await asyncio.sleep(0)  # opening runs up to its first wait
        await asyncio.to_thread(write, "the event loop")
        source = await opening
        await source.close()
        assert writers == ["the event loop"]

    run(main)
