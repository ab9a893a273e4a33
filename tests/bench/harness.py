"""Shared by the broker benchmarks: run the one mapping of a loaded config until a given
number of records is handled, timed from the first acknowledgement or commit."""

from __future__ import annotations

import asyncio
import contextlib
import resource
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

from bridge.config.loading import load_config_text
from bridge.config.model import LoadedConfig
from bridge.config.plugins import SourceContext
from bridge.pipeline.mapping import MappingRunner
from bridge.pipeline.settings import resolve
from bridge.testing import NoopInvoker
from tests import services

_PAGE = resource.getpagesize()


def rss_mb(pid: int | str = "self") -> float:
    """Resident memory of a process (this one by default), in MB."""
    with open(f"/proc/{pid}/statm") as handle:
        return int(handle.read().split()[1]) * _PAGE / 1e6


@contextlib.contextmanager
def cpu_use(into: list[tuple[float, int]]) -> Iterator[None]:
    """Appends (CPU seconds, voluntary context switches) of this process, all threads,
    over the block: where a path's time goes when it is not the broker's."""
    before = resource.getrusage(resource.RUSAGE_SELF)
    yield
    after = resource.getrusage(resource.RUSAGE_SELF)
    used = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    into.append((used, after.ru_nvcsw - before.ru_nvcsw))


def cpu_line(label: str, runs: list[tuple[float, int]], count: int) -> str:
    """`label`: CPU microseconds and context switches per record, the least of the runs."""
    used, switches = min(runs)
    return f"{label}: {used / count * 1e6:5.1f} us CPU per record, {switches / count * 100:5.1f} context switches per 100 records"


# One timed run of a path: given the round's number, the seconds it took.
TimedRun = Callable[[int], Awaitable[float]]


async def compare_with_hand_written(
    count: int,
    rounds: int,
    *,
    hand: tuple[str, TimedRun],
    old: tuple[str, TimedRun],
    bridge: TimedRun,
    noop: TimedRun,
) -> None:
    """Run the hand-written baseline (`hand`), the old client-only baseline (`old`), the
    bridge with the `python` handler and with the in-process no-op, in interleaved rounds;
    print the best of each as records/s with ratios, and CPU per record (a label names
    each baseline)."""
    runs: dict[str, list[float]] = {"hand": [], "old": [], "bridge": [], "noop": []}
    cpu: dict[str, list[tuple[float, int]]] = {"hand": [], "bridge": [], "noop": []}
    for number in range(rounds):
        runs["old"].append(await old[1](number))
        for name, run in (("hand", hand[1]), ("bridge", bridge), ("noop", noop)):
            with cpu_use(cpu[name]):
                runs[name].append(await run(number))
    best = {name: min(seconds) for name, seconds in runs.items()}
    print(f"baseline, by hand ({hand[0]}): {count / best['hand']:>10,.0f} records/s")
    print(f"old baseline, {old[0]}: {count / best['old']:>10,.0f} records/s")
    for name, label in (("bridge", "python handler"), ("noop", "in-process no-op")):
        seconds = best[name]
        print(
            f"lambda-bridge, {label}: {count / seconds:>10,.0f} records/s "
            f"(ratio {best['hand'] / seconds:.2f} of by hand; "
            f"{best['old'] / seconds:.2f} of the old baseline)"
        )
    print(cpu_line("  by hand", cpu["hand"], count))
    print(cpu_line("  lambda-bridge, python handler", cpu["bridge"], count))
    print(cpu_line("  lambda-bridge, in-process no-op", cpu["noop"], count))


def percentiles(samples: list[float]) -> str:
    """p50, p99 and p999 of sorted latencies in seconds, in milliseconds."""

    def at(fraction: float) -> float:
        return samples[min(len(samples) - 1, int(len(samples) * fraction))] * 1000

    return f"p50 {at(0.5):.1f} ms, p99 {at(0.99):.1f} ms, p999 {at(0.999):.1f} ms"


def redis_url(given: str | None, workdir: Path, stack: contextlib.ExitStack) -> str:
    """`given`, or a redis-server started for the run (stopped with `stack`)."""
    if given:
        return given
    server = services.redis_server(workdir / "redis")
    stack.callback(server.stop)
    return f"redis://127.0.0.1:{server.port}/0"


# The no-op handler both the bridge and the hand-written baselines call.
NOOP = "def handler(event, context):\n    return None\n"


def noop_handler() -> Any:
    """NOOP as a function, for a hand-written loop to call directly."""
    namespace: dict[str, Any] = {}
    exec(NOOP, namespace)
    return namespace["handler"]


async def run_source(
    workdir: Path,
    source: str,
    count: int,
    *,
    batch_size: int,
    settings: str = "",
    handler: str = NOOP,
    in_memory_function: bool = False,
    until: Any = None,
) -> float:
    """`run_mapping` on a config of one mapping: `source` (its settings as a YAML flow
    mapping) read in batches of `batch_size` for the `python` function `handler`;
    `settings`: more of the mapping's settings, as `key: value` lines."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "handler.py").write_text(handler)
    more = "".join(f"    {line}\n" for line in settings.splitlines())
    text = (
        f"state_dir: {workdir / 'state'}\n"
        "functions:\n"
        f"  noop: {{invoker: python, handler: {workdir / 'handler.py'}:handler, timeout: 30}}\n"
        "mappings:\n"
        "  - name: bench\n"
        "    function: noop\n"
        f"    batch_size: {batch_size}\n"
        f"{more}"
        f"    source: {source}\n"
    )
    loaded = load_config_text(text, "bench.yaml", environ={})
    return await run_mapping(
        loaded, workdir, count, in_memory_function=in_memory_function, until=until
    )


async def run_mapping(
    loaded: LoadedConfig,
    workdir: Path,
    count: int,
    *,
    in_memory_function: bool = False,
    until: Any = None,
) -> float:
    """Seconds from the first settled record until `count` are handled (or `until`, an
    awaitable, is done). `in_memory_function` swaps the configured function `noop` for
    bridge.testing.NoopInvoker, which isolates the bridge's own cost."""
    config = loaded.config
    mapping = config.mappings[0]
    invoker: Any = (
        NoopInvoker()
        if in_memory_function
        else config.functions["noop"].build("noop", loaded.build_context)
    )
    await invoker.start()
    context = SourceContext(
        mapping="bench", identity=config.identity, checkpoints=None, state_dir=workdir
    )  # type: ignore[arg-type]
    started = 0.0

    def build_source() -> Any:
        source = mapping.source.build(context)
        settle = "acknowledge" if source.mode.acknowledged else "commit"
        original = getattr(source, settle)

        async def timed(settled: Any) -> None:
            nonlocal started
            if not started:
                started = time.perf_counter()
            await original(settled)

        setattr(source, settle, timed)
        return source

    runner = MappingRunner(
        name="bench",
        function_arn="arn:aws:lambda:us-east-1:000000000000:function:noop",
        settings=resolve(mapping),
        source_factory=build_source,
        invoker=invoker,
        destination=None,
    )
    task = asyncio.create_task(runner.run())
    try:
        if until is not None:
            await until
        else:
            while runner.metrics.succeeded < count:
                await asyncio.sleep(0.005)
        return time.perf_counter() - started
    finally:
        runner.stop()
        await task
        await invoker.close()
