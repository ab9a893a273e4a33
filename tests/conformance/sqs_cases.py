"""AWS's recorded SQS cases turned into scenarios lambda-bridge can run: which cases are
supported, and for each one its queue, function, mapping settings and input, all taken
from the case (`source_setup`, `esm_parameters`, `input`, `function_behaviour`)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from tests.conformance.snapshots import Case

NEEDS_API = "a recorded case no scenario of lambda-bridge's is made for yet"
ASYNC_COMPARED = (
    "compared in tests/conformance/test_async.py (an asynchronous invocation, not a mapping)"
)
# Cases whose recording is the API's answers only: compared by test_esm_api.py.
API_COMPARED = "compared in tests/conformance/test_esm_api.py (the recording is API answers)"
API_CASES = frozenset(
    {
        "test_duplicate_event_source_mappings",
        "test_event_source_mapping_default_batch_size",
        "test_event_source_mapping_exceptions",
        "test_esm_with_not_existing_sqs_queue",
        "test_fifo_message_group_parallelism",
    }
)

# Cases that need what lambda-bridge does not have.
NOT_POSSIBLE = {
    "test_function_name_variations": (
        "needs mappings of a function's version or alias (FunctionName name:1, name:myalias, "
        "their ARNs): lambda-bridge's mappings invoke $LATEST, and its API refuses a qualifier "
        "rather than drop it"
    ),
    "test_adding_tags": (
        "made through CloudFormation (AWS::Lambda::EventSourceMapping with Tags) and read "
        "with ListTags: lambda-bridge has no CloudFormation and keeps no tags on mappings"
    ),
}

# What each of LocalStack's test functions is called in `function_behaviour`.
HANDLERS = (
    "lambda_event_source_mapping_send_message",
    "lambda_sqs_batch_item_failure",
    "lambda_sqs_integration",
    "lambda_echo",
)
# When a stale recording does not say which message the filter dropped: one that no
# recorded filter pattern matches (every one needs a key under `body` it does not have).
UNKNOWN_NON_MATCHING = '{"not-in-the-recording": "dropped"}'
DESTINATION = "{destination}"


def unsupported(case: Case) -> str | None:
    """None for a case lambda-bridge runs, else why it is skipped."""
    name = case.name
    if name.startswith(("test_sqs_event_filter", "test_sqs_invalid_event_filter")):
        return None
    if name in API_CASES:
        return API_COMPARED
    if name == "test_sqs_queue_as_lambda_dead_letter_queue":
        return ASYNC_COMPARED
    if name in NOT_POSSIBLE:
        return NOT_POSSIBLE[name]
    if name.startswith(
        (
            "test_sqs_event_source_mapping",
            "test_failing_lambda",
            "test_message_body",
            "test_redrive_policy",
            "test_report_batch_item_failures",
        )
    ):
        return None
    return NEEDS_API


@dataclass
class Message:
    body: str  # may contain {destination}, the relay queue's URL
    attributes: dict[str, Any] = field(default_factory=dict)
    group: str | None = None
    dedup: str | None = None
    entry_id: str | None = None  # its Id in SendMessageBatch, where the case recorded it


@dataclass
class Scenario:
    """One mapping of the shared daemon: its function, queue(s), settings and input."""

    case: Case
    index: int
    handler: str
    mapping: dict[str, Any]
    messages: list[Message]
    function_timeout: int = 3
    reserved_concurrency: int | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    visibility: int = 30
    max_receives: int | None = None
    fifo: bool = False
    records_expected: int = 0  # records the function must have seen
    dlq_expected: int = 0
    relay_queue: bool = False  # a destination queue whose URL the bodies carry
    sent_before_mapping: bool = False  # the input was in the queue before the mapping
    # Filled in when the queues exist.
    queue_url: str = ""
    queue_arn: str = ""
    dlq_url: str = ""
    relay_url: str = ""

    @property
    def name(self) -> str:
        return f"sqs-case-{self.index}"


def _parameters(case: Case) -> dict[str, Any]:
    """The mapping settings the case passed to CreateEventSourceMapping."""
    esm = case.esm_parameters or {}
    mapping: dict[str, Any] = {}
    if isinstance(esm.get("BatchSize"), int):
        mapping["batch_size"] = esm["BatchSize"]
    if "MaximumBatchingWindowInSeconds" in esm:
        mapping["maximum_batching_window_in_seconds"] = esm["MaximumBatchingWindowInSeconds"]
    if esm.get("FunctionResponseTypes"):
        mapping["function_response_types"] = esm["FunctionResponseTypes"]
    if "ScalingConfig" in esm:
        concurrency = esm["ScalingConfig"]["MaximumConcurrency"]
        mapping["scaling_config"] = {"maximum_concurrency": concurrency}
    if "FilterCriteria" in esm:
        mapping["filter_criteria"] = {
            "filters": [{"pattern": given["Pattern"]} for given in esm["FilterCriteria"]["Filters"]]
        }
    return mapping


def _handler(case: Case) -> str:
    behaviour = case.function_behaviour or ""
    return next(name for name in HANDLERS if behaviour.startswith(name))


def _filter_messages(case: Case) -> list[Message]:
    """The case's two messages: the matching one and the one the filter drops."""
    text = case.input or ""
    given = re.match(r".*: matching (\{.*\}) and non-matching (.*?)( \(sent as a plain.*)?$", text)
    if given:
        matching, dropped, _plain = given.groups()
        return [Message(matching), Message(dropped)]
    [event] = case.recorded["invocation_events"]
    [record] = event["Records"]
    return [Message(json.dumps(record["body"])), Message(UNKNOWN_NON_MATCHING)]


