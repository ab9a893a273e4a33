"""Value types that flow through a mapping: Record, InvokeResult, FailureRecord."""

from __future__ import annotations

import enum
import uuid
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bridge.codec import dumps, loads

# Lambda's synchronous invocation payload limit, 6 MB (esm-reference.md 0, 3.1).
MAX_SYNC_PAYLOAD_BYTES = 6 * 1024 * 1024


class Record:
    """One record as the function will see it, plus what the pipeline needs to settle it.

    `partition` is the unit whose position is checkpointed (a shard, a Kafka partition, a
    file); `position` orders records within it. `lane` decides which lane processes the
    record: records that share a lane are delivered in order. `item_id` is what a
    partial batch response names (messageId, sequence number, ...). `handle` is the
    source's own token for settling it (a receipt handle, a file snapshot).

    A record holds its payload as a dict, as JSON bytes, or both: a source may hand over
    either, and the other is made once, on first use (the bytes for size accounting, the
    event and failure records; the dict for filters).
    """

    __slots__ = (
        "_payload",
        "arrival",
        "encoded",
        "handle",
        "item_id",
        "lane",
        "partition",
        "position",
    )

    # Positional arguments are accepted because sources build records on the hot path,
    # where they cost half as much as keywords.
    def __init__(  # noqa: PLR0917
        self,
        partition: str,
        position: Any,
        item_id: Hashable,
        payload: dict[str, Any] | None,
        arrival: float,
        lane: Hashable = None,
        handle: Any = None,
        encoded: bytes | None = None,
    ) -> None:
        if payload is None and encoded is None:
            raise ValueError("a record needs its payload or its JSON")
        self.partition = partition
        self.position = position
        self.item_id = item_id
        self._payload = payload
        self.arrival = arrival
        self.lane = lane
        self.handle = handle
        self.encoded = encoded

    @property
    def payload(self) -> dict[str, Any]:
        payload = self._payload
        if payload is None:
            payload = self._payload = loads(self.encoded)  # type: ignore[arg-type]
        return payload

    def encode(self) -> bytes:
        """The record's JSON, made once from the payload and cached. The one way to get
        it: `map(Record.encode, records)` on the hot path."""
        body = self.encoded
        if body is None:
            body = self.encoded = dumps(self._payload)
        return body

    @property
    def size(self) -> int:
        return len(self.encode())

    def __repr__(self) -> str:
        return f"Record({self.partition!r}@{self.position!r}, id={self.item_id!r})"


def new_request_id() -> str:
    """A request id in the form Lambda gives one: a version 4 UUID, as the failure
    record's `requestId` shows (esm-reference.md 10.1, 10.5)."""
    return str(uuid.uuid4())


@dataclass(frozen=True, slots=True)
class InvokeResult:
    """What came back from one invocation that reached the function.

    `function_error` is Lambda's `X-Amz-Function-Error` value (`Unhandled`, ...) or None.
    """

    payload: bytes
    request_id: str
    function_error: str | None = None
    status_code: int = 200
    executed_version: str = "$LATEST"
    duration: float = 0.0
    # The end of the invocation's log (the last 4 KB), where the invoker keeps one:
    # Invoke's `LogType: Tail`.
    log_tail: bytes | None = None


class OutcomeKind(enum.Enum):
    SUCCESS = "success"
    FUNCTION_ERROR = "function_error"
    INVALID_RESPONSE = "invalid_response"
    PARTIAL_FAILURE = "partial_failure"


@dataclass(frozen=True, slots=True)
class Outcome:
    """The classified result of an invocation (esm-reference.md 4, 5.2, 6.4, 9)."""

    kind: OutcomeKind
    failed_ids: frozenset[Hashable] = frozenset()
    reason: str = ""


class FailureCondition(enum.Enum):
    """Why records left the mapping without a successful invocation (esm-reference.md 10)."""

    RETRY_ATTEMPTS_EXHAUSTED = "RetryAttemptsExhausted"
    RECORD_AGE_EXCEEDED = "RecordAgeExceeded"
    PAYLOAD_SIZE_EXCEEDED = "MaximumPayloadSizeExceeded"


@dataclass(frozen=True, slots=True)
class FailureRecord:
    """Records discarded by the retry machine, with the context of their last invocation."""

    mapping: str
    condition: FailureCondition
    records: Sequence[Record]
    approximate_invoke_count: int
    function_arn: str
    timestamp: float
    last_result: InvokeResult | None = None
    request_id: str | None = None
    reason: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Delivery:
    """An already-built document for a destination (bridge.protocols.Destination.deliver).

    `origin` names what produced it (the function), for destinations that file records
    by producer (a file's name, a stream field). `attributes` are message attributes as
    (DataType, StringValue), for the SQS and SNS dead-letter queues. `success` says which
    of Lambda's EventBridge detail types the record is (None: not an invocation record),
    `function_arn` the qualified ARN of the function it is about.
    """

    body: bytes
    origin: str
    function_arn: str
    success: bool | None = None
    attributes: dict[str, tuple[str, str]] = field(default_factory=dict)
