"""kill -9 at seeded random moments under load, for every kind of source: a crash
redelivers and never loses, and what it redelivers is only what was in flight.

A producer thread keeps adding numbered records while the daemon runs a handler that
appends every record it receives (daemon pid, partition, sequence, position, id, time)
to a JSON Lines file. The daemon is killed with SIGKILL, sometimes while it is still
starting, mostly a random moment after it delivered something, and restarted; at the
end the producer stops, the last run drains and is stopped with SIGTERM, and the file
is checked (tests/fault/ledger.py).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tests.fault.aws_sources import KinesisSource, SqsSource
from tests.fault.conftest import FaultRun
from tests.fault.handlers import RECORDING_HANDLER, install
from tests.fault.harness import (
    Producer,
    Workspace,
    pid_of,
    settled_while_running,
    wait_until_delivered,
)
from tests.fault.ledger import (
    DUPLICATE_WINDOW_SECONDS,
    DeliveryLog,
    Figures,
    Run,
    check_checkpoint_floor,
    check_ordered,
    check_unordered,
    missing,
)
from tests.fault.sources import FaultSource, FilesSource, KafkaSource, RedisStreamsSource
from tests.support import DaemonProcess

pytestmark = [pytest.mark.fault, pytest.mark.e2e]

# Kills per run at scale 1; records per second the producer adds (moto is slow with
# big queues and one PutRecord at a time, so the AWS sources get fewer).
KILLS = 4
RATES = {"files": 6, "redis-streams": 60, "kafka": 60, "sqs": 20, "kinesis": 20}
# A run that was given the chance to deliver gets killed this long after it did.
KILL_AFTER_PROGRESS_SECONDS = (0.5, 8.0)
# One kill in four hits a daemon that is still starting (loading checkpoints, joining).
KILL_WHILE_STARTING = 0.25
STARTING_SECONDS = (0.1, 2.0)
# Kafka: a restarted member waits for the killed one's session (6 s) to expire.
PROGRESS_TIMEOUT_SECONDS = 60.0
DRAIN_TIMEOUT_SECONDS = 120.0

CONFIG = """\
state_dir: ./state
functions:
  recorder: {{invoker: python, handler: '{handler}', timeout: {timeout}}}
