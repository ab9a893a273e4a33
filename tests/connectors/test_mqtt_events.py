"""The `mqtt` source's records, event shapes and settings, without a broker."""

from __future__ import annotations

import base64
import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from bridge.config.loading import load_config_text
from bridge.config.plugins import Identity
from bridge.errors import ConfigError
from bridge.filtering.criteria import build_filter_set
from connectors.mqtt.config import MqttSourceConfig
from connectors.mqtt.events import IotRuleFormatter, Message, MessageRecords

BROKER = "mqtt://broker:1883"


def builder(factor: int = 1) -> MessageRecords:
    return MessageRecords(
        broker=BROKER, client_id="bridge-1", connection="c0ffee", parallelization_factor=factor
    )


def test_a_record_carries_the_message_and_where_it_came_from() -> None:
    properties = {"contentType": "application/json", "userProperties": [{"key": "k", "value": "v"}]}
    message = Message("sensors/hall/t", b'{"t": 21}', 1, False, True, properties)
    record = builder().record(message, 1_790_000_000.123)
    assert record.payload == {
        "eventSource": "mqtt",
        "eventSourceARN": BROKER,
        "clientId": "bridge-1",
        "messageId": "c0ffee-1",
        "topic": "sensors/hall/t",
        "qos": 1,
        "retain": False,
        "dup": True,
        "payload": base64.b64encode(b'{"t": 21}').decode(),
        "timestamp": 1_790_000_000_123,
        "properties": properties,
    }
    assert (record.partition, record.position, record.item_id) == ("bridge-1", 1, "c0ffee-1")


def test_binary_payloads_and_odd_topics_survive() -> None:
    raw = bytes(range(256))
    record = builder().record(Message('a/"quoted"/\u00e9', raw, 0, True), 1.0)
    assert base64.b64decode(record.payload["payload"]) == raw
    assert record.payload["topic"] == 'a/"quoted"/\u00e9'
    assert (record.payload["qos"], record.payload["retain"]) == (0, True)


def test_message_ids_count_up_per_connection() -> None:
    records = builder()
    ids = [records.record(Message("t", b"x"), 1.0).item_id for _ in range(3)]
    assert ids == ["c0ffee-1", "c0ffee-2", "c0ffee-3"]


def test_parallelization_keeps_a_topic_in_one_lane() -> None:
    records = builder(factor=4)
    lanes = {topic: records.record(Message(topic, b"x"), 1.0).lane for topic in ("a", "b", "c")}
    again = {topic: records.record(Message(topic, b"x"), 1.0).lane for topic in ("a", "b", "c")}
    assert lanes == again
    assert {lane for lane in lanes.values()} <= {("bridge-1", n) for n in range(4)}
    assert builder().record(Message("a", b"x"), 1.0).lane == "bridge-1"


def test_records_event_and_batch_info() -> None:
    records = builder()
    batch = [records.record(Message("t", b"1"), 1_790_000_000.0 + n) for n in range(3)]
    formatter = records.formatter("records", None)
    event = json.loads(formatter.encode_event(batch))
    assert [item["messageId"] for item in event["Records"]] == ["c0ffee-1", "c0ffee-2", "c0ffee-3"]
    assert formatter.parse_item_identifier("c0ffee-2") == "c0ffee-2"
    key, info = formatter.batch_info(batch)
    assert key == "MqttBatchInfo"
    assert info == {
        "clientId": "bridge-1",
        "startMessageId": "c0ffee-1",
        "endMessageId": "c0ffee-3",
        "approximateArrivalOfFirstRecord": "2026-09-21T14:13:20.000Z",
        "approximateArrivalOfLastRecord": "2026-09-21T14:13:22.000Z",
        "batchSize": 3,
        "broker": BROKER,
    }


def iot_event(payload: bytes, topic_key: str | None = None) -> Any:
    records = builder()
    record = records.record(Message("sensors/hall/t", payload), 1.0)
    formatter = records.formatter("iot-rule", topic_key)
    assert isinstance(formatter, IotRuleFormatter)
    body = formatter.encode_event([record])
    assert len(body) <= record.size + formatter.envelope_bytes
    return body


def test_iot_rule_shape_is_the_json_payload_itself() -> None:
    payload = b'{"temperature": 21.5,  "unit": "C"}'
    assert iot_event(payload) == payload


def test_iot_rule_shape_base64s_what_is_not_json() -> None:
    assert json.loads(iot_event(b"\x00\x01raw")) == {
        "data": base64.b64encode(b"\x00\x01raw").decode()
    }


