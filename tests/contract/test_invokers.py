"""The invoker contract: each case written once and run against every invoker of
tests/contract/invoker_harness.KINDS on a real target (an in-process handler, an HTTP
server, a command, moto's Lambda, execution environments behind the Runtime API)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from bridge.config.registry import registered
from bridge.errors import InvokerStartError, TransportError
from bridge.protocols import Invoker
from bridge.records import InvokeResult
from tests.contract.cases import for_every_kind
from tests.contract.invoker_harness import CASES, KINDS, Kind, Outcome, Target, build

# Longer than any invoker takes to give up on a function (the http invoker waits its
# timeout and 2 s more): an invocation still running then hangs.
HANG_GUARD = 20.0
TIMEOUT = 1.0


def contract(case: str) -> Callable[[Callable[..., None]], Any]:
    return for_every_kind(case, CASES, KINDS)


Body = Callable[[Invoker, Target], Awaitable[None]]


@pytest.fixture
def run(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[..., None]:
    """run(kind, body, **settings): start the kind's target and an invoker for it, run
    `body`, close the invoker, all within HANG_GUARD."""

    def runner(kind: Kind, body: Body, **settings: Any) -> None:
        fixtures = {name: request.getfixturevalue(name) for name in kind.fixtures}

        async def main() -> None:
            async with kind.target(tmp_path, fixtures) as target:
                invoker = build(kind, tmp_path, {**target.settings, **settings})
                await invoker.start()
                try:
                    await body(invoker, target)
                finally:
                    await invoker.close()

        asyncio.run(asyncio.wait_for(main(), HANG_GUARD))

    return runner


def event(behaviour: str = "echo", **fields: Any) -> bytes:
    return json.dumps({"behaviour": behaviour, **fields}).encode()


async def invoke(
    invoker: Invoker, target: Target, behaviour: str, request_id: str = "req-1", **fields: Any
) -> InvokeResult:
    if target.expect is not None:
        await target.expect(behaviour)
    return await invoker.invoke(event(behaviour, **fields), request_id)


def error_document(result: InvokeResult) -> dict[str, Any]:
    assert result.function_error == "Unhandled", result
    document = json.loads(result.payload)
    assert isinstance(document, dict)
    return document


async def still_works(invoker: Invoker, target: Target) -> None:
    result = await invoke(invoker, target, "echo", "req-after", id="after")
    assert result.function_error is None
    assert json.loads(result.payload)["id"] == "after"


def assert_request_ids(kind: Kind, passed: list[str], results: list[InvokeResult]) -> None:
    """The caller's ids, or (where the service makes its own) a fresh one per call."""
    carried = [result.request_id for result in results]
    if kind.request_ids == "caller":
        assert carried == passed
    else:
        assert all(carried) and len(set(carried)) == len(carried), carried


@contract("success")
def test_success(kind: Kind, run: Callable[..., None]) -> None:
    """The event reaches the function unchanged and the payload is what it answered, with
    no function error; each result carries its request id."""
    events = [
        {"behaviour": "echo", "id": 1, "text": "caf\u00e9 \u2615", "nested": {"n": [1, 2.5, None]}},
        {"behaviour": "echo", "id": 2, "Records": [{"body": '{"a": 1}'}]},
    ]

    async def body(invoker: Invoker, target: Target) -> None:
        passed = ["c0ffee00-0000-4000-8000-000000000001", "c0ffee00-0000-4000-8000-000000000002"]
        results = [
            await invoker.invoke(json.dumps(sent).encode(), request_id)
            for sent, request_id in zip(events, passed, strict=True)
        ]
        for sent, result in zip(events, results, strict=True):
            assert result.function_error is None
            assert json.loads(result.payload) == sent
        assert_request_ids(kind, passed, results)

    run(kind, body)


@contract("function_error")
def test_function_error(kind: Kind, run: Callable[..., None]) -> None:
    """A function that raises is function error `Unhandled` with Lambda's error document;
    the invoker serves the next invocation."""

    async def body(invoker: Invoker, target: Target) -> None:
        document = error_document(await invoke(invoker, target, "fail", id=7))
        assert document["errorMessage"] == "refused 7"
        assert document["errorType"] == "ValueError"
        await still_works(invoker, target)

    run(kind, body)


