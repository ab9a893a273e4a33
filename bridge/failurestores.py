"""Where on-failure records are kept, read back for `lambda-bridge failures`.

A destination config that can read its failure records back offers `failure_store(...)`
(`KeepsFailures`); a source whose failed messages land in a dead-letter queue of its own
service offers `dead_letter_queue(...)` (`HasDeadLetterQueue`). Both are optional
capabilities found with isinstance, so the core never imports a connector.

The redrive ledger (which record was redriven, which is in flight) is the core's
(bridge.cli.redriveledger); a store only lists its records and redrives one.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from bridge.errors import BridgeError

if TYPE_CHECKING:
    from bridge.config.plugins import BuildContext

# The header (Kafka) or field (Redis Streams) a re-published record carries: its failure id.
REDRIVEN_MARK = "lambda-bridge-redriven"

# Invokes the mapping's function with an event under the mapping's retry rules: True
# once an invocation succeeded, False when they ran out.
Redeliver = Callable[[bytes], Awaitable[bool]]


class RedriveError(BridgeError):
    """A record could not be redriven (its store or its source cannot be reached, or the
    record holds no records to redrive); it stays failed."""


@contextlib.contextmanager
def well_formed(failure_id: str) -> Iterator[None]:
    """A failure record another writer left damaged (a key missing, a value of the wrong
    type, bad base64) cannot be redriven: a RedriveError, so it alone stays failed."""
    try:
        yield
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise RedriveError(
            f"{failure_id}: a malformed failure record ({type(exc).__name__}: {exc})"
        ) from exc


@dataclass(frozen=True)
class StoredFailure:
    """One failure record as kept by a destination: `document` is the record in AWS's
    shape (esm-reference.md 10), with the discarded event under `payload` where kept."""

    id: str
    document: dict[str, Any]

    @property
    def timestamp(self) -> dt.datetime | None:
        text = self.document.get("timestamp")
        if not isinstance(text, str):
            return None
        try:
            moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return None
        # A time without a zone (another writer's record) is taken as UTC.
        return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)

    @property
    def condition(self) -> str:
        context = self.document.get("requestContext") or {}
        return str(context.get("condition", "?"))

    @property
    def request_id(self) -> str:
        context = self.document.get("requestContext") or {}
        return str(context.get("requestId", "?"))

    @property
    def batch_size(self) -> int | None:
        for key, value in self.document.items():
            if key.endswith("BatchInfo") and isinstance(value, dict):
                size = value.get("batchSize")
                return size if isinstance(size, int) else None
        return None


class FailureStore(Protocol):
    """The failure records of one mapping in one destination."""

    # Where they are, for messages: a file, a stream, a topic (never credentials).
    where: str
    # The redrive ledger's file (bridge.cli.redriveledger).
    ledger_path: Path

    async def open(self) -> None: ...

    async def failures(self) -> list[StoredFailure]:
        """Every failure record of the mapping, oldest first."""
        ...

    async def redrive(self, failure: StoredFailure, redeliver: Redeliver) -> bool:
        """Send the record's records again: through `redeliver` (the function), or by
        re-publishing them to the source. True when done; RedriveError when impossible."""
        ...

    async def close(self) -> None: ...


@runtime_checkable
class KeepsFailures(Protocol):
    """A destination config whose failure records can be listed and redriven."""

    def failure_store(
        self, destination: str, mapping: Any, context: BuildContext
    ) -> FailureStore: ...


@dataclass
class MoveProgress:
    moved: int = 0
    failed: int = 0


class DeadLetterQueue(Protocol):
    """A source queue's dead-letter queue, whose messages can be moved back."""

    where: str

    async def open(self) -> None: ...

    async def depth(self) -> int:
        """Messages in the dead-letter queue (approximate, as the service counts)."""
        ...

    async def move(
        self, *, max_per_second: float, limit: int | None, report: Callable[[str], None]
    ) -> MoveProgress:
        """Move messages back to the source queue, at most `max_per_second`."""
        ...

    async def close(self) -> None: ...


@runtime_checkable
class HasDeadLetterQueue(Protocol):
    """A source config whose queue can have a dead-letter queue (SQS's redrive policy)."""

    def dead_letter_queue(self, url: str | None, context: BuildContext) -> DeadLetterQueue: ...
