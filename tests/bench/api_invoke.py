"""Synchronous Invoke through the daemon's Lambda API against calling the same function's
invoker directly, measured in one run.

- direct: the `python` invoker built from the same config, in this process, awaited
  N times in a row, then with C calls at once (the baseline: no HTTP at all);
- API, raw: `lambda-bridge run` as a real process, invoked over one kept-alive aiohttp
  connection per caller (what the bridge's listener adds: HTTP, routing, checks);
- API, boto3: the same daemon through boto3's `invoke` (what a user's SDK call costs end
  to end, signing and parsing included).

Prints round trips per second and p50/p99 latency of each, and the ratios against the
direct call.

    python tests/bench/api_invoke.py [--invocations N] [--concurrency C]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import boto3
from botocore.config import Config

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bridge.config.loading import load_config
from bridge.ops import logs

HANDLER = "def handler(event, context):\n    return {'ok': True, 'echo': event}\n"
EVENT = b'{"order": 7, "items": ["a", "b", "c"]}'
CONFIG = """\
state_dir: {state}
log: {{level: warning}}
api: {{listen: "127.0.0.1:0"}}
functions:
  echo: {{invoker: python, handler: {code}:handler, timeout: 30}}
"""


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


class Result:
    def __init__(self, name: str, latencies: list[float], seconds: float, calls: int) -> None:
        self.name, self.latencies, self.rate = name, latencies, calls / seconds

    def line(self, baseline: Result | None) -> str:
        p50 = statistics.median(self.latencies) * 1000
        p99 = percentile(self.latencies, 0.99) * 1000
        ratio = f"  ratio {self.rate / baseline.rate:.2f}" if baseline else ""
        return f"{self.name:<34} {self.rate:>8.0f}/s  p50 {p50:6.2f} ms  p99 {p99:6.2f} ms{ratio}"


async def measure(
    name: str, call: Callable[[], Awaitable[object]], invocations: int, concurrency: int
) -> Result:
    latencies: list[float] = []
    per_caller = invocations // concurrency

    async def caller() -> None:
        for _ in range(per_caller):
            started = time.perf_counter()
            await call()
            latencies.append(time.perf_counter() - started)

    for _ in range(min(200, invocations // 5)):  # warm-up
        await call()
    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    return Result(name, latencies, time.perf_counter() - started, per_caller * concurrency)


def start_daemon(config: Path, workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    daemon = subprocess.Popen(
        [sys.executable, "-m", "bridge", "run", "--config", str(config)],
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    address_file = workdir / "state" / "api-address"
    deadline = time.monotonic() + 30
    while not address_file.exists():
        if time.monotonic() > deadline or daemon.poll() is not None:
            daemon.kill()
            raise SystemExit("the daemon did not start its API")
        time.sleep(0.05)
    return daemon, "http://" + address_file.read_text().strip()


async def main(invocations: int, concurrency: int) -> None:
    logs.configure("warning", "console")
    with tempfile.TemporaryDirectory() as folder:
        workdir = Path(folder)
        (workdir / "app.py").write_text(HANDLER)
        config = workdir / "bridge.yaml"
        config.write_text(CONFIG.format(state=workdir / "state", code=workdir / "app.py"))
        loaded = load_config(config)
        invoker = loaded.config.functions["echo"].build("echo", loaded.build_context)
        await invoker.start()
        daemon, url = start_daemon(config, workdir)
        invoke_url = f"{url}/2015-03-31/functions/echo/invocations"
        headers = {"Content-Type": "application/json", "X-Amz-Invocation-Type": "RequestResponse"}
        lambda_client = boto3.client(
            "lambda",
            endpoint_url=url,
            region_name="us-east-1",
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
            config=Config(retries={"total_max_attempts": 1}),
        )
        try:
            async with aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=concurrency)
            ) as session:

                async def direct() -> object:
                    return await invoker.invoke(EVENT, "bench")

                async def raw_api() -> object:
                    async with session.post(invoke_url, data=EVENT, headers=headers) as answer:
                        assert answer.status == 200, answer.status
                        return await answer.read()

                async def boto3_api() -> object:
                    answer = await asyncio.to_thread(
                        lambda_client.invoke, FunctionName="echo", Payload=EVENT
                    )
                    return answer["Payload"].read()

                print(f"{invocations} invocations of a Python echo handler, one run:")
                for callers in (1, concurrency):
                    base = await measure(f"direct, {callers} at once", direct, invocations, callers)
                    print(base.line(None))
                    raw = await measure(
                        f"API raw HTTP, {callers} at once", raw_api, invocations, callers
                    )
                    print(raw.line(base))
                sdk = await measure("API boto3, 1 at once", boto3_api, invocations // 2, 1)
                print(sdk.line(base))
        finally:
            daemon.terminate()
            daemon.wait(timeout=30)
            await invoker.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--invocations", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=8)
    arguments = parser.parse_args()
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    asyncio.run(main(arguments.invocations, arguments.concurrency))