@contract("timeout")
def test_timeout(kind: Kind, run: Callable[..., None]) -> None:
    """A function running past its timeout is `Sandbox.Timedout` with Lambda's message,
    the call returns long before the function would end (within HANG_GUARD), and the
    invoker serves the next invocation."""

    async def body(invoker: Invoker, target: Target) -> None:
        # Longer than HANG_GUARD: an invoker that waited for the function would fail.
        document = error_document(await invoke(invoker, target, "sleep", seconds=60))
        assert document["errorType"] == "Sandbox.Timedout"
        assert f"Task timed out after {TIMEOUT:.2f} seconds" in document["errorMessage"]
        await still_works(invoker, target)

    run(kind, body, timeout=TIMEOUT)


def assert_outcome(result: InvokeResult, expected: Outcome) -> None:
    assert result.function_error == expected.function_error
    if expected.error_type is not None:
        assert json.loads(result.payload)["errorType"] == expected.error_type
    if expected.payload is not None:
        assert result.payload == expected.payload


@contract("not_json")
def test_answer_that_is_not_json(kind: Kind, run: Callable[..., None]) -> None:
    """An answer that is not JSON comes out as the invoker documents it (refused as
    `Runtime.MarshalError`, or passed on byte for byte); the invoker goes on."""

    async def body(invoker: Invoker, target: Target) -> None:
        assert_outcome(await invoke(invoker, target, "not_json"), kind.not_json)
        await still_works(invoker, target)

    run(kind, body)


@contract("too_large")
def test_answer_over_6_mb(kind: Kind, run: Callable[..., None]) -> None:
    """An answer over Lambda's 6 MB is function error `Function.ResponseSizeTooLarge`,
    and the invoker serves the next invocation."""

    async def body(invoker: Invoker, target: Target) -> None:
        document = error_document(await invoke(invoker, target, "too_large"))
        assert document["errorType"] == "Function.ResponseSizeTooLarge"
        await still_works(invoker, target)

    run(kind, body)


@contract("large_event")
def test_large_event_round_trips(kind: Kind, run: Callable[..., None]) -> None:
    """A 1 MB event reaches the function whole and comes back whole."""
    blob = "0123456789abcdef" * (1 << 16)

    async def body(invoker: Invoker, target: Target) -> None:
        result = await invoke(invoker, target, "echo", id="large", blob=blob)
        assert result.function_error is None
        assert json.loads(result.payload) == {"behaviour": "echo", "id": "large", "blob": blob}

    run(kind, body)


@contract("concurrent")
def test_concurrent_invocations(kind: Kind, run: Callable[..., None]) -> None:
    """Eight invocations at once each get their own answer."""

    async def body(invoker: Invoker, target: Target) -> None:
        passed = [f"req-{n}" for n in range(8)]
        results = await asyncio.gather(
            *(invoker.invoke(event(id=n), request_id) for n, request_id in enumerate(passed))
        )
        assert [json.loads(result.payload)["id"] for result in results] == list(range(8))
        assert all(result.function_error is None for result in results)
        assert_request_ids(kind, passed, list(results))

    run(kind, body)


@contract("close_twice")
def test_close_twice(kind: Kind, run: Callable[..., None]) -> None:
    """close() a second time (the harness closes a third) is harmless."""

    async def body(invoker: Invoker, target: Target) -> None:
        await still_works(invoker, target)
        await invoker.close()
        await invoker.close()

    run(kind, body)


@contract("close_after_failed_start")
def test_close_after_failed_start(kind: Kind, tmp_path: Path, run: Callable[..., None]) -> None:
    """start() that fails raises InvokerStartError; close() after it, twice, is harmless."""

    async def body(_: Invoker, target: Target) -> None:
        assert target.failing_start is not None
        broken = build(kind, tmp_path, target.failing_start)
        with pytest.raises(InvokerStartError):
            await broken.start()
        await broken.close()
        await broken.close()

    run(kind, body)


@contract("target_gone")
def test_target_gone(kind: Kind, run: Callable[..., None]) -> None:
    """Once the target goes away (server stopped, endpoint unreachable, command removed),
    an invocation raises TransportError, which the bridge retries, instead of hanging."""

    async def body(invoker: Invoker, target: Target) -> None:
        assert target.go_away is not None
        await still_works(invoker, target)
        await target.go_away()
        with pytest.raises(TransportError):
            await invoke(invoker, target, "echo", id="lost")

    run(kind, body)


def test_every_built_in_invoker_runs_the_contract() -> None:
    """An invoker type the daemon knows but the registry lacks would skip the contract."""
    assert set(registered("functions")) == {kind.name for kind in KINDS}
