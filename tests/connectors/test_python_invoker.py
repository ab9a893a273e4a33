"""The `python` invoker: in-process handlers called the way Lambda's Python runtime calls them."""

from __future__ import annotations

import asyncio
import json
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from bridge.config.plugins import BuildContext, Identity
from bridge.errors import InvokerStartError
from bridge.records import InvokeResult
from connectors.python.config import HandlerSpec, PythonFunctionConfig
from connectors.python.invoker import PythonInvoker

REQUEST_ID = "c0ffee00-0000-4000-8000-000000000001"


@pytest.fixture(autouse=True)
def _restore_import_state() -> Iterator[None]:
    """The invoker adds handler folders to sys.path and handler modules to sys.modules;
    undo that so tests cannot see each other's handlers."""
    path = list(sys.path)
    modules = set(sys.modules)
    yield
    sys.path[:] = path
    for name in set(sys.modules) - modules:
        del sys.modules[name]


def write(path: Path, source: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source))
    return path


def build(
    tmp_path: Path, handler: str, *, name: str = "fn", timeout: float = 3.0, **settings: Any
) -> PythonInvoker:
    config = PythonFunctionConfig(invoker="python", handler=handler, timeout=timeout, **settings)
    context = BuildContext(identity=Identity(), state_dir=tmp_path, handler_root=tmp_path)
    invoker = config.build(name, context)
    assert isinstance(invoker, PythonInvoker)
    return invoker


def run_once(
    invoker: PythonInvoker, event: Any = None, request_id: str = REQUEST_ID
) -> InvokeResult:
    """start(), one invoke() with `event` JSON-encoded, close(), in a fresh event loop."""

    async def main() -> InvokeResult:
        await invoker.start()
        try:
            return await invoker.invoke(json.dumps(event).encode(), request_id)
        finally:
            await invoker.close()

    return asyncio.run(main())


def start_error(invoker: PythonInvoker) -> str:
    with pytest.raises(InvokerStartError) as caught:
        asyncio.run(invoker.start())
    return str(caught.value)


def error_payload(result: InvokeResult) -> dict[str, Any]:
    assert result.function_error == "Unhandled"
    document = json.loads(result.payload)
    assert isinstance(document, dict)
    return document


# Results


def test_async_handler_is_awaited(tmp_path: Path) -> None:
    """An `async def` handler is awaited on the loop and its result is the payload."""
    write(
        tmp_path / "handler.py",
        """
        import asyncio

        async def handler(event, context):
            await asyncio.sleep(0)
            return {"async": True, "echo": event}
        """,
    )
    result = run_once(build(tmp_path, "handler.py:handler"), {"a": 1})
    assert result.function_error is None
    assert json.loads(result.payload) == {"async": True, "echo": {"a": 1}}


def test_each_invocation_gets_a_freshly_decoded_event(tmp_path: Path) -> None:
    """The handler receives a plain dict decoded from the event bytes, a new one per call,
    so a handler mutating its event cannot leak into the next invocation."""
    write(
        tmp_path / "handler.py",
        """
        def handler(event, context):
            event["calls"] = event.get("calls", 0) + 1
            return {"type": type(event).__name__, "event": event}
        """,
    )
    invoker = build(tmp_path, "handler.py:handler")
    event = json.dumps({"k": "v"}).encode()

    async def main() -> list[InvokeResult]:
        await invoker.start()
        try:
            return [await invoker.invoke(event, f"req-{n}") for n in range(2)]
        finally:
            await invoker.close()

    for result in asyncio.run(main()):
        assert json.loads(result.payload) == {"type": "dict", "event": {"k": "v", "calls": 1}}


CONTEXT_HANDLER = """
    def handler(event, context):
        return {
            "aws_request_id": context.aws_request_id,
            "function_name": context.function_name,
            "function_version": context.function_version,
            "invoked_function_arn": context.invoked_function_arn,
            "memory_limit_in_mb": context.memory_limit_in_mb,
            "log_group_name": context.log_group_name,
            "log_stream_name": context.log_stream_name,
            "remaining": context.get_remaining_time_in_millis(),
        }
    """