def test_iot_rule_shape_adds_the_topic_where_asked() -> None:
    assert json.loads(iot_event(b'{"t": 1}', "topic")) == {"t": 1, "topic": "sensors/hall/t"}
    assert json.loads(iot_event(b"[1, 2]", "from")) == {
        "data": base64.b64encode(b"[1, 2]").decode(),
        "from": "sensors/hall/t",
    }


def test_filters_look_into_the_decoded_payload() -> None:
    """The payload is the filter data key (esm-reference.md 11.2): base64, then JSON."""
    records = builder()
    hot = records.record(Message("s/a", b'{"temperature": 31}'), 1.0)
    cold = records.record(Message("s/b", b'{"temperature": 12}'), 1.0)
    text = records.record(Message("s/c", b"not json"), 1.0)
    filters = build_filter_set(
        [{"topic": [{"prefix": "s/"}], "payload": {"temperature": [{"numeric": [">", 30]}]}}],
        MqttSourceConfig.filter_data_key,
    )
    assert [filters.matches(record) for record in (hot, cold, text)] == [True, False, False]


def test_sample_event_is_a_records_event() -> None:
    event = json.loads(MqttSourceConfig.sample_event(4, Identity()))
    assert len(event["Records"]) == 4
    assert {item["eventSource"] for item in event["Records"]} == {"mqtt"}


SOURCE = """\
functions:
  f: {invoker: http, url: http://127.0.0.1:9/}
mappings:
  - name: sensors
    function: f
    source:
      type: mqtt
      url: mqtt://user:hunter2@broker:1883
      client_id: bridge-1
"""


def problems(source: str, mapping: str = "") -> list[str]:
    text = SOURCE + textwrap.indent(textwrap.dedent(source), "      ") + mapping
    with pytest.raises(ConfigError) as caught:
        load_config_text(text, "bridge.yaml", environ={})
    return caught.value.problems


def test_a_valid_source_loads() -> None:
    loaded = load_config_text(
        SOURCE + "      topics: [sensors/+/t, alarms/#]\n", "b.yaml", environ={}
    )
    [mapping] = loaded.config.mappings
    assert isinstance(mapping.source, MqttSourceConfig)
    assert mapping.source.topics == ["sensors/+/t", "alarms/#"]


@pytest.mark.parametrize(
    ("topics", "message"),
    [
        ("[a/#/b]", "'#' must be the whole last level"),
        ("[a/b#]", "'#' must be the whole last level"),
        ("[a/x+/b]", "'+' must be a whole level"),
        ("[a/b, a/b]", "listed more than once"),
        ("[]", "at least 1"),
    ],
)
def test_bad_topic_filters_are_one_line_each(topics: str, message: str) -> None:
    [problem] = problems(f"topics: {topics}\n")
    assert problem.startswith("bridge.yaml:") and message in problem, problem


def test_a_bad_url_is_reported_without_its_password() -> None:
    text = SOURCE.replace("mqtt://user:hunter2@broker:1883", "amqp://user:hunter2@broker/x")
    with pytest.raises(ConfigError) as caught:
        load_config_text(text + "      topics: [a]\n", "bridge.yaml", environ={})
    [problem] = caught.value.problems
    assert "mqtt://" in problem and "hunter2" not in problem


def test_iot_rule_shape_needs_batches_of_one() -> None:
    found = problems(
        "topics: [a]\nevent_shape: iot-rule\n",
        "    function_response_types: [ReportBatchItemFailures]\n",
    )
    assert any("batch_size: must be 1 for event_shape iot-rule" in p for p in found), found
    assert any("function_response_types" in p for p in found), found


def test_topic_key_goes_with_the_iot_rule_shape() -> None:
    found = problems("topics: [a]\ntopic_key: topic\n")
    assert any("topic_key: applies only to event_shape iot-rule" in p for p in found), found


def test_qos_other_than_1_is_refused() -> None:
    [problem] = problems("topics: [a]\nqos: 2\n")
    assert "qos" in problem


def test_ca_file_goes_with_mqtts_and_must_exist(tmp_path: Path) -> None:
    found = problems(f"topics: [a]\nca_file: {tmp_path / 'ca.pem'}\n")
    assert any("ca_file: applies only to mqtts:// URLs" in p for p in found), found
    text = SOURCE.replace("mqtt://user", "mqtts://user") + "      topics: [a]\n"
    with pytest.raises(ConfigError) as caught:
        load_config_text(text + f"      ca_file: {tmp_path / 'ca.pem'}\n", "b.yaml", environ={})
    assert any("is not a file" in p for p in caught.value.problems), caught.value.problems
