"""The `subprocess` invoker: one real process per invocation, event on stdin, answer on stdout."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shlex
import signal
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from bridge.config.plugins import BuildContext, Identity
from bridge.errors import InvokerStartError
from bridge.records import InvokeResult
from connectors.subprocess.config import SubprocessFunctionConfig
from connectors.subprocess.invoker import SubprocessInvoker

REQUEST_ID = "c0ffee00-0000-4000-8000-000000000003"


def script(tmp_path: Path, source: str, name: str = "function.py") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(source))
    return path


def context(tmp_path: Path) -> BuildContext:
    return BuildContext(identity=Identity(), state_dir=tmp_path, handler_root=tmp_path)


def build(
    tmp_path: Path, command: str | list[str], *, name: str = "proc-fn", **settings: Any
) -> SubprocessInvoker:
    settings.setdefault("timeout", 5.0)
    config = SubprocessFunctionConfig(invoker="subprocess", command=command, **settings)
    invoker = config.build(name, context(tmp_path))
    assert isinstance(invoker, SubprocessInvoker)
    return invoker


def run_once(
    invoker: SubprocessInvoker, event: bytes = b"{}", request_id: str = REQUEST_ID
) -> InvokeResult:
    async def main() -> InvokeResult:
        await invoker.start()
        try:
            return await invoker.invoke(event, request_id)
        finally:
            await invoker.close()

    return asyncio.run(main())


def python(path: Path, *args: str) -> list[str]:
    return [sys.executable, str(path), *args]


def test_command_that_ignores_a_large_event_still_succeeds(tmp_path: Path) -> None:
    """A command that never reads stdin and exits 0 succeeds even when the event is larger
    than a pipe buffer: the unread rest of the event is not an error."""
    path = script(tmp_path, "print('ignored')\n")
    event = b'{"blob": "' + b"x" * (1 << 20) + b'"}'
    result = run_once(build(tmp_path, python(path)), event)
    assert result.function_error is None
    assert result.payload == b"ignored\n"


def test_nonzero_exit_is_runtime_exit_error(tmp_path: Path) -> None:
    """A non-zero exit without an error document on stdout is function error `Unhandled`
    with a `Runtime.ExitError` document naming the exit status; stdout is discarded."""
    path = script(tmp_path, "import sys\nprint('partial output')\nsys.exit(3)\n")
    result = run_once(build(tmp_path, python(path)))
    assert result.function_error == "Unhandled"
    document = json.loads(result.payload)
    assert document["errorType"] == "Runtime.ExitError"
    assert "exit status 3" in document["errorMessage"]
    assert document["requestId"] == REQUEST_ID


def test_death_by_signal_is_named(tmp_path: Path) -> None:
    """A command killed by a signal is a `Runtime.ExitError` naming the signal."""
    path = script(tmp_path, "import os, signal\nos.kill(os.getpid(), signal.SIGTERM)\n")
    result = run_once(build(tmp_path, python(path)))
    document = json.loads(result.payload)
    assert result.function_error == "Unhandled"
    assert document["errorType"] == "Runtime.ExitError"
    assert f"signal {int(signal.SIGTERM)}" in document["errorMessage"]


def test_environment_reaches_the_command(tmp_path: Path) -> None:
    """The command sees Lambda's function variables, the request id of this invocation,
    and the configured `environment`."""
    names = [
        "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        "AWS_LAMBDA_FUNCTION_VERSION",
        "AWS_LAMBDA_FUNCTION_ARN",
        "AWS_REGION",
        "LAMBDA_BRIDGE_REQUEST_ID",
        "APP_MODE",
        "PATH",
    ]
    path = script(
        tmp_path,
        f"""
        import json, os
        print(json.dumps({{name: os.environ.get(name) for name in {names!r}}}))
        """,
    )
    invoker = build(
        tmp_path,
        python(path),
        name="env-fn",
        memory_size=512,
        environment={"APP_MODE": "test"},
    )
    seen = json.loads(run_once(invoker, request_id="req-env-1").payload)
    assert seen["AWS_LAMBDA_FUNCTION_NAME"] == "env-fn"
    assert seen["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "512"
    assert seen["AWS_LAMBDA_FUNCTION_VERSION"] == "$LATEST"
    assert seen["AWS_LAMBDA_FUNCTION_ARN"] == (
        "arn:aws:lambda:us-east-1:000000000000:function:env-fn"
    )
    assert seen["AWS_REGION"] == "us-east-1"
    assert seen["LAMBDA_BRIDGE_REQUEST_ID"] == "req-env-1"
    assert seen["APP_MODE"] == "test"
    # Added to the daemon's environment, not replacing it.
    assert seen["PATH"] == os.environ.get("PATH")


def test_request_id_changes_per_invocation(tmp_path: Path) -> None:
    """Each invocation gets its own `LAMBDA_BRIDGE_REQUEST_ID`."""
    path = script(tmp_path, "import os\nprint(os.environ['LAMBDA_BRIDGE_REQUEST_ID'])\n")
    invoker = build(tmp_path, python(path))

    async def main() -> list[bytes]:
        await invoker.start()
        return [(await invoker.invoke(b"{}", f"req-{n}")).payload for n in range(2)]

    assert asyncio.run(main()) == [b"req-0\n", b"req-1\n"]


ARGV_SCRIPT = "import json, sys\nprint(json.dumps(sys.argv[1:]))\n"


def test_command_string_is_not_run_through_a_shell(tmp_path: Path) -> None:
    """By default a command string is split into argv: `;` and `$VAR` reach the program
    as literal arguments instead of being interpreted by a shell."""
    path = script(tmp_path, ARGV_SCRIPT)
    command = f"{shlex.quote(sys.executable)} {shlex.quote(str(path))} a; echo b $HOME 'c d'"
    result = run_once(build(tmp_path, command))
    assert result.function_error is None
    assert json.loads(result.payload) == ["a;", "echo", "b", "$HOME", "c d"]


def test_shell_true_runs_the_command_through_sh(tmp_path: Path) -> None:
    """With `shell: true` the string goes to /bin/sh, so `;` separates two commands."""
    path = script(tmp_path, ARGV_SCRIPT)
    command = f"{shlex.quote(sys.executable)} {shlex.quote(str(path))} a; echo b"
    result = run_once(build(tmp_path, command, shell=True))
    assert result.function_error is None
    assert result.payload.decode().splitlines() == ['["a"]', "b"]


def test_cwd_is_used(tmp_path: Path) -> None:
    """The command runs in the configured `cwd`."""
    workdir = tmp_path / "work"
    workdir.mkdir()
    path = script(tmp_path, "import os\nprint(os.getcwd())\n")
    result = run_once(build(tmp_path, python(path), cwd=workdir))
    assert Path(result.payload.decode().strip()).resolve() == workdir.resolve()


def _gone(pid: int) -> bool:
    """True once `pid` has exited. An exited process whose parent died lingers as a zombie
    until the init process reaps it; that process is dead too, so count it as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] == "Z"