def test_context_attributes_match_lambda(tmp_path: Path) -> None:
    """The context carries the request id passed to invoke(), the function's name,
    `$LATEST`, the default made-up ARN, the memory size as a *string* (as Lambda's
    Python runtime reports it), the log group, and a remaining time within the timeout."""
    write(tmp_path / "handler.py", CONTEXT_HANDLER)
    invoker = build(tmp_path, "handler.py:handler", name="orders-fn", timeout=5.0)
    context = json.loads(run_once(invoker, {}, request_id="req-ctx-1").payload)
    assert context["aws_request_id"] == "req-ctx-1"
    assert context["function_name"] == "orders-fn"
    assert context["function_version"] == "$LATEST"
    assert (
        context["invoked_function_arn"]
        == "arn:aws:lambda:us-east-1:000000000000:function:orders-fn"
    )
    assert context["memory_limit_in_mb"] == "128"
    assert context["log_group_name"] == "/aws/lambda/orders-fn"
    assert "[$LATEST]" in context["log_stream_name"]
    assert 0 < context["remaining"] <= 5000


def test_context_uses_configured_arn_and_memory(tmp_path: Path) -> None:
    """A configured `arn` replaces the made-up one and `memory_size` is reported as given."""
    write(tmp_path / "handler.py", CONTEXT_HANDLER)
    arn = "arn:aws:lambda:eu-west-1:123456789012:function:real-one:live"
    invoker = build(tmp_path, "handler.py:handler", arn=arn, memory_size=1024)
    context = json.loads(run_once(invoker, {}).payload)
    assert context["invoked_function_arn"] == arn
    assert context["memory_limit_in_mb"] == "1024"


# Function errors


RAISING_HANDLER = """
    class OrderRejected(Exception):
        pass

    def check(event):
        raise OrderRejected(f"order {event['id']} rejected")

    def handler(event, context):
        check(event)
    """


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_exception_is_an_unhandled_function_error(tmp_path: Path, is_async: bool) -> None:
    """An exception from the handler is function error `Unhandled` with Lambda's error
    document: the message, the exception class name, the request id, and a stack trace of
    the handler's own frames only (no lambda-bridge, asyncio or thread-pool frames)."""
    source = RAISING_HANDLER
    if is_async:
        source = source.replace("def handler", "async def handler")
    path = write(tmp_path / "handler.py", source)
    document = error_payload(run_once(build(tmp_path, "handler.py:handler"), {"id": 7}))
    assert document["errorMessage"] == "order 7 rejected"
    assert document["errorType"] == "OrderRejected"
    assert document["requestId"] == REQUEST_ID
    trace = document["stackTrace"]
    assert isinstance(trace, list)
    assert trace
    assert all(str(path.resolve()) in line for line in trace), trace
    assert any("in handler" in line for line in trace)
    assert any("in check" in line for line in trace)
    text = "".join(trace)
    for machinery in ("connectors/python", "/bridge/", "asyncio", "concurrent/futures"):
        assert machinery not in text


def test_async_handler_running_past_timeout_is_sandbox_timedout(tmp_path: Path) -> None:
    """An async handler still running at `timeout` is cancelled on the loop and fails as
    `Sandbox.Timedout` with Lambda's message and the request id, long before the handler
    would end (a sync handler is a case of the invoker contract, tests/contract)."""
    write(
        tmp_path / "handler.py",
        """
        import asyncio

        async def handler(event, context):
            await asyncio.sleep(60)
        """,
    )
    invoker = build(tmp_path, "handler.py:handler", timeout=0.3)

    async def main() -> InvokeResult:
        await invoker.start()
        try:
            return await asyncio.wait_for(invoker.invoke(b"{}", REQUEST_ID), 20)
        finally:
            await invoker.close()

    document = error_payload(asyncio.run(main()))
    assert document["errorType"] == "Sandbox.Timedout"
    assert "Task timed out after 0.30 seconds" in document["errorMessage"]
    assert document["requestId"] == REQUEST_ID


