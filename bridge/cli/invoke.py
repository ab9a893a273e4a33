"""`lambda-bridge invoke`: run one configured function once and print what came back.

`RequestResponse` and `DryRun` run here, with the function's own invoker, and need no
daemon. `Event` queues the event on a running daemon's asynchronous queue through its
Lambda API (bridge.cli.apiclient), as does any invocation with `--url` or `--qualifier`.
Exit status: 0, 1 for a function error, 2 for anything that kept the invocation from
happening (unknown function, an event that is not JSON, an unreachable daemon).
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from bridge.cli import apiclient
from bridge.codec import JSONDecodeError, dumps_text, loads
from bridge.config.model import LoadedConfig
from bridge.errors import BridgeError

EXIT_FUNCTION_ERROR = 1
EXIT_INVALID = 2


@dataclass(frozen=True)
class InvokeRequest:
    function: str
    event_source: str | None  # a file, '-' for stdin, None for {}
    invocation_type: str = "RequestResponse"
    log_type: str = "None"
    qualifier: str | None = None
    url: str | None = None

    @property
    def through_daemon(self) -> bool:
        return self.invocation_type == "Event" or bool(self.url or self.qualifier)


class BadEvent(ValueError):
    """The event given to `invoke` cannot be read or is not JSON."""


def _read_event(source: str | None) -> bytes:
    if source is None:
        return b"{}"
    shown = "standard input" if source == "-" else source
    try:
        data = sys.stdin.buffer.read() if source == "-" else Path(source).read_bytes()
    except OSError as exc:
        raise BadEvent(f"cannot read the event from {shown}: {exc.strerror or exc}") from None
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        problem = f"byte 0x{data[exc.start]:02x} at offset {exc.start}"
        raise BadEvent(f"the event in {shown} is not UTF-8 text ({problem})") from None
    if not data.strip():
        raise BadEvent(f"the event in {shown} is empty: an event is a JSON document, e.g. {{}}")
    try:
        loads(data)  # the event must be JSON, as Lambda requires
    except JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}"
        raise BadEvent(f"the event in {shown} is not JSON: {exc.msg} at {where}") from None
    return data


def invoke(loaded: LoadedConfig, request: InvokeRequest) -> int:
    if request.function not in loaded.config.functions and not request.url:
        known = ", ".join(sorted(loaded.config.functions))
        print(f"error: no function named {request.function!r} (known: {known})", file=sys.stderr)
        return EXIT_INVALID
    try:
        event = _read_event(request.event_source)
    except BadEvent as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    if request.through_daemon:
        return _invoke_through_daemon(loaded, request, event)
    if request.invocation_type == "DryRun":
        print(f"dry run: {request.function} would be invoked (its settings are valid)")
        return 0
    return asyncio.run(_invoke_here(loaded, request, event))


async def _invoke_here(loaded: LoadedConfig, request: InvokeRequest, event: bytes) -> int:
    config = loaded.config.functions[request.function]
    invoker = config.build(request.function, loaded.build_context)
    try:
        await invoker.start()
        started = time.perf_counter()
        result = await invoker.invoke(event, str(uuid.uuid4()))
        duration = time.perf_counter() - started
    except BridgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    finally:
        await invoker.close()
    print(f"request id: {result.request_id}")
    print(f"duration: {duration * 1000:.1f} ms")
    _print_result(result.function_error, result.payload)
    if request.log_type == "Tail":
        _print_log(result.log_tail)
    return EXIT_FUNCTION_ERROR if result.function_error else 0


def _invoke_through_daemon(loaded: LoadedConfig, request: InvokeRequest, event: bytes) -> int:
    try:
        base_url = apiclient.api_url(request.url, loaded)
        started = time.perf_counter()
        answer = apiclient.invoke(
            base_url,
            loaded,
            request.function,
            event,
            invocation_type=request.invocation_type,
            log_type=request.log_type,
            qualifier=request.qualifier,
        )
        duration = time.perf_counter() - started
    except apiclient.ApiClientError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    print(f"request id: {answer.request_id}")
    if request.invocation_type == "Event":
        print(f"queued ({answer.status}): the daemon runs it from its asynchronous queue")
        return 0
    if request.invocation_type == "DryRun":
        print(f"dry run ({answer.status}): {request.function} would be invoked")
        return 0
    print(f"duration: {duration * 1000:.1f} ms (through the daemon's API)")
    if answer.executed_version:
        print(f"executed version: {answer.executed_version}")
    _print_result(answer.function_error, answer.payload)
    if request.log_type == "Tail":
        _print_log(answer.log_tail)
    return EXIT_FUNCTION_ERROR if answer.function_error else 0


def _print_result(function_error: str | None, payload: bytes) -> None:
    if function_error:
        print(f"function error: {function_error}")
    print("response:")
    try:
        print(dumps_text(loads(payload), indent=True))
    except (JSONDecodeError, UnicodeDecodeError):
        print(payload.decode("utf-8", "replace"))


def _print_log(tail: bytes | None) -> None:
    print("log (last 4 KB):")
    text = (tail or b"").decode("utf-8", "replace").rstrip("\n")
    print(text if text else "(this function's invoker keeps no log)")
