"""Resident memory of lambda-bridge under a large backlog and with many mappings.

- Backlog: N entries (default 1,000,000, 100-byte values) wait in 4 Redis streams; one
  mapping (batch size 100, a `python` no-op handler) works through them while this
  process's resident memory is sampled. It must stay flat: the reader reads ahead a
  bounded number of records whatever the backlog.
- Mappings: `lambda-bridge run` with M `files` mappings (default 100) on empty folders:
  resident memory once READY and after a quiet while.

    python tests/bench/memory.py [--entries N] [--mappings M] [--url redis://...]

Without --url (or REDIS_URL) it starts a redis-server of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bridge.ops import logs
from tests import services
from tests.bench.harness import redis_url, rss_mb
from tests.bench.redis_throughput import fill, through_bridge
from tests.e2e.redis_helpers import unique

_RUN = "import sys; from bridge.cli import main; sys.exit(main())"


async def backlog(workdir: Path, url: str, entries: int) -> list[tuple[float, float]]:
    """(seconds, MB) samples while one mapping drains `entries` entries."""
    streams = [unique("backlog") for _ in range(4)]
    await fill(url, streams, entries)
    samples: list[tuple[float, float]] = []
    started = time.perf_counter()

    async def sample() -> None:
        while True:
            samples.append((time.perf_counter() - started, rss_mb()))
            await asyncio.sleep(0.5)

    sampler = asyncio.create_task(sample())
    try:
        await through_bridge(workdir, url, streams, entries)
    finally:
        sampler.cancel()
    samples.append((time.perf_counter() - started, rss_mb()))
    return samples


def many_mappings(workdir: Path, count: int) -> tuple[float, float, float]:
    """(seconds to READY, MB when READY, MB 10 s later) of a daemon with `count` mappings."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = services.free_port()
    (workdir / "h.py").write_text("def handler(event, context):\n    return None\n")
    lines = [
        "state_dir: ./state",
        f'http: {{listen: "127.0.0.1:{port}"}}',
        "functions:",
        "  fn: {invoker: python, handler: ./h.py:handler}",
        "mappings:",
    ]
    lines += [
        f"  - {{name: m{n}, function: fn, source: {{type: files, path: ./in{n}, create_path: true}}}}"
        for n in range(count)
    ]
    (workdir / "bridge.yaml").write_text("\n".join(lines) + "\n")
    started = time.perf_counter()
    daemon = subprocess.Popen(
        [sys.executable, "-c", _RUN, "run", "--config", "bridge.yaml"],
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while True:
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as reply,
            ):
                if reply.status == 200:
                    break
            if daemon.poll() is not None:
                raise SystemExit(f"the daemon ended with status {daemon.returncode}")
            time.sleep(0.01)
        ready = time.perf_counter() - started
        at_ready = rss_mb(daemon.pid)
        time.sleep(10)
        return ready, at_ready, rss_mb(daemon.pid)
    finally:
        daemon.terminate()
        daemon.wait(30)


async def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--mappings", type=int, default=100)
    parser.add_argument("--url", default=os.environ.get("REDIS_URL"))
    args = parser.parse_args()
    logs.configure("warning")
    with tempfile.TemporaryDirectory() as temp, contextlib.ExitStack() as stack:
        workdir = Path(temp)
        url = redis_url(args.url, workdir, stack)
        before = rss_mb()
        samples = await backlog(workdir / "backlog", url, args.entries)
        peak = max(mb for _, mb in samples)
        tenth = max(1, len(samples) // 10)
        shown = ", ".join(f"{at:.0f} s: {mb:.0f}" for at, mb in samples[::tenth])
        print(f"backlog of {args.entries:,} Redis entries, one mapping, python no-op handler")
        print(f"  resident MB before {before:.0f}, peak {peak:.0f}; over time: {shown}")
        ready, at_ready, later = many_mappings(workdir / "mappings", args.mappings)
        print(f"{args.mappings} files mappings: READY in {ready:.2f} s")
        print(f"  resident MB when READY {at_ready:.0f}, 10 s later {later:.0f}")


if __name__ == "__main__":
    asyncio.run(main())