@pytest.mark.parametrize(
    "body",
    [
        'raise TimeoutError("database did not answer")',
        "await asyncio.wait_for(asyncio.sleep(10), 0.01)",
    ],
    ids=["raised", "inner-wait_for"],
)
def test_timeout_error_from_handler_is_an_ordinary_error(tmp_path: Path, body: str) -> None:
    """A TimeoutError the handler raises itself (or an inner `wait_for` that expires) is an
    ordinary function error of type `TimeoutError`, not the invocation's own timeout."""
    write(
        tmp_path / "handler.py",
        f"""
        import asyncio

        async def handler(event, context):
            {body}
        """,
    )
    document = error_payload(run_once(build(tmp_path, "handler.py:handler", timeout=3.0), {}))
    assert document["errorType"] == "TimeoutError"
    assert "timed out after" not in document["errorMessage"]


def test_sync_handler_raising_timeout_error_is_an_ordinary_error(tmp_path: Path) -> None:
    """The same for a sync handler run on a worker thread."""
    write(
        tmp_path / "handler.py",
        """
        def handler(event, context):
            raise TimeoutError("upstream slow")
        """,
    )
    document = error_payload(run_once(build(tmp_path, "handler.py:handler"), {}))
    assert document["errorType"] == "TimeoutError"
    assert document["errorMessage"] == "upstream slow"


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("{'value': object()}", "Object of type object is not JSON serializable"),
        ("{1, 2}", "Object of type set is not JSON serializable"),
        ("frozenset()", "Object of type frozenset is not JSON serializable"),
        ("b'bytes'", "Object of type bytes is not JSON serializable"),
        ("bytearray(b'x')", "Object of type bytearray is not JSON serializable"),
        ("datetime.datetime(2026, 1, 1)", "Object of type datetime is not JSON serializable"),
        ("[float('nan')]", "Out of range float values are not JSON compliant"),
        ("{'n': float('inf')}", "Out of range float values are not JSON compliant"),
        ("circular()", "Circular reference detected"),
    ],
)
def test_unserialisable_result_is_a_marshal_error(
    tmp_path: Path, expression: str, reason: str
) -> None:
    """What Lambda's runtime (json.dumps) cannot write is function error
    `Runtime.MarshalError` with its reason: sets, bytes, datetimes, objects, circular
    structures; NaN and Infinity too, which json.dumps would write as invalid JSON."""
    write(
        tmp_path / "handler.py",
        f"""
        import datetime

        def circular():
            loop = []
            loop.append(loop)
            return loop

        def handler(event, context):
            return {expression}
        """,
    )
    document = error_payload(run_once(build(tmp_path, "handler.py:handler"), {}))
    assert document["errorType"] == "Runtime.MarshalError"
    assert document["errorMessage"].startswith(f"Unable to marshal response: {reason}")
    assert document["requestId"] == REQUEST_ID


def test_what_json_dumps_writes_is_the_response(tmp_path: Path) -> None:
    """Tuples, decimals, non-string keys json.dumps accepts, and non-ASCII text come back
    as json.dumps writes them."""
    write(
        tmp_path / "handler.py",
        """
        from decimal import Decimal

        def handler(event, context):
            return {"t": (1, 2), "d": Decimal("2.5"), "i": Decimal("3"), 1: "one", "s": "caf\u00e9"}
        """,
    )
    result = run_once(build(tmp_path, "handler.py:handler"), {})
    assert result.function_error is None
    assert json.loads(result.payload) == {
        "t": [1, 2],
        "d": 2.5,
        "i": 3,
        "1": "one",
        "s": "caf\u00e9",
    }


