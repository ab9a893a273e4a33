"""Runtime functions without reserved concurrency share the daemon-wide
`limits.concurrent_executions`, as functions share an account's concurrency on AWS: with
a limit of 1, two functions invoked at once run one after the other, and the wait is
counted as a throttle. Real environments (a provided bootstrap) behind the Runtime API."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path

from bridge.config.plugins import BuildContext, Identity
from connectors.runtime.config import RuntimeFunctionConfig
from connectors.runtime.invoker import RuntimeInvoker

# Answers each event after recording when it ran (a marker file held while it runs).
BOOTSTRAP = r"""#!/usr/bin/env python3
import json, os, time, urllib.request
api = "http://" + os.environ["AWS_LAMBDA_RUNTIME_API"] + "/2018-06-01/runtime/invocation/"
log = os.environ["RECORD_TO"]
while True:
    with urllib.request.urlopen(api + "next") as response:
        request_id = response.headers["Lambda-Runtime-Aws-Request-Id"]
    start = time.monotonic()
    time.sleep(0.3)
    with open(log, "a") as out:
        out.write(json.dumps([os.environ["AWS_LAMBDA_FUNCTION_NAME"], start, time.monotonic()]) + "\n")
    urllib.request.urlopen(urllib.request.Request(api + request_id + "/response", data=b"{}"))
"""


def package(root: Path) -> Path:
    folder = root / "fn"
    folder.mkdir()
    bootstrap = folder / "bootstrap"
    bootstrap.write_text(BOOTSTRAP)
    os.chmod(bootstrap, 0o755)
    return folder


def test_functions_without_reserved_concurrency_share_the_daemons_limit(tmp_path: Path) -> None:
    code = package(tmp_path)
    record = tmp_path / "runs.jsonl"
    context = BuildContext(Identity(), tmp_path / "state", tmp_path, concurrent_executions=1)
    invokers = [
        RuntimeInvoker(
            name,
            RuntimeFunctionConfig(
                invoker="runtime",
                runtime="provided.al2023",
                code=code,
                timeout=10,
                environment={"RECORD_TO": str(record)},
            ),
            context,
        )
        for name in ("first", "second")
    ]

    async def main() -> int:
        for invoker in invokers:
            await invoker.start()
        try:
            results = await asyncio.gather(
                *(
                    invoker.invoke(b"{}", f"request-{index}")
                    for index, invoker in enumerate(invokers)
                )
            )
            assert all(result.function_error is None for result in results), results
            return sum(invoker.pool.throttles for invoker in invokers if invoker.pool)
        finally:
            for invoker in invokers:
                await invoker.close()

    throttles = asyncio.run(asyncio.wait_for(main(), 60))
    runs = sorted(json.loads(line) for line in record.read_text().splitlines())
    assert {name for name, _, _ in runs} == {"first", "second"}
    (_, _, end_first), (_, start_second, _) = sorted(runs, key=lambda run: run[1])
    assert end_first <= start_second, runs
    assert throttles == 1


# Answers each event with its own process id.
PID_BOOTSTRAP = r"""#!/usr/bin/env python3
import os, urllib.request
api = "http://" + os.environ["AWS_LAMBDA_RUNTIME_API"] + "/2018-06-01/runtime/invocation/"
while True:
    with urllib.request.urlopen(api + "next") as response:
        request_id = response.headers["Lambda-Runtime-Aws-Request-Id"]
    body = str(os.getpid()).encode()
    urllib.request.urlopen(urllib.request.Request(api + request_id + "/response", data=body))
"""


def test_an_environment_whose_runtime_ended_while_idle_is_not_reused(tmp_path: Path) -> None:
    """A runtime that dies between invocations (killed, crashed) leaves a dead idle
    environment: the next call gets a fresh one and succeeds."""
    folder = tmp_path / "fn"
    folder.mkdir()
    (folder / "bootstrap").write_text(PID_BOOTSTRAP)
    os.chmod(folder / "bootstrap", 0o755)
    config = RuntimeFunctionConfig(
        invoker="runtime", runtime="provided.al2023", code=folder, timeout=10
    )
    invoker = RuntimeInvoker("pid", config, BuildContext(Identity(), tmp_path / "state", tmp_path))

    async def main() -> tuple[int, int, str | None]:
        await invoker.start()
        try:
            first = await invoker.invoke(b"{}", "request-1")
            pid = int(first.payload)
            os.kill(pid, signal.SIGKILL)
            while invoker.pool is not None and not all(
                environment.exited for environment in invoker.pool.idle
            ):
                await asyncio.sleep(0.01)
            second = await invoker.invoke(b"{}", "request-2")
            return pid, int(second.payload), second.function_error
        finally:
            await invoker.close()

    killed, answered, error = asyncio.run(asyncio.wait_for(main(), 60))
    assert error is None
    assert answered != killed
