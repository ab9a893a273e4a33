"""Runs every supported SQS case at once in one lambda-bridge daemon against moto: one
queue (with its dead-letter queue and relay queue where the case has them), one
function and one mapping per case; then waits until each case reached its end state.

The cases that take longest are bounded by what AWS's scenario needs: the batching
window of 10 s of the batch_size cases, and the visibility timeouts (5 to 8 s) the
redelivery cases wait out once or twice. Everything runs concurrently, so the whole
module takes about as long as its slowest case.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

from tests.conformance import sqs_handler
from tests.conformance.snapshots import Case
from tests.conformance.sqs_cases import DESTINATION, Scenario
from tests.support import DaemonProcess, read_jsonl

REGION = "us-east-1"
HANDLER_FILE = Path(sqs_handler.__file__).resolve()
# How long the run may take before each case is compared with what it has.
DEADLINE_SECONDS = 75.0


@functools.cache
def sqs_client(endpoint: str) -> Any:
    return boto3.client("sqs", endpoint_url=endpoint, region_name=REGION)


@dataclass
class Run:
    """The shared daemon's run: what each case's function received, and its queues."""

    endpoint: str
    root: Path
    scenarios: dict[str, Scenario]  # by case name
    sent: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # SendMessageBatch replies
    validations: dict[str, subprocess.CompletedProcess[str]] = field(default_factory=dict)
    daemon: DaemonProcess | None = None
    finished: set[str] = field(default_factory=set)

    @property
    def record_file(self) -> Path:
        return self.root / "invocations.jsonl"

    def invocations(self, scenario: Scenario) -> list[dict[str, Any]]:
        return [row for row in read_jsonl(self.record_file) if row["function"] == scenario.name]

    def records_seen(self, scenario: Scenario) -> int:
        rows = self.invocations(scenario)
        return sum(len(row.get("event", {}).get("Records", row.get("records", []))) for row in rows)

    def depth(self, url: str) -> int:
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        found = sqs_client(self.endpoint).get_queue_attributes(QueueUrl=url, AttributeNames=names)
        return sum(int(found["Attributes"][name]) for name in names)

    def done(self, scenario: Scenario) -> bool:
        """The case's end state: its function saw the records AWS's did, its queue is
        empty and its dead-letter queue holds what AWS's held."""
        if scenario.case.name in self.finished:
            return True
        if self.records_seen(scenario) < scenario.records_expected:
            return False
        if self.depth(scenario.queue_url) != 0:
            return False
        if scenario.dlq_url and self.depth(scenario.dlq_url) != scenario.dlq_expected:
            return False
        self.finished.add(scenario.case.name)
        return True

    def dead_letters(self, scenario: Scenario) -> list[dict[str, Any]]:
        """What the case's dead-letter queue holds (received, as ReceiveMessage gives it)."""
        reply = sqs_client(self.endpoint).receive_message(
            QueueUrl=scenario.dlq_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
        )
        return list(reply.get("Messages", []))