BASE_EXCEPTIONS = {
    "KeyboardInterrupt": "raise KeyboardInterrupt('stop')",
    "GeneratorExit": "raise GeneratorExit('closed')",
    "Abort": "raise Abort('custom')",
    "CancelledError": "raise asyncio.CancelledError('own')",
}


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("error_type", list(BASE_EXCEPTIONS))
def test_every_base_exception_is_a_function_error(
    tmp_path: Path, is_async: bool, error_type: str
) -> None:
    """KeyboardInterrupt, GeneratorExit, a custom BaseException subclass and a
    CancelledError the handler raises itself are function errors with the class name as
    errorType, on a worker thread and on the event loop alike; the invoker serves the
    next invocation."""
    prefix = "async " if is_async else ""
    write(
        tmp_path / "handler.py",
        f"""
        import asyncio

        class Abort(BaseException):
            pass

        {prefix}def handler(event, context):
            if event.get("fine"):
                return "ok"
            {BASE_EXCEPTIONS[error_type]}
        """,
    )
    invoker = build(tmp_path, "handler.py:handler")

    async def twice() -> tuple[InvokeResult, InvokeResult]:
        await invoker.start()
        try:
            failed = await invoker.invoke(b"{}", REQUEST_ID)
            return failed, await invoker.invoke(b'{"fine": true}', REQUEST_ID)
        finally:
            await invoker.close()

    failed, fine = asyncio.run(twice())
    assert error_payload(failed)["errorType"] == error_type
    assert (fine.function_error, json.loads(fine.payload)) == (None, "ok")


def test_cancelling_the_invocation_from_outside_still_cancels(tmp_path: Path) -> None:
    """When the daemon cancels an invocation (stopping), the cancellation propagates out
    of invoke() instead of becoming a function error."""
    write(
        tmp_path / "handler.py",
        """
        import asyncio

        async def handler(event, context):
            await asyncio.sleep(30)
        """,
    )
    invoker = build(tmp_path, "handler.py:handler", timeout=60)

    async def cancel_midway() -> bool:
        await invoker.start()
        try:
            call = asyncio.create_task(invoker.invoke(b"{}", REQUEST_ID))
            await asyncio.sleep(0.1)
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
            return call.cancelled()
        finally:
            await invoker.close()

    assert asyncio.run(cancel_midway())


def test_async_handler_blocking_the_loop_past_its_timeout_times_out(tmp_path: Path) -> None:
    """An async handler that sleeps synchronously past its timeout returns too late for
    the timeout to fire: it is still Sandbox.Timedout, its result ignored, and one warning
    (not one per invocation) says the handler blocked the event loop."""
    write(
        tmp_path / "handler.py",
        """
        import time

        async def handler(event, context):
            time.sleep(0.4)
            return "too late"
        """,
    )
    invoker = build(tmp_path, "handler.py:handler", timeout=0.2)
    logged: list[dict[str, Any]] = []
    structlog.configure(processors=[lambda _, __, event: logged.append(event) or ""])
    try:

        async def twice() -> list[InvokeResult]:
            await invoker.start()
            try:
                return [await invoker.invoke(b"{}", REQUEST_ID) for _ in range(2)]
            finally:
                await invoker.close()

        results = asyncio.run(twice())
    finally:
        structlog.reset_defaults()
    for result in results:
        document = error_payload(result)
        assert document["errorType"] == "Sandbox.Timedout"
        assert "Task timed out after 0.20 seconds" in document["errorMessage"]
    [warning] = [event for event in logged if event["event"] == "python.blocked_event_loop"]
    assert warning["function"] == "fn"


# Handler specs


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("handler.py:main", HandlerSpec("handler.py", "main", is_file=True)),
        ("sub/dir/app.py:main", HandlerSpec("sub/dir/app.py", "main", is_file=True)),
        ("pkg.module:main", HandlerSpec("pkg.module", "main", is_file=False)),
        ("lambda_function.lambda_handler", HandlerSpec("lambda_function", "lambda_handler", False)),
        ("pkg.module.main", HandlerSpec("pkg.module", "main", is_file=False)),
    ],
)
def test_handler_spec_forms_parse(text: str, expected: HandlerSpec) -> None:
    """The three accepted spellings: a file path, `package.module:function` and
    Lambda's `module.function` (split at the last dot)."""
    assert HandlerSpec.parse(text) == expected