mappings:
  - name: fault
    function: recorder
    batch_size: 10
{source}"""


@pytest.fixture(params=["files", "redis-streams", "kafka", "sqs", "kinesis"])
def source(request: pytest.FixtureRequest, tmp_path: Path, fault: FaultRun) -> FaultSource:
    """The source under test, with only the server it needs started."""
    kind = request.param
    if kind == "files":
        return FilesSource(tmp_path, fault.rng("touches"))
    if kind == "redis-streams":
        return RedisStreamsSource(request.getfixturevalue("redis_url"), streams=3)
    if kind == "kafka":
        return KafkaSource(request.getfixturevalue("kafka_bootstrap"), partitions=3)
    if kind == "sqs":
        return SqsSource(request.getfixturevalue("aws_endpoint"))
    return KinesisSource(request.getfixturevalue("aws_endpoint"), shards=2)


class KillLoop:
    """Start, wait, SIGKILL, restart: the runs, and the checkpoints read after each kill."""

    def __init__(self, space: Workspace, config: Path, source: FaultSource, fault: FaultRun):
        self.space = space
        self.config = config
        self.source = source
        self.rng = fault.rng("kills")
        self.log = DeliveryLog(space.log_file)
        self.runs: list[Run] = []
        # run index -> (saved positions, covered) read before that run started
        self.floors: dict[int, tuple[dict[str, Any], Any]] = {}
        self.problems: list[str] = []

    def start(self) -> DaemonProcess:
        daemon = self.space.start(self.config)
        self.runs.append(Run(pid_of(daemon), time.time()))
        return daemon

    def cycle(self) -> bool:
        """One run killed at a random moment; False if it never got going."""
        daemon = self.start()
        index, pid = len(self.runs) - 1, pid_of(daemon)
        if self.rng.random() < KILL_WHILE_STARTING:
            time.sleep(self.rng.uniform(*STARTING_SECONDS))
        else:
            deadline = time.monotonic() + PROGRESS_TIMEOUT_SECONDS
            while not self.log.count_for(pid):
                if daemon.process is not None and daemon.process.poll() is not None:
                    self.problems.append(
                        f"run {index} exited ({daemon.process.returncode}) by itself"
                    )
                    return False
                if time.monotonic() > deadline:
                    self.problems.append(
                        f"run {index} (pid {pid}) delivered nothing in {PROGRESS_TIMEOUT_SECONDS:.0f} s"
                    )
                    break
                time.sleep(0.05)
            time.sleep(self.rng.uniform(*KILL_AFTER_PROGRESS_SECONDS))
        self.runs[index].killed = time.time()
        os.kill(pid, signal.SIGKILL)
        daemon.wait()
        floor = self.source.checkpoint(self.space.root)
        if floor is not None:
            self.floors[index + 1] = floor
        return not self.problems


def test_kill_9_under_load_loses_nothing_and_redelivers_only_what_was_in_flight(
    tmp_path: Path, source: FaultSource, fault: FaultRun
) -> None:
    """SIGKILL at seeded random moments while records keep arriving: every record is
    delivered at least once; per partition no run goes backwards, and a restarted run
    starts neither before the checkpoint it found (read directly for Kafka, Kinesis and
    files) nor further back than what the killed run delivered in its last
    DUPLICATE_WINDOW_SECONDS plus the handler's own time (a contiguous tail). SQS
    (standard queue, unordered): a message comes again only if it was in flight at a
    kill or its visibility lapsed. Finally, with the last run still up, the source shows
    everything settled (acknowledged, committed, deleted or checkpointed)."""
    space = Workspace(tmp_path, env={"HANDLER_DELAY": str(source.handler_delay)})
    handler = install(tmp_path, RECORDING_HANDLER)
    config = space.write_config(
        CONFIG.format(handler=handler, timeout=source.function_timeout, source=source.source_yaml())
    )
    loop = KillLoop(space, config, source, fault)
    producer = Producer(source, fault.rng("producer"), RATES[source.kind]).start()
    began = time.monotonic()
    produced: dict[str, tuple[str, int]] = {}
    try:
        for _ in range(fault.scaled(KILLS)):
            if not loop.cycle():
                break
        final = loop.start()
        time.sleep(loop.rng.uniform(1.0, 3.0))
        produced = producer.stop()
        problem = wait_until_delivered(produced, loop.log.ids, DRAIN_TIMEOUT_SECONDS, final)
        if problem is not None:
            loop.problems.append(problem)
        else:
            loop.problems += settled_while_running(source, tmp_path, loop.log.refresh())
            if (code := final.stop()) != 0:
                loop.problems.append(f"the last run exited {code} on SIGTERM")
    finally:
        if not produced:
            produced = producer.stop()
        space.close()

    figures = Figures(records=len(produced), kills=len(loop.runs) - 1)
    problems = loop.problems + missing(produced, loop.log)
    if isinstance(source, FilesSource) and (lost := set(produced) - loop.log.ids()):
        touched = {ident for ident in lost if produced[ident][0] in source.touched}
        problems.append(
            f"{len(touched)} of the {len(lost)} files never delivered had been touched (a new "
            "mtime, the same content) a moment after they were written"
        )
    window = DUPLICATE_WINDOW_SECONDS + source.handler_delay
    if source.ordered:
        problems += check_ordered(loop.runs, loop.log, figures, window)
    else:
        assert isinstance(source, SqsSource)
        problems += check_unordered(loop.runs, loop.log, source.visibility_seconds, figures, window)
    for index, (saved, covered) in loop.floors.items():
        if index < len(loop.runs):
            problems += check_checkpoint_floor(index, loop.runs, saved, loop.log, covered)
    figures.deliveries = len(loop.log.deliveries)
    figures.seconds = round(time.monotonic() - began, 1)
    figures.max_duplicate_window = round(figures.max_duplicate_window, 3)
    figures.extra["cut_lines"] = loop.log.unreadable
    fault.report({"source": source.kind, **vars(figures)})
    fault.verdict(problems)
