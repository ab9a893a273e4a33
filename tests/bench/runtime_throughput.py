"""Redis Streams records/s with the `runtime` invoker against the `python` invoker, on the
same server and the same no-op handler, in one run.

Writes N entries (one 100-byte field) over 4 streams (4 lanes), then times, over
interleaved rounds with fresh consumer groups, the real mapping worker with the
`redis-streams` source (batch size 100, window 0) until every entry is settled
(tests/bench/harness.py, as redis_throughput.py), with the function `noop` being:
- `python`: the handler in the daemon (the baseline);
- `runtime` python3.X: the same handler file as a package run by awslambdaric, with
  4 provisioned environments (one per lane, initialised before the timing starts).

    python tests/bench/runtime_throughput.py [--records N] [--rounds R] [--url redis://...]

Without --url (or REDIS_URL) it starts a redis-server of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bridge.config.loading import load_config_text
from bridge.ops import logs
from tests import services
from tests.bench.harness import NOOP, run_mapping
from tests.bench.redis_throughput import BATCH, fill
from tests.e2e.redis_helpers import unique

RUNTIME = f"python{sys.version_info.major}.{sys.version_info.minor}"
LANES = 4


async def through_bridge(
    workdir: Path, url: str, streams: list[str], count: int, kind: str
) -> float:
    code = workdir / "code"
    code.mkdir(parents=True, exist_ok=True)
    (code / "handler.py").write_text(NOOP)
    if kind == "python":
        function = f"{{invoker: python, handler: {code / 'handler.py'}:handler, timeout: 30}}"
    else:
        function = (
            f"{{invoker: runtime, runtime: {RUNTIME}, handler: handler.handler, code: {code}, "
            f"timeout: 30, reserved_concurrency: {LANES}, provisioned_concurrency: {LANES}}}"
        )
    text = f"""
state_dir: {workdir / "state"}
functions:
  noop: {function}
mappings:
  - name: bench
    function: noop
    batch_size: {BATCH}
    source: {{type: redis-streams, url: '{url}', streams: [{", ".join(streams)}], group: {unique("bridge")}, starting_position: TRIM_HORIZON, block_seconds: 0.05}}
"""
    loaded = load_config_text(text, "bench.yaml", environ={}, handler_root=workdir)
    return await run_mapping(loaded, workdir, count)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--url", default=os.environ.get("REDIS_URL"))
    args = parser.parse_args()
    logs.configure(os.environ.get("BENCH_LOG", "warning"))
    with tempfile.TemporaryDirectory() as temp, contextlib.ExitStack() as stack:
        workdir = Path(temp)
        url = args.url
        if not url:
            server = services.redis_server(workdir / "redis")
            stack.callback(server.stop)
            url = f"redis://127.0.0.1:{server.port}/0"
        streams = [unique("bench") for _ in range(LANES)]
        await fill(url, streams, args.records)
        runs: dict[str, list[float]] = {"python": [], "runtime": []}
        for number in range(args.rounds):
            for kind, seconds in runs.items():
                folder = workdir / f"{kind}{number}"
                seconds.append(await through_bridge(folder, url, streams, args.records, kind))
        python, runtime = min(runs["python"]), min(runs["runtime"])
        print(
            f"entries: {args.records:,} (100-byte values, {LANES} streams), batch size {BATCH}, "
            f"best of {args.rounds}"
        )
        print(f"python invoker, no-op handler:          {args.records / python:>10,.0f} records/s")
        print(
            f"runtime invoker ({RUNTIME}, awslambdaric): {args.records / runtime:>10,.0f} "
            f"records/s (ratio {runtime / python:.2f})"
        )


if __name__ == "__main__":
    asyncio.run(main())