@pytest.mark.parametrize("text", ["handler", "handler.py:", ":main", "nodot"])
def test_malformed_handler_spec_is_rejected(text: str) -> None:
    """A spec without both a module and a function name is a readable ValueError."""
    with pytest.raises(ValueError, match="should look like"):
        HandlerSpec.parse(text)


def test_file_handler_in_subfolder(tmp_path: Path) -> None:
    """`path/to/file.py:func` is resolved below handler_root."""
    write(
        tmp_path / "functions" / "orders" / "app.py",
        """
        def main(event, context):
            return "from file"
        """,
    )
    result = run_once(build(tmp_path, "functions/orders/app.py:main"), {})
    assert json.loads(result.payload) == "from file"


def test_package_module_handler(tmp_path: Path) -> None:
    """`package.module:func` imports a package that lives in handler_root."""
    write(tmp_path / "lbtest_pkg_colon" / "__init__.py", "")
    write(
        tmp_path / "lbtest_pkg_colon" / "handlers.py",
        """
        from lbtest_pkg_colon import shared

        def main(event, context):
            return {"from": __name__, "shared": shared.VALUE}
        """,
    )
    write(tmp_path / "lbtest_pkg_colon" / "shared.py", "VALUE = 'package-level'\n")
    result = run_once(build(tmp_path, "lbtest_pkg_colon.handlers:main"), {})
    assert result.function_error is None
    answer = json.loads(result.payload)
    # The module lives in the function's own import root (connectors.python.imports).
    assert answer["from"].endswith(".lbtest_pkg_colon.handlers")
    assert answer["shared"] == "package-level"


def test_lambda_style_module_dot_function(tmp_path: Path) -> None:
    """Lambda's own `module.function` spelling imports `module` from handler_root."""
    write(
        tmp_path / "lbtest_lambda_function.py",
        """
        def lambda_handler(event, context):
            return {"lambda_style": event}
        """,
    )
    result = run_once(build(tmp_path, "lbtest_lambda_function.lambda_handler"), 5)
    assert json.loads(result.payload) == {"lambda_style": 5}


def test_sibling_imports_from_handler_folder(tmp_path: Path) -> None:
    """Like Lambda's task root, the handler file's folder is importable, so the handler can
    import modules that sit next to it."""
    write(tmp_path / "svc" / "lbtest_sibling_helper.py", "def greet(n):\n    return f'hi {n}'\n")
    write(
        tmp_path / "svc" / "app.py",
        """
        import lbtest_sibling_helper

        def handler(event, context):
            return lbtest_sibling_helper.greet(event["name"])
        """,
    )
    result = run_once(build(tmp_path, "svc/app.py:handler"), {"name": "ada"})
    assert result.function_error is None
    assert json.loads(result.payload) == "hi ada"


# start() and check()


def test_start_fails_for_missing_file(tmp_path: Path) -> None:
    """A handler file that does not exist stops start() with a message naming it."""
    message = start_error(build(tmp_path, "nowhere.py:handler", name="lost"))
    assert "'lost'" in message
    assert "nowhere.py:handler" in message
    assert str((tmp_path / "nowhere.py").resolve()) in message
    assert "no such file" in message


def test_start_fails_for_syntax_error(tmp_path: Path) -> None:
    """A module that does not compile stops start() with the SyntaxError in the message."""
    write(tmp_path / "broken.py", "def handler(event, context)\n    return 1\n")
    message = start_error(build(tmp_path, "broken.py:handler"))
    assert "broken.py:handler" in message
    assert "SyntaxError" in message


def test_start_fails_for_import_error_in_module(tmp_path: Path) -> None:
    """An exception raised while importing the handler's module stops start()."""
    write(tmp_path / "bad_import.py", "import lbtest_module_that_does_not_exist\n")
    message = start_error(build(tmp_path, "bad_import.py:handler"))
    assert "ModuleNotFoundError" in message
    assert "lbtest_module_that_does_not_exist" in message


