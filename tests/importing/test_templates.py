"""Importing the realistic templates and serverless.yml files of this folder: what each
part becomes, that `validate` accepts every imported config, the exact output of one
template, the command line's errors and `--strict`."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bridge.config.loading import load_config_text
from bridge.importing.emit import config_data, emit
from bridge.importing.model import ImportOptions, ImportResult
from bridge.importing.notes import TemplateError
from bridge.importing.sam import import_sam
from bridge.importing.serverless import import_serverless

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
SERVICES = HERE / "serverless"
SAM_TEMPLATES = sorted(path.name for path in TEMPLATES.iterdir() if path.is_dir())
SERVERLESS = sorted(path.name for path in SERVICES.iterdir() if path.is_dir())


def sam(name: str, **options: Any) -> ImportResult:
    overrides = {"ResultsDir": "/tmp/results", **options.pop("parameter_overrides", {})}
    if name == "cfn-plain":
        overrides = {}
    given = ImportOptions(parameter_overrides=overrides, **options)
    return import_sam(TEMPLATES / name / "template.yaml", given)


def serverless(name: str, **options: Any) -> ImportResult:
    given = ImportOptions(environ={"RESULTS_DIR": "/tmp/results"}, **options)
    return import_serverless(SERVICES / name / "serverless.yml", given)


def mapping(result: ImportResult, name: str) -> dict[str, Any]:
    return next(part.data for part in result.mappings if part.data["name"] == name)


@pytest.mark.parametrize("name", SAM_TEMPLATES)
def test_validate_accepts_every_imported_template(name: str) -> None:
    result = sam(name)
    loaded = load_config_text(emit(result, "test"), f"{name} (imported)")
    assert set(loaded.config.functions) == set(result.functions)
    assert [m.name for m in loaded.config.mappings] == [p.data["name"] for p in result.mappings]


@pytest.mark.parametrize("name", SERVERLESS)
def test_validate_accepts_every_imported_serverless_file(name: str) -> None:
    result = serverless(name, bucket_folders={"orders-uploads": "./uploads"})
    loaded = load_config_text(emit(result, "test"), f"{name} (imported)")
    assert len(loaded.config.mappings) == len(result.mappings) > 0


def test_sqs_template_globals_layers_intrinsics_and_partial_batch_responses() -> None:
    result = sam("sqs-orders", stack_name="shop", account_id="123456789012")
    function = result.functions["ProcessOrderFunction"].data
    assert function["runtime"] == "python3.11" and function["handler"] == "app.handler"
    assert function["memory_size"] == 256 and function["timeout"] == 5  # Globals
    assert function["reserved_concurrency"] == 2 and function["ephemeral_storage"] == 1024
    assert function["layers"][0].endswith("templates/sqs-orders/layers/common")
    assert function["environment"] == {
        "STAGE": "dev",  # Globals, merged with the function's own variables
        "LOG_LEVEL": "DEBUG",  # Fn::If on a condition
        "RESULTS_DIR": "/tmp/results",
        "QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/shop-orders",
        "HOME_REGION": "eu-west-1",  # Fn::Select of a CommaDelimitedList
        "QUEUE_REGION": "us-east-1",  # Fn::Select of Fn::Split of an ARN
        "DLQ_ARN": "arn:aws:sqs:us-east-1:123456789012:shop-orders-dlq",
        "TEMPLATE_TEXT": "${NOT_A_VARIABLE}",
    }
    assert mapping(result, "ProcessOrderFunction-OrderQueue") == {
        "name": "ProcessOrderFunction-OrderQueue",
        "function": "ProcessOrderFunction",
        "source": {
            "type": "sqs",
            "queue_arn": "arn:aws:sqs:us-east-1:123456789012:shop-orders",
            "region": "us-east-1",
        },
        "batch_size": 5,
        "maximum_batching_window_in_seconds": 1,
        "function_response_types": ["ReportBatchItemFailures"],
        "scaling_config": {"maximum_concurrency": 2},
    }
    queue = next(spec for spec in result.resources if spec.logical_id == "OrdersQueue")
    assert [spec.logical_id for spec in result.resources] == [
        "OrdersDeadLetterQueue",
        "OrdersQueue",
    ]
    assert queue.properties["RedrivePolicy"] == {
        "deadLetterTargetArn": "arn:aws:sqs:us-east-1:123456789012:shop-orders-dlq",
        "maxReceiveCount": 2,
    }
    prod = sam("sqs-orders", parameter_overrides={"Stage": "prod"})
    assert prod.functions["ProcessOrderFunction"].data["environment"]["LOG_LEVEL"] == "WARNING"


def test_stream_templates_tumbling_windows_destinations_and_filters() -> None:
    kinesis = sam("kinesis-windows")
    clicks = mapping(kinesis, "CountClicksFunction-Clicks")
    assert (
        clicks["source"]["stream"]
        == "arn:aws:kinesis:us-east-1:000000000000:stream/local-ClickStream"
    )
    assert (
        clicks["tumbling_window_in_seconds"] == 2
        and clicks["bisect_batch_on_function_error"] is True
    )
    destination = clicks["destination_config"]["on_failure"]["destination"]
    assert kinesis.destinations[destination].data["type"] == "sqs"
    dynamodb = sam("dynamodb-filters", stack_name="desk")
    tickets = mapping(dynamodb, "EscalateFunction-UrgentTickets")
    assert tickets["source"] == {
        "type": "dynamodb-streams",
        "table": "desk-tickets",  # the table's latest stream: its label is not known offline
        "starting_position": "TRIM_HORIZON",
        "region": "us-east-1",
    }
    assert tickets["filter_criteria"] == {
        "filters": [
            {
                "pattern": {
                    "eventName": ["INSERT"],
                    "dynamodb": {"NewImage": {"priority": {"S": ["urgent"]}}},
                }
            }
        ]
    }


def test_schedules_routes_aliases_and_asynchronous_settings() -> None:
    result = sam("schedule-http")
    nightly = mapping(result, "ReportFunction-Nightly")
    assert nightly["source"] == {
        "type": "schedule",
        "expression": "cron(0 2 * * ? *)",
        "rule_name": "nightly-report",
        "input": {"report": "nightly"},
    }
    frequent = mapping(result, "ReportFunction-Frequent")
    assert frequent["source"]["timezone"] == "Europe/Berlin"
    assert frequent["maximum_retry_attempts"] == 2
    report = result.functions["ReportFunction"].data
    assert report["async"] == {"maximum_retry_attempts": 1, "maximum_event_age_in_seconds": 600}
    assert report["code"].endswith("schedule-http/src")  # CodeUri from Globals
    api = result.functions["OrdersApiFunction"].data
    assert api["aliases"] == {"live": {"version": "1"}}
    assert [
        (t.data["path"], t.data["methods"], t.data["format"]) for t in result.http_triggers
    ] == [
        ("/orders/{id}", ["GET"], "2.0"),
        ("/orders", ["POST"], "2.0"),
        ("/legacy/orders/{id}", ["GET"], "1.0"),
    ]
    assert config_data(result)["api"] == {"listen": "127.0.0.1:3000"}


def test_plain_cloudformation_resources() -> None:
    result = sam("cfn-plain")
    assert result.functions["Worker"].data["async"] == {"maximum_retry_attempts": 0}
    worker = mapping(result, "Worker-WorkerMapping")
    assert worker["source"]["queue_arn"].endswith(":local-WorkQueue.fifo")
    assert worker["batch_size"] == 10 and worker["enabled"] is True
    read_past = [note.message for note in result.notes.items if not note.unsupported]
    assert any("AWS::IAM::Role read past" in message for message in read_past)
    assert any("AWS::Lambda::Permission read past" in message for message in read_past)


def test_serverless_variables_events_and_provider_defaults() -> None:
    result = serverless(
        "orders-service", stage="prod", bucket_folders={"orders-uploads": "/srv/uploads"}
    )
    order = result.functions["processOrder"].data
    assert order["handler"] == "src/orders.handler" and order["code"].endswith("orders-service")
    assert order["environment"]["STAGE"] == "prod"  # ${opt:stage} through ${self:provider.stage}
    assert order["environment"]["QUEUE_NAME"] == "orders-prod-orders"
    sqs = mapping(result, "processOrder-sqs0")
    assert sqs["batch_size"] == 10  # ${self:custom.settings.${sls:stage}.batchSize}
    assert sqs["source"]["queue_arn"] == "arn:aws:sqs:us-east-1:000000000000:orders-prod-orders"
    assert sqs["filter_criteria"] == {"filters": [{"pattern": {"body": {"kind": ["order"]}}}]}
    files = mapping(result, "nightly-s31")
    assert files["source"]["path"] == "/srv/uploads" and files["source"]["patterns"] == [
        "incoming/*.csv"
    ]
    streams = serverless("streams-service")
    audit = mapping(streams, "auditTickets-stream0")
    assert audit["source"]["table"] == "streams-dev-tickets"
    kafka = mapping(streams, "auditTickets-kafka1")
    assert (
        kafka["source"]["topics"] == ["tickets"] and kafka["source"]["consumer_group_id"] == "audit"
    )
    assert [part.kind for part in streams.mappings] == ["stream", "stream", "kafka"]


def test_the_output_is_stable(monkeypatch: pytest.MonkeyPatch) -> None:
    """The exact config of one template: comments saying where each part came from,
    template order, nothing machine-specific."""
    monkeypatch.chdir(TEMPLATES)
    options = ImportOptions(parameter_overrides={"ResultsDir": "/tmp/results"}, cwd=TEMPLATES)
    text = emit(
        import_sam(Path("kinesis-windows/template.yaml"), options), "lambda-bridge import sam"
    )
    assert text == (HERE / "golden" / "kinesis-windows.yaml").read_text()


def test_unsupported_parts_are_named_and_strict_makes_them_errors(tmp_path: Path) -> None:
    template = tmp_path / "template.yaml"
    (tmp_path / "src").mkdir()
    template.write_text(
        "Transform: AWS::Serverless-2016-10-31\n"
        "Resources:\n"
        "  Fn:\n"
        "    Type: AWS::Serverless::Function\n"
        "    Properties:\n"
        "      CodeUri: src\n"
        "      Handler: app.handler\n"
        "      Runtime: python3.12\n"
        "      FunctionUrlConfig: {AuthType: NONE}\n"
        "      Events:\n"
        "        Topic: {Type: SNS, Properties: {Topic: arn:aws:sns:us-east-1:1:t}}\n"
        "  Bus: {Type: AWS::Events::EventBus, Properties: {Name: b}}\n"
    )
    result = import_sam(template, ImportOptions())
    assert result.notes.lines_for_stderr() == [
        f"warning: {template}:9: Resources.Fn.Properties.FunctionUrlConfig: FunctionUrlConfig is not supported; left out",
        f"warning: {template}:11: Resources.Fn.Properties.Events.Topic: an event of type SNS is not supported; left out",
        f"warning: {template}:12: Resources.Bus: AWS::Events::EventBus is not supported; left out",
    ]
    command = [sys.executable, "-m", "bridge", "import", "sam", str(template), "--strict"]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    assert done.returncode == 2 and done.stdout == ""
    assert (
        f"error: {template}:12: Resources.Bus: AWS::Events::EventBus is not supported; left out"
        in done.stderr
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "Resources:\n  Fn:\n    Type: AWS::Serverless::Function\n    Properties: {Runtime: python3.11, CodeUri: nowhere, Handler: a.b}\n",
            "template.yaml:4: Resources.Fn.Properties.CodeUri: nowhere does not exist (relative to the template's folder)",
        ),
        (
            "Resources:\n  Q:\n    Type: AWS::SQS::Queue\n    Properties:\n      QueueName: !Sub '${Nope}-q'\n",
            "template.yaml:5: Resources.Q.Properties.QueueName.Fn::Sub: no parameter or resource named 'Nope'",
        ),
        (
            "Parameters:\n  Needed: {Type: String}\nResources: {}\n",
            "template.yaml:2: Parameters.Needed: has no Default: give it with --parameter-overrides",
        ),
        ("Resources:\n  X: [1]\n", "template.yaml:2: Resources.X: a resource needs a Type"),
    ],
)
def test_bad_templates_exit_2_with_one_line(tmp_path: Path, body: str, message: str) -> None:
    template = tmp_path / "template.yaml"
    template.write_text(body)
    with pytest.raises(TemplateError):
        import_sam(template, ImportOptions())
    done = subprocess.run(
        [sys.executable, "-m", "bridge", "import", "sam", str(template)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr == f"error: {tmp_path}/{message}\n"


def test_brokers_dead_letter_queue_and_invoke_config_destinations(tmp_path: Path) -> None:
    result = sam("brokers")
    payments = mapping(result, "PaymentsFunction-Payments")
    assert payments["source"]["type"] == "rabbitmq"  # the broker's EngineType
    assert payments["source"]["queues"] == ["payments"]
    assert payments["source"]["virtual_host"] == "/payments"
    assert payments["source"]["broker_arn"].startswith(
        "arn:aws:mq:us-east-1:000000000000:broker:payments:b-"
    )
    assert payments["batch_size"] == 20 and payments["maximum_batching_window_in_seconds"] == 2
    audit = mapping(result, "PaymentsFunction-Audit")
    assert (
        audit["source"]["msk_cluster_arn"] == "arn:aws:kafka:us-east-1:000000000000:cluster/audit/0"
    )
    assert audit["source"]["consumer_group_id"] == "payments-audit"
    ledger = mapping(result, "PaymentsFunction-Ledger")
    assert ledger["source"]["bootstrap_servers"] == [
        "kafka-1.internal:9092",
        "kafka-2.internal:9092",
    ]
    function = result.functions["PaymentsFunction"].data
    assert function["async"] == {
        "dead_letter": "local-FailedPayments",
        "maximum_retry_attempts": 2,
        "destinations": {"on_success": "local-PaymentEvents"},
    }
    assert result.destinations["local-PaymentEvents"].data["type"] == "sns"
    activemq = tmp_path / "template.yaml"
    shutil.copytree(TEMPLATES / "brokers" / "src", tmp_path / "src")
    activemq.write_text(
        (TEMPLATES / "brokers" / "template.yaml").read_text().replace("RABBITMQ", "ACTIVEMQ")
    )
    imported = import_sam(activemq, ImportOptions())
    source = mapping(imported, "PaymentsFunction-Payments")["source"]
    assert (source["type"], source["queues"]) == ("activemq", ["payments"])
    loaded = load_config_text(emit(imported, "test"), "brokers, ActiveMQ (imported)")
    assert "PaymentsFunction-Payments" in [m.name for m in loaded.config.mappings]
