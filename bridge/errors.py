"""The error tree. Each class says whether retrying the same operation can help.

Function errors and partial batch failures are not exceptions: they are values
(`bridge.records.InvokeResult`). Exceptions are for faults around the function:
configuration, transport, the source and the destinations.
"""

from __future__ import annotations


class BridgeError(Exception):
    """Base of every error lambda-bridge raises on purpose."""

    retriable: bool = False


class ConfigError(BridgeError):
    """The configuration cannot work; the message names the file, line and key."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class TransportError(BridgeError):
    """The invocation did not reach the function or its answer was lost.

    Lambda retries these without counting an attempt (esm-reference.md 6.1).
    """

    retriable = True

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ThrottledError(TransportError):
    """The function is at its concurrency or rate limit (HTTP 429)."""


class SourceError(BridgeError):
    """Reading from or settling with the event source failed; the mapping reconnects."""

    retriable = True


class PermanentSourceError(SourceError):
    """The source refuses us for good (not found, access denied): the mapping fails."""

    retriable = False


class DestinationError(BridgeError):
    """Writing a failure record failed; the record stays unsettled and is written again."""

    retriable = True


class PermanentDestinationError(DestinationError):
    """The destination refuses the record for good (missing queue, access denied, a
    record it cannot take): the mapping fails with the reason; its records stay unsettled."""

    retriable = False


class InvokerStartError(BridgeError):
    """A function cannot be prepared (missing handler file, import error, bad command)."""