def test_start_fails_for_missing_function(tmp_path: Path) -> None:
    """A module without the named function stops start() with the missing name."""
    write(tmp_path / "handler.py", "def other(event, context):\n    return 1\n")
    message = start_error(build(tmp_path, "handler.py:handler"))
    assert "AttributeError" in message
    assert "'handler'" in message


def test_start_fails_for_missing_module(tmp_path: Path) -> None:
    """A `package.module:func` that cannot be imported stops start()."""
    message = start_error(build(tmp_path, "lbtest_no_such_pkg.mod:main"))
    assert "ModuleNotFoundError" in message
    assert "lbtest_no_such_pkg" in message


def test_start_fails_for_non_callable_handler(tmp_path: Path) -> None:
    """A handler name that refers to something other than a function stops start()."""
    write(tmp_path / "handler.py", "handler = {'not': 'callable'}\n")
    message = start_error(build(tmp_path, "handler.py:handler"))
    assert "is not callable" in message
    assert "handler.py:handler" in message


def check(tmp_path: Path, handler: str) -> list[tuple[tuple[str | int, ...], str]]:
    config = PythonFunctionConfig(invoker="python", handler=handler, timeout=1.0)
    context = BuildContext(identity=Identity(), state_dir=tmp_path, handler_root=tmp_path)
    return config.check(context)


def test_check_reports_missing_file(tmp_path: Path) -> None:
    """check() names a handler file that does not exist, under the `handler` key."""
    problems = check(tmp_path, "missing.py:handler")
    assert len(problems) == 1
    path, message = problems[0]
    assert path == ("handler",)
    assert str(tmp_path / "missing.py") in message
    assert "does not exist" in message


def test_check_does_not_import_the_handler(tmp_path: Path) -> None:
    """check() is offline: an existing handler file passes without being executed."""
    marker = tmp_path / "imported.marker"
    write(
        tmp_path / "handler.py",
        f"""
        open({str(marker)!r}, "w").close()

        def handler(event, context):
            return None
        """,
    )
    assert check(tmp_path, "handler.py:handler") == []
    assert not marker.exists()


def test_check_module_forms(tmp_path: Path) -> None:
    """check() accepts a module found in handler_root (without importing it) and reports
    one that cannot be found, and a malformed spec."""
    marker = tmp_path / "imported.marker"
    write(tmp_path / "lbtest_check_mod.py", f"open({str(marker)!r}, 'w').close()\n")
    assert check(tmp_path, "lbtest_check_mod.handler") == []
    assert not marker.exists()
    assert "lbtest_check_mod" not in sys.modules
    [(path, message)] = check(tmp_path, "lbtest_nowhere_mod:handler")
    assert path == ("handler",)
    assert "cannot be found" in message
    [(path, message)] = check(tmp_path, "nodot")
    assert "should look like" in message


def test_sys_exit_in_a_handler_is_a_runtime_exit_error(tmp_path: Path) -> None:
    """sys.exit() in a handler does not stop the daemon: it is a Runtime.ExitError function
    error, as on Lambda."""
    write(tmp_path / "exits.py", "import sys\ndef handler(event, context):\n    sys.exit(3)\n")
    document = error_payload(run_once(build(tmp_path, "exits.py:handler")))
    assert document["errorType"] == "Runtime.ExitError"
    assert "exit status 3" in document["errorMessage"]


def test_async_handler_behind_a_sync_decorator_is_awaited(tmp_path: Path) -> None:
    """A decorator that wraps an async handler in a plain function (as some middleware does)
    still has its coroutine awaited, on the event loop."""
    write(
        tmp_path / "decorated.py",
        """
        import functools

        def middleware(handler):
            @functools.wraps(handler)
            def wrapper(event, context):
                return handler(event, context)
            return wrapper

        @middleware
        async def handler(event, context):
            return {"awaited": event["n"]}
        """,
    )
    result = run_once(build(tmp_path, "decorated.py:handler"), {"n": 7})
    assert result.function_error is None
    assert json.loads(result.payload) == {"awaited": 7}