def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    """A command still running at `timeout` fails as `Sandbox.Timedout`, the call returns
    at about the timeout, and the command's own children die with it (the whole process
    group is killed, so no grandchild is left holding resources)."""
    pid_file = tmp_path / "grandchild.pid"
    path = script(
        tmp_path,
        f"""
        import os, subprocess, sys, time

        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
        with open({str(pid_file) + ".tmp"!r}, "w") as handle:
            handle.write(str(child.pid))
        os.replace({str(pid_file) + ".tmp"!r}, {str(pid_file)!r})
        time.sleep(30)
        """,
    )
    timeout = 1.0
    started = time.monotonic()
    result = run_once(build(tmp_path, python(path), timeout=timeout))
    elapsed = time.monotonic() - started
    grandchild = int(pid_file.read_text())
    try:
        assert result.function_error == "Unhandled"
        document = json.loads(result.payload)
        assert document["errorType"] == "Sandbox.Timedout"
        assert "Task timed out after 1.00 seconds" in document["errorMessage"]
        assert elapsed < timeout + 2.0
        deadline = time.monotonic() + 2.0
        while not _gone(grandchild) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _gone(grandchild), f"grandchild {grandchild} survived the timeout"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(grandchild, signal.SIGKILL)


def test_missing_executable_fails_start_and_check(tmp_path: Path) -> None:
    """An executable that is not on PATH is reported by check() under `command` and stops
    start() with InvokerStartError, without running anything."""
    command = "lbtest-no-such-executable --flag"
    config = SubprocessFunctionConfig(invoker="subprocess", command=command, timeout=1.0)
    [(path, message)] = config.check(context(tmp_path))
    assert path == ("command",)
    assert "'lbtest-no-such-executable'" in message
    assert "not on PATH" in message
    with pytest.raises(InvokerStartError, match="lbtest-no-such-executable"):
        asyncio.run(build(tmp_path, command).start())


