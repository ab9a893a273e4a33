"""A `runtime` invocation keeps the end of its log for Invoke's `LogType: Tail`: the last
4 KB of what it logged, from START to REPORT, the function's own lines included. Real
environments (a provided bootstrap) behind the Runtime API."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from bridge.config.plugins import BuildContext, Identity
from bridge.records import InvokeResult
from connectors.runtime.config import RuntimeFunctionConfig
from connectors.runtime.invoker import RuntimeInvoker

# Prints as many 100-character lines as the event says, then answers.
BOOTSTRAP = r"""#!/usr/bin/env python3
import json, os, urllib.request
api = "http://" + os.environ["AWS_LAMBDA_RUNTIME_API"] + "/2018-06-01/runtime/invocation/"
while True:
    with urllib.request.urlopen(api + "next") as response:
        request_id = response.headers["Lambda-Runtime-Aws-Request-Id"]
        lines = json.loads(response.read())["lines"]
    for index in range(lines):
        print(f"line {index:04d} " + "x" * 90, flush=True)
    urllib.request.urlopen(urllib.request.Request(api + request_id + "/response", data=b"{}"))
"""


def invoke_twice(tmp_path: Path, events: list[bytes]) -> list[InvokeResult]:
    code = tmp_path / "fn"
    code.mkdir()
    (code / "bootstrap").write_text(BOOTSTRAP)
    os.chmod(code / "bootstrap", 0o755)
    invoker = RuntimeInvoker(
        "talker",
        RuntimeFunctionConfig(invoker="runtime", runtime="provided.al2023", code=code, timeout=10),
        BuildContext(Identity(), tmp_path / "state", tmp_path),
    )

    async def main() -> list[InvokeResult]:
        await invoker.start()
        try:
            return [await invoker.invoke(event, f"request-{n}") for n, event in enumerate(events)]
        finally:
            await invoker.close()

    return asyncio.run(asyncio.wait_for(main(), 60))


def test_the_last_4_kb_of_each_invocations_log_are_kept(tmp_path: Path) -> None:
    short, long = invoke_twice(tmp_path, [b'{"lines": 2}', b'{"lines": 100}'])

    assert short.log_tail is not None
    lines = short.log_tail.decode().splitlines()
    assert lines[0] == "START RequestId: request-0 Version: $LATEST"
    assert lines[1].startswith("line 0000 ") and lines[2].startswith("line 0001 ")
    assert lines[3] == "END RequestId: request-0"
    assert lines[4].startswith("REPORT RequestId: request-0\tDuration: ")

    # 100 lines of 100 bytes: only the end is kept, and nothing of the first invocation.
    assert long.log_tail is not None
    assert len(long.log_tail) == 4096
    assert long.log_tail.endswith(b"\n") and b"REPORT RequestId: request-1" in long.log_tail
    assert b"line 0099 " in long.log_tail and b"line 0000 " not in long.log_tail
    assert b"request-0" not in long.log_tail