def test_handler_root_module_wins_over_an_installed_one(tmp_path: Path) -> None:
    """Like Lambda's task root, the handler folder comes first on the import path: a module
    there shadows an installed module of the same name."""
    write(
        tmp_path / "json_tools.py", "def handler(event, context):\n    return 'from handler root'\n"
    )
    write(tmp_path / "uses.py", "import json_tools\nhandler = json_tools.handler\n")
    write(
        tmp_path / "site" / "json_tools.py",
        "def handler(event, context):\n    return 'installed'\n",
    )
    sys.path.insert(0, str(tmp_path / "site"))
    result = run_once(build(tmp_path, "json_tools.handler"))
    assert json.loads(result.payload) == "from handler root"


SLEEPER = """
import json, os, time

def handler(event, context):
    with open(os.environ["STARTS_TO"], "a") as out:
        out.write(json.dumps({"name": event["name"], "remaining": context.get_remaining_time_in_millis()}) + "\\n")
    time.sleep(event["sleep"])
    return event["name"]
"""


def test_time_waiting_for_a_free_worker_is_not_the_functions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With one worker (reserved_concurrency 1) still busy with a handler that timed out,
    the next call waits for the worker and only then starts its clock: it runs, with its
    whole timeout ahead of it, and succeeds."""
    starts = tmp_path / "starts.jsonl"
    monkeypatch.setenv("STARTS_TO", str(starts))
    write(tmp_path / "sleeper.py", SLEEPER)
    invoker = build(tmp_path, "sleeper.py:handler", timeout=0.5, reserved_concurrency=1)

    async def main() -> tuple[InvokeResult, InvokeResult]:
        await invoker.start()
        try:
            slow = await invoker.invoke(json.dumps({"name": "slow", "sleep": 0.8}).encode(), "r1")
            # It waits ~0.3 s for the worker, then runs 0.35 s: over 0.5 s in all.
            quick = await invoker.invoke(
                json.dumps({"name": "quick", "sleep": 0.35}).encode(), "r2"
            )
            return slow, quick
        finally:
            await invoker.close()

    slow, quick = asyncio.run(main())
    assert slow.function_error == "Unhandled" and b"Sandbox.Timedout" in slow.payload
    assert quick.function_error is None and json.loads(quick.payload) == "quick"
    started = [json.loads(line) for line in starts.read_text().splitlines()]
    assert [entry["name"] for entry in started] == ["slow", "quick"]
    assert started[1]["remaining"] > 450


def test_a_call_that_never_gets_a_worker_is_throttled_and_never_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the only worker held by a handler running far past its timeout, the next call
    gets no worker within its timeout: it is given up as throttled (retried by the
    mapping without counting an attempt) and never runs, even once the worker is free."""
    from bridge.errors import ThrottledError

    starts = tmp_path / "starts.jsonl"
    monkeypatch.setenv("STARTS_TO", str(starts))
    write(tmp_path / "sleeper.py", SLEEPER)
    invoker = build(tmp_path, "sleeper.py:handler", timeout=0.3, reserved_concurrency=1)

    async def main() -> None:
        await invoker.start()
        try:
            stuck = await invoker.invoke(json.dumps({"name": "stuck", "sleep": 1.0}).encode(), "r1")
            assert b"Sandbox.Timedout" in stuck.payload
            with pytest.raises(ThrottledError, match="worker threads are busy"):
                await invoker.invoke(json.dumps({"name": "queued", "sleep": 0}).encode(), "r2")
            await asyncio.sleep(1.0)  # the stuck handler is done; the worker is free
            after = await invoker.invoke(json.dumps({"name": "after", "sleep": 0}).encode(), "r3")
            assert json.loads(after.payload) == "after"
        finally:
            await invoker.close()

    asyncio.run(main())
    names = [json.loads(line)["name"] for line in starts.read_text().splitlines()]
    assert names == ["stuck", "after"]