def scenario(case: Case, index: int) -> Scenario:
    """The scenario that reproduces a supported event case (not the refused filters)."""
    setup = case.source_setup or {}
    queue = setup.get("queue", {})
    redrive = queue.get("RedrivePolicy")
    found = Scenario(
        case=case,
        index=index,
        handler=_handler(case),
        mapping=_parameters(case),
        messages=[],
        function_timeout=setup.get("function_timeout_s", 3),
        reserved_concurrency=setup.get("function", {}).get("ReservedConcurrentExecutions"),
        visibility=int(queue.get("VisibilityTimeout", 30)),
        max_receives=redrive["maxReceiveCount"] if redrive else None,
        fifo=queue.get("FifoQueue") == "true",
    )
    found.sent_before_mapping = "before the mapping" in (case.input or "")
    name = case.name
    if name.startswith("test_sqs_event_filter"):
        found.messages = _filter_messages(case)
        found.records_expected = 1
    elif name in ("test_sqs_event_source_mapping", "test_sqs_event_source_mapping_update"):
        # The update case: only its first message, sent before the retargeting, is run.
        found.handler = "lambda_echo"
        found.messages = [Message('{"foo": "bar"}')]
        found.records_expected = 1
    elif name.startswith("test_sqs_event_source_mapping_batch_size"):
        # 15 messages: a batch of 10 ('<i>-0-message-<i>') then a batch of 5.
        found.messages = [
            Message(f"{i}-{b}-message-{i}", entry_id=f"{i}-{b}")
            for b, size in enumerate((10, 5))
            for i in range(size)
        ]
        found.records_expected = 15
    elif name == "test_sqs_event_source_mapping_batching_reserved_concurrency":
        # 30 messages '<i>-<b>-message', three batches of ten.
        found.messages = [Message(f"{i}-{b}-message") for b in range(3) for i in range(10)]
        found.records_expected = 30
    elif name in (
        "test_failing_lambda_retries_after_visibility_timeout",
        "test_message_body_and_attributes_passed_correctly",
        "test_redrive_policy_with_failing_lambda",
    ):
        fail_attempts = int(re.search(r'"fail_attempts": (\d+)', case.input or "")[1])  # type: ignore[index]
        body = json.dumps({"destination": DESTINATION, "fail_attempts": fail_attempts})
        attributes = {}
        if "MessageAttributes" in (case.input or ""):
            attributes = {
                "Title": {"DataType": "String", "StringValue": "The Whistler"},
                "Author": {"DataType": "String", "StringValue": "John Grisham"},
                "WeeksOn": {"DataType": "Number", "StringValue": "6"},
            }
        found.messages = [Message(body, attributes)]
        found.relay_queue = True
        found.records_expected = min(fail_attempts, found.max_receives or 99) + 1
        if found.max_receives is not None and fail_attempts >= found.max_receives:
            found.records_expected = found.max_receives
            found.dlq_expected = 1
    elif name == "test_report_batch_item_failures":
        fails = [0, 1, 1, 2]
        found.messages = [
            Message(
                json.dumps({"message": n + 1, "fail_attempts": fails[n]}),
                group="1",
                dedup=f"dedup-{n + 1}",
                entry_id=f"message-{n + 1}",
            )
            for n in range(4)
        ]
        found.records_expected = 7
        found.dlq_expected = 1
    elif name.startswith("test_report_batch_item_failures_"):
        if case.function_returns is not None and "OVERWRITE_RESULT" in (
            case.function_behaviour or ""
        ):
            found.settings = {"overwrite_result": json.dumps(case.function_returns)}
        if name == "test_report_batch_item_failures_on_lambda_error":
            found.messages = [
                Message("{not a json body"),
                Message(json.dumps({"message": 2, "fail_attempts": 0})),
            ]
            found.dlq_expected = 2
        else:
            found.messages = [Message(json.dumps({"message": 1, "fail_attempts": 0}))]
            failing = "fails" in name
            found.records_expected = 2 if failing else 1
            found.dlq_expected = 1 if failing else 0
    else:
        raise AssertionError(f"no scenario for {name}")
    return found
