"""Invoking a mapping's function again with a failed batch's event, under its retry rules.

The rules are the mapping's (esm-reference.md 6.1): up to `maximum_retry_attempts`
retries after the first invocation, with the mapping's jittered `retry_backoff` between
them. A redrive always ends: an unlimited setting (-1, which on a stream means "until
the records expire", and they have already been given up) allows
`RETRIES_WHEN_UNLIMITED` retries. A throttled or unreachable function was not invoked:
that does not count as an attempt (as in the pipeline), but after
`MAX_NOT_INVOKED` such answers in a row the record is left failed for this run.

Success is judged as the pipeline judges it (README "Errors, retries and partial batch
responses"): no function error and, with `ReportBatchItemFailures`, no item reported.
A partial batch response fails the redrive of the whole record, which is retried whole:
the record stays one unit in the ledger.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from bridge.codec import JSONDecodeError, loads
from bridge.config.model import LoadedConfig, MappingConfig
from bridge.errors import TransportError
from bridge.pipeline.responses import classify
from bridge.pipeline.settings import resolve
from bridge.protocols import Invoker
from bridge.records import InvokeResult, OutcomeKind, new_request_id
from bridge.retry import RetryPolicy

RETRIES_WHEN_UNLIMITED = 2
MAX_NOT_INVOKED = 10


def _answer_problem(result: InvokeResult, report_items: bool) -> str | None:
    """Why this answer is a failure, or None for a success, as the pipeline classifies it
    (bridge.pipeline.responses.classify, esm-reference.md 4, 9). A redriven record is
    one event: a partial batch response naming any item fails all of it."""
    outcome = classify(result, (), report_batch_item_failures=report_items)
    if outcome.kind is OutcomeKind.SUCCESS:
        return None
    if outcome.kind is OutcomeKind.FUNCTION_ERROR:
        return f"function error ({result.function_error})"
    try:
        answer: Any = loads(result.payload)
    except JSONDecodeError:
        return "the answer is not JSON (ReportBatchItemFailures)"
    items = answer.get("batchItemFailures") if isinstance(answer, dict) else None
    if not items:
        return "the answer is not a JSON object (ReportBatchItemFailures)"
    count = len(items) if isinstance(items, list) else "?"
    return f"partial batch response ({count} items failed)"


class Redeliverer:
    """Invokes one mapping's function with whole events (a `Redeliver`)."""

    def __init__(self, loaded: LoadedConfig, mapping: MappingConfig) -> None:
        self._loaded = loaded
        self._mapping = mapping
        policy: RetryPolicy = resolve(mapping).retry
        retries = policy.maximum_retry_attempts
        self.invocations = 1 + (RETRIES_WHEN_UNLIMITED if retries < 0 else retries)
        self._backoff = policy.backoff
        self._report_items = policy.report_batch_item_failures
        self._invoker: Invoker | None = None

    async def _started(self) -> Invoker:
        if self._invoker is None:
            function = self._mapping.function
            invoker = self._loaded.config.functions[function].build(
                function, self._loaded.build_context
            )
            await invoker.start()
            self._invoker = invoker
        return self._invoker

    async def __call__(self, event: bytes) -> bool:
        invoker = await self._started()
        attempt = 0
        not_invoked = 0
        while True:
            try:
                result = await invoker.invoke(event, new_request_id())
            except TransportError as exc:
                not_invoked += 1
                if not_invoked >= MAX_NOT_INVOKED:
                    _say(f"  not invoked {not_invoked} times in a row ({exc}): left failed")
                    return False
                delay = max(self._backoff.delay(not_invoked), exc.retry_after or 0)
                _say(f"  not invoked ({exc}); trying again in {delay:.1f} s")
                await asyncio.sleep(delay)
                continue
            not_invoked = 0
            attempt += 1
            problem = _answer_problem(result, self._report_items)
            if problem is None:
                return True
            if attempt >= self.invocations:
                _say(f"  attempt {attempt} of {self.invocations}: {problem}; left failed")
                return False
            delay = self._backoff.delay(attempt)
            _say(f"  attempt {attempt} of {self.invocations}: {problem}; retry in {delay:.1f} s")
            await asyncio.sleep(delay)

    async def close(self) -> None:
        if self._invoker is not None:
            await self._invoker.close()
            self._invoker = None


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