def test_missing_script_path_fails_start_and_check(tmp_path: Path) -> None:
    """A command given as a path that does not exist is reported the same way."""
    missing = str(tmp_path / "missing-function.sh")
    config = SubprocessFunctionConfig(invoker="subprocess", command=[missing], timeout=1.0)
    [(path, message)] = config.check(context(tmp_path))
    assert path == ("command",)
    assert "does not exist" in message
    with pytest.raises(InvokerStartError, match="does not exist"):
        asyncio.run(build(tmp_path, [missing]).start())


@pytest.mark.parametrize(
    ("command", "expected"),
    [("", "is empty"), ("python 'unbalanced", "cannot be split")],
)
def test_unusable_command_strings_are_reported(tmp_path: Path, command: str, expected: str) -> None:
    """An empty command or one shlex cannot split is a check() problem, not a crash."""
    config = SubprocessFunctionConfig(invoker="subprocess", command=command, timeout=1.0)
    [(path, message)] = config.check(context(tmp_path))
    assert path == ("command",)
    assert expected in message


def test_what_the_os_would_refuse_is_reported_before_running(tmp_path: Path) -> None:
    """Environment names with `=`, values or arguments with a NUL character: the OS
    would refuse them at every invocation, so check() reports them and start() fails
    with one line naming the setting."""
    config = SubprocessFunctionConfig(
        invoker="subprocess",
        command=["cat", "a\0b"],
        environment={"A=B": "x", "OK": "x\0y", "FINE": "yes"},
    )
    assert config.check(context(tmp_path)) == [
        (("environment", "A=B"), "is not a variable name"),
        (("environment", "OK"), "cannot hold a NUL character"),
        (("command",), "an argument cannot hold a NUL character"),
    ]
    with pytest.raises(InvokerStartError) as caught:
        asyncio.run(config.build("fn", context(tmp_path)).start())
    assert str(caught.value) == "function 'fn': environment.A=B is not a variable name"


def test_script_without_the_executable_bit_is_reported(tmp_path: Path) -> None:
    """A command path that exists but cannot be executed fails check() and start(), instead
    of failing every invocation later."""
    path = script(tmp_path, "#!/bin/sh\necho hi\n", name="not-executable.sh")
    path.chmod(0o644)
    invoker = build(tmp_path, [str(path)])
    with pytest.raises(InvokerStartError, match="is not executable"):
        asyncio.run(invoker.start())
    config = SubprocessFunctionConfig(invoker="subprocess", command=[str(path)])
    assert config.check(context(tmp_path)) == [(("command",), f"{str(path)!r} is not executable")]


def test_timeout_in_the_environment_is_rounded_up(tmp_path: Path) -> None:
    """AWS_LAMBDA_FUNCTION_TIMEOUT is whole seconds, rounded up from a fractional timeout."""
    path = script(tmp_path, "import os\nprint(os.environ['AWS_LAMBDA_FUNCTION_TIMEOUT'])\n")
    result = run_once(build(tmp_path, python(path), timeout=0.5))
    assert result.payload.strip() == b"1"