def create_queues(endpoint: str, scenario: Scenario) -> None:
    sqs = sqs_client(endpoint)
    suffix = ".fifo" if scenario.fifo else ""
    fifo = {"FifoQueue": "true"} if scenario.fifo else {}
    attributes: dict[str, str] = {"VisibilityTimeout": str(scenario.visibility), **fifo}
    if scenario.max_receives is not None:
        scenario.dlq_url = sqs.create_queue(
            QueueName=f"{scenario.name}-dlq{suffix}", Attributes=fifo
        )["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=scenario.dlq_url, AttributeNames=["QueueArn"])
        attributes["RedrivePolicy"] = json.dumps(
            {
                "deadLetterTargetArn": dlq_arn["Attributes"]["QueueArn"],
                "maxReceiveCount": scenario.max_receives,
            }
        )
    if scenario.relay_queue:
        scenario.relay_url = sqs.create_queue(QueueName=f"{scenario.name}-destination")["QueueUrl"]
    scenario.queue_url = sqs.create_queue(
        QueueName=f"{scenario.name}-source{suffix}", Attributes=attributes
    )["QueueUrl"]
    found = sqs.get_queue_attributes(QueueUrl=scenario.queue_url, AttributeNames=["QueueArn"])
    scenario.queue_arn = found["Attributes"]["QueueArn"]


def send_messages(endpoint: str, scenario: Scenario) -> list[dict[str, Any]]:
    """Sends the case's input ten at a time; the SendMessageBatch replies, in order."""
    sqs = sqs_client(endpoint)
    replies = []
    for start in range(0, len(scenario.messages), 10):
        entries = []
        for offset, message in enumerate(scenario.messages[start : start + 10]):
            entry: dict[str, Any] = {
                "Id": message.entry_id or str(start + offset),
                "MessageBody": message.body.replace(DESTINATION, scenario.relay_url),
            }
            if message.attributes:
                entry["MessageAttributes"] = message.attributes
            if message.group is not None:
                entry["MessageGroupId"] = message.group
                entry["MessageDeduplicationId"] = message.dedup
            entries.append(entry)
        reply = sqs.send_message_batch(QueueUrl=scenario.queue_url, Entries=entries)
        assert not reply.get("Failed"), reply["Failed"]
        replies.append(reply)
    return replies


def send(run: Run, scenario: Scenario) -> None:
    run.sent[scenario.case.name] = send_messages(run.endpoint, scenario)


def write_config(run: Run) -> Path:
    """The daemon's config: JSON, which is YAML too."""
    functions: dict[str, Any] = {}
    mappings = []
    for scenario in run.scenarios.values():
        function: dict[str, Any] = {
            "invoker": "python",
            "handler": f"{HANDLER_FILE}:{scenario.handler}",
            "timeout": scenario.function_timeout,
        }
        if scenario.reserved_concurrency is not None:
            function["reserved_concurrency"] = scenario.reserved_concurrency
        functions[scenario.name] = function
        source = {
            "type": "sqs",
            "queue_url": scenario.queue_url,
            "endpoint_url": run.endpoint,
            "wait_time_seconds": 1,
        }
        mappings.append(
            {"name": scenario.name, "function": scenario.name, "source": source} | scenario.mapping
        )
    config = {
        "state_dir": "./state",
        "drain_timeout_seconds": 5,
        "functions": functions,
        "mappings": mappings,
    }
    path = run.root / "bridge.yaml"
    path.write_text(json.dumps(config, indent=1))
    settings = {s.name: s.settings for s in run.scenarios.values() if s.settings}
    (run.root / "settings.json").write_text(json.dumps(settings))
    return path


def start_validations(root: Path, cases: list[Case]) -> dict[str, subprocess.Popen[str]]:
    """`lambda-bridge validate` of a config holding each refused filter, all at once."""
    running = {}
    for index, case in enumerate(cases):
        path = root / f"refused-filter-{index}.yaml"
        mapping = {
            "name": "refused",
            "function": "echo",
            "source": {"type": "sqs", "queue_url": "http://127.0.0.1:1/123456789012/q"},
            "maximum_batching_window_in_seconds": 1,
            "filter_criteria": {
                "filters": [
                    {"pattern": given["Pattern"]}
                    for given in case.esm_parameters["FilterCriteria"]["Filters"]
                ]
            },
        }
        config = {
            "functions": {"echo": {"invoker": "python", "handler": f"{HANDLER_FILE}:lambda_echo"}},
            "mappings": [mapping],
        }
        path.write_text(json.dumps(config, indent=1))
        running[case.name] = subprocess.Popen(
            [sys.executable, "-m", "bridge", "validate", str(path)],
            cwd=root,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    return running


def start(run: Run, refused: list[Case]) -> None:
    """Creates the queues, sends every case's input, starts the daemon and waits until
    every case reached its end state (or the deadline: each test then fails alone)."""
    sqs_client(run.endpoint)  # made once, before the threads share it
    scenarios = list(run.scenarios.values())
    before = [scenario for scenario in scenarios if scenario.sent_before_mapping]
    after = [scenario for scenario in scenarios if not scenario.sent_before_mapping]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda scenario: create_queues(run.endpoint, scenario), scenarios))
        list(pool.map(lambda scenario: send(run, scenario), before))
    config = write_config(run)
    env = {
        "RECORD_TO": str(run.record_file),
        "SQS_CONFORMANCE_SETTINGS": str(run.root / "settings.json"),
    }
    run.daemon = DaemonProcess(config, run.root, env=env).start()
    # The other cases' input goes in once every mapping runs, as in AWS's scenarios:
    # 35 mappings opening their clients keep the daemon busy for a few seconds.
    run.daemon.wait_for_log("mapping.started", timeout=60, count=len(run.scenarios))
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda scenario: send(run, scenario), after))
    # While the cases wait out their windows and visibility timeouts, the CPU is free.
    validating = start_validations(run.root, refused)
    deadline = time.monotonic() + DEADLINE_SECONDS
    waiting = list(run.scenarios.values())
    while waiting and time.monotonic() < deadline:
        waiting = [scenario for scenario in waiting if not run.done(scenario)]
        time.sleep(0.2)
    for name, process in validating.items():
        out, err = process.communicate(timeout=30)
        run.validations[name] = subprocess.CompletedProcess(
            process.args, process.returncode, out, err
        )
