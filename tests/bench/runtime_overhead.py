"""The `runtime` invoker's cost: warm invocations through the Runtime API against the
in-process `python` invoker on the same handler, and cold starts against starting the
same interpreter with the handler alone, measured in one run.

- warm: N sequential invocations (after a warm-up) of a no-op handler, interleaved in
  rounds, through
  - `python` (in the daemon: the baseline),
  - `runtime` python3.X (awslambdaric, the official client),
  - `runtime` provided.al2023 (a bootstrap of a few lines of Python speaking the Runtime
    API with http.client over one kept-alive connection: the bridge's side alone);
  p50 and p99 of each, and what the Runtime API adds to `python` (target: under 1 ms at
  p50).
- cold: the first invocation of a fresh environment (process start, INIT, invocation),
  against running `<same interpreter> -c 'import app; app.handler({}, None)'` to its end.

    python tests/bench/runtime_overhead.py [--invocations N] [--rounds R] [--colds C]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bridge.config.loading import load_config_text
from bridge.ops import logs
from bridge.protocols import Invoker

HANDLER = "def handler(event, context):\n    return {'ok': True}\n"
EVENT = b'{"Records": [{"body": "hello"}]}'
RUNTIME = f"python{sys.version_info.major}.{sys.version_info.minor}"
INTERPRETER = getattr(sys, "_base_executable", sys.executable)

# A provided runtime as small as one can be: one kept-alive connection, no framework.
BOOTSTRAP = """#!{python}
import http.client, json, os, sys
sys.path.insert(0, os.environ["LAMBDA_TASK_ROOT"])
import app
host, port = os.environ["AWS_LAMBDA_RUNTIME_API"].split(":")
api = http.client.HTTPConnection(host, int(port))
base = "/2018-06-01/runtime/invocation/"
while True:
    api.request("GET", base + "next")
    reply = api.getresponse()
    event = json.loads(reply.read())
    request_id = reply.headers["Lambda-Runtime-Aws-Request-Id"]
    body = json.dumps(app.handler(event, None)).encode()
    api.request("POST", base + request_id + "/response", body=body)
    api.getresponse().read()
"""


def make_functions(workdir: Path) -> dict[str, Invoker]:
    code = workdir / "code"
    code.mkdir(parents=True, exist_ok=True)
    (code / "app.py").write_text(HANDLER)
    provided = workdir / "provided"
    provided.mkdir(exist_ok=True)
    (provided / "app.py").write_text(HANDLER)
    (provided / "bootstrap").write_text(BOOTSTRAP.format(python=INTERPRETER))
    (provided / "bootstrap").chmod(0o755)
    text = f"""
state_dir: {workdir / "state"}
functions:
  python: {{invoker: python, handler: {code / "app.py"}:handler, timeout: 30}}
  awslambdaric: {{invoker: runtime, runtime: {RUNTIME}, handler: app.handler, code: {code}, timeout: 30, reserved_concurrency: 1}}
  provided: {{invoker: runtime, runtime: provided.al2023, code: {provided}, timeout: 30, reserved_concurrency: 1}}
mappings: []
"""
    loaded = load_config_text(text, "bench.yaml", environ={}, handler_root=workdir)
    return {
        name: function.build(name, loaded.build_context)
        for name, function in loaded.config.functions.items()
    }


async def timed_calls(invoker: Invoker, count: int, tag: str) -> list[float]:
    samples = []
    for index in range(count):
        started = time.perf_counter()
        result = await invoker.invoke(EVENT, f"{tag}-{index}")
        samples.append(time.perf_counter() - started)
        assert result.function_error is None, result.payload
    return samples


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


async def warm(workdir: Path, invocations: int, rounds: int) -> dict[str, list[float]]:
    invokers = make_functions(workdir)
    for invoker in invokers.values():
        await invoker.start()
    try:
        samples: dict[str, list[float]] = {name: [] for name in invokers}
        for name, invoker in invokers.items():
            await timed_calls(invoker, 200, f"warmup-{name}")
        for number in range(rounds):
            for name, invoker in invokers.items():
                samples[name] += await timed_calls(invoker, invocations, f"{name}-{number}")
        return samples
    finally:
        for invoker in invokers.values():
            await invoker.close()


async def cold(workdir: Path, name: str, count: int) -> list[float]:
    samples = []
    for number in range(count):
        invoker = make_functions(workdir)[name]
        await invoker.start()  # the package and the runtime found: no environment yet
        try:
            samples += await timed_calls(invoker, 1, f"cold-{name}-{number}")
        finally:
            await invoker.close()
    return samples


async def interpreter_alone(code: Path, count: int) -> list[float]:
    script = f"import sys; sys.path.insert(0, {str(code)!r}); import app; app.handler({{}}, None)"
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        process = await asyncio.create_subprocess_exec(
            INTERPRETER, "-c", script, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        )
        assert await process.wait() == 0
        samples.append(time.perf_counter() - started)
    return samples


def line(label: str, samples: list[float], baseline: list[float] | None = None) -> str:
    p50, p99 = statistics.median(samples) * 1000, percentile(samples, 0.99) * 1000
    text = f"{label:<44} p50 {p50:7.3f} ms   p99 {p99:7.3f} ms"
    if baseline is not None:
        added50 = p50 - statistics.median(baseline) * 1000
        added99 = p99 - percentile(baseline, 0.99) * 1000
        text += f"   added: p50 {added50:+7.3f} ms, p99 {added99:+7.3f} ms"
    return text


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--invocations", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--colds", type=int, default=10)
    args = parser.parse_args()
    logs.configure(os.environ.get("BENCH_LOG", "warning"))
    with tempfile.TemporaryDirectory() as temp:
        workdir = Path(temp)
        samples = await warm(workdir, args.invocations, args.rounds)
        total = args.invocations * args.rounds
        print(f"warm: {total:,} sequential invocations each ({args.rounds} interleaved rounds)")
        base = samples["python"]
        print(line("python invoker (in the daemon, baseline)", base))
        print(line(f"runtime {RUNTIME} (awslambdaric)", samples["awslambdaric"], base))
        print(line("runtime provided.al2023 (http.client loop)", samples["provided"], base))
        alone = await interpreter_alone(workdir / "code", args.colds)
        colds = await cold(workdir, "awslambdaric", args.colds)
        provided = await cold(workdir, "provided", args.colds)
        print(f"cold: {args.colds} starts each")
        print(line(f"{Path(INTERPRETER).name} -c 'import app; app.handler(...)'", alone))
        print(line(f"runtime {RUNTIME}: first invocation", colds, alone))
        print(line("runtime provided.al2023: first invocation", provided, alone))


def run(argv: Any = None) -> None:
    asyncio.run(main())


if __name__ == "__main__":
    run()
