"""What the handler saw, read back from its JSON Lines file, and the checks of the kill
scenarios over it.

A *run* is one daemon process (its pid is on every line the handler wrote); a run that
was killed has the wall-clock time of its SIGKILL. The checks return problems as text
lines instead of stopping at the first, so one failing seed shows everything it broke.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# How long before its SIGKILL a run may have delivered a record that the next run
# delivers again. A record counts as delivered when the handler starts on it; it is then
# settled when the handler returns (milliseconds here), and its position reaches the
# source or the checkpoint store after at most the store's flush interval (0.5 s, SQLite)
# or Kafka's commit interval (0.1 s) plus the request itself; SQS deletes at once. So
# about 0.6 s of records may be in flight at a kill; 3 s leaves room for a 2-core machine
# running the rest of the test suite (scheduling delays of a second are common there),
# while a checkpoint that lags by whole batches or never moves still shows. A handler
# that takes its time adds that time (the checks take it as `window`).
DUPLICATE_WINDOW_SECONDS = 3.0


@dataclass(frozen=True)
class Delivery:
    pid: int
    at: float
    id: str
    partition: str
    seq: int
    position: Any
    receive_count: int


@dataclass
class Run:
    pid: int
    started: float
    killed: float | None = None


class DeliveryLog:
    """Tails the handler's file: only complete lines are read, each once."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.deliveries: list[Delivery] = []
        self.unreadable = 0
        self._offset = 0
        self._ids: set[str] = set()
        self._per_pid: Counter[int] = Counter()

    def refresh(self) -> list[Delivery]:
        if not self.path.exists():
            return self.deliveries
        with self.path.open("rb") as log:
            log.seek(self._offset)
            data = log.read()
        complete = data.rfind(b"\n") + 1
        self._offset += complete
        for line in data[:complete].splitlines():
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                # The end of a line a SIGKILL cut short.
                self.unreadable += 1
                continue
            delivery = Delivery(
                pid=row["pid"],
                at=row["t"],
                id=row["id"],
                partition=row["p"],
                seq=row["s"],
                position=row["pos"],
                receive_count=row["count"],
            )
            self.deliveries.append(delivery)
            self._ids.add(delivery.id)
            self._per_pid[delivery.pid] += 1
        return self.deliveries

    def ids(self) -> set[str]:
        self.refresh()
        return self._ids

    def count_for(self, pid: int) -> int:
        self.refresh()
        return self._per_pid[pid]

    def by_pid(self, pid: int) -> list[Delivery]:
        return [delivery for delivery in self.refresh() if delivery.pid == pid]


@dataclass
class Figures:
    """What a kill scenario did, for the report."""

    records: int = 0
    deliveries: int = 0
    kills: int = 0
    duplicates: int = 0
    duplicates_within_a_run: int = 0
    max_duplicate_window: float = 0.0
    lapsed_duplicates: int = 0
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def missing(produced: dict[str, tuple[str, int]], log: DeliveryLog) -> list[str]:
    """Every produced record was delivered at least once."""
    lost = sorted(set(produced) - log.ids(), key=lambda ident: produced[ident])
    if not lost:
        return []
    shown = ", ".join(
        f"{ident} ({produced[ident][0]} #{produced[ident][1]})" for ident in lost[:10]
    )
    return [f"{len(lost)} of {len(produced)} records were never delivered: {shown}"]


def _runs_by_pid(runs: list[Run]) -> dict[int, int]:
    return {run.pid: index for index, run in enumerate(runs)}


def check_ordered(
    runs: list[Run], log: DeliveryLog, figures: Figures, window: float = DUPLICATE_WINDOW_SECONDS
) -> list[str]:
    """Per partition: within a run, first deliveries come in increasing sequence; what a
    restarted run delivers again is a contiguous tail of what earlier runs delivered,
    delivered by them at most `window` seconds before they were killed."""
    index_of = _runs_by_pid(runs)
    problems: list[str] = []
    # partition -> seq -> (run index, time) of its latest delivery so far
    latest: dict[str, dict[int, tuple[int, float]]] = defaultdict(dict)
    per_run: dict[int, dict[str, list[Delivery]]] = defaultdict(lambda: defaultdict(list))
    for delivery in log.refresh():
        per_run[index_of[delivery.pid]][delivery.partition].append(delivery)
    for run_index in sorted(per_run):
        run = runs[run_index]
        late: list[tuple[float, int, str, int]] = []
        for partition, deliveries in per_run[run_index].items():
            seen_here: set[int] = set()
            first_deliveries: list[int] = []
            for delivery in deliveries:
                if delivery.seq in seen_here:
                    figures.duplicates_within_a_run += 1
                else:
                    seen_here.add(delivery.seq)
                    first_deliveries.append(delivery.seq)
            backwards = [(a, b) for a, b in itertools.pairwise(first_deliveries) if b <= a]
            if backwards:
                problems.append(
                    f"run {run_index} (pid {run.pid}) went backwards on {partition}: "
                    f"#{backwards[0][1]} after #{backwards[0][0]}"
                )
            before = latest[partition]
            again = sorted(seen_here & before.keys())
            if again:
                earlier = sorted(before)
                if again != earlier[-len(again) :]:
                    problems.append(
                        f"run {run_index} (pid {run.pid}) delivered {partition} again from "
                        f"#{again[0]} to #{again[-1]} ({len(again)} records), not a contiguous "
                        f"tail of the {len(earlier)} delivered before (last #{earlier[-1]})"
                    )
                late += _outside_window(runs, again, before, partition, figures, window)
            for delivery in deliveries:
                before[delivery.seq] = (run_index, delivery.at)
        problems += _late_summary(run_index, late, runs, window)
    return problems


def _outside_window(
    runs: list[Run],
    again: list[int],
    before: dict[int, tuple[int, float]],
    partition: str,
    figures: Figures,
    window: float,
) -> list[tuple[float, int, str, int]]:
    """The redelivered records whose earlier delivery was not recent at its run's kill:
    (how long before the kill, that run, partition, seq); infinite for a clean stop."""
    late = []
    for seq in again:
        previous_run, at = before[seq]
        killed = runs[previous_run].killed
        figures.duplicates += 1
        before_kill = float("inf") if killed is None else killed - at
        if killed is not None:
            figures.max_duplicate_window = max(figures.max_duplicate_window, before_kill)
        if before_kill > window:
            late.append((before_kill, previous_run, partition, seq))
    return late


def _late_summary(
    run_index: int, late: list[tuple[float, int, str, int]], runs: list[Run], window: float
) -> list[str]:
    problems = []
    by_run: dict[int, list[tuple[float, int, str, int]]] = defaultdict(list)
    for entry in late:
        by_run[entry[1]].append(entry)
    for previous_run, entries in sorted(by_run.items()):
        entries.sort(reverse=True)
        examples = ", ".join(f"{partition} #{seq}" for _, _, partition, seq in entries[:5])
        if runs[previous_run].killed is None:
            problems.append(
                f"run {run_index} delivered again {len(entries)} records that run "
                f"{previous_run} had delivered and was stopped cleanly after: {examples}"
            )
            continue
        problems.append(
            f"run {run_index} delivered again {len(entries)} records that run {previous_run} "
            f"had delivered more than {window} s before it was killed (up to "
            f"{entries[0][0]:.2f} s: its checkpoint lagged behind), e.g. {examples}"
        )
    return problems


def check_unordered(
    runs: list[Run],
    log: DeliveryLog,
    visibility_seconds: float,
    figures: Figures,
    window: float = DUPLICATE_WINDOW_SECONDS,
) -> list[str]:
    """A standard SQS queue: a message delivered again was either in flight when its
    earlier run was killed (delivered at most `window` seconds before the kill,
    not yet deleted) or came back because its visibility timeout lapsed (a full timeout
    after it was last delivered, with a higher ApproximateReceiveCount)."""
    index_of = _runs_by_pid(runs)
    problems: list[str] = []
    previous: dict[str, Delivery] = {}
    for delivery in log.refresh():
        earlier = previous.get(delivery.id)
        previous[delivery.id] = delivery
        if earlier is None:
            continue
        figures.duplicates += 1
        earlier_run, run_index = index_of[earlier.pid], index_of[delivery.pid]
        if earlier_run == run_index:
            figures.duplicates_within_a_run += 1
        if delivery.receive_count <= earlier.receive_count:
            problems.append(
                f"message {delivery.id} delivered again by run {run_index} with "
                f"ApproximateReceiveCount {delivery.receive_count}, not above the earlier "
                f"{earlier.receive_count}: it was received twice at once"
            )
        killed = runs[earlier_run].killed
        in_flight = earlier_run < run_index and killed is not None
        if in_flight and killed is not None and killed - earlier.at <= window:
            figures.max_duplicate_window = max(figures.max_duplicate_window, killed - earlier.at)
            continue
        # One second of slack: the earlier receive may have come a little before its delivery.
        if delivery.at - earlier.at >= visibility_seconds - 1.0:
            figures.lapsed_duplicates += 1
            continue
        problems.append(
            f"message {delivery.id} delivered again by run {run_index} "
            f"{delivery.at - earlier.at:.2f} s after run {earlier_run} delivered it: neither "
            f"in flight at a kill nor after its visibility timeout ({visibility_seconds} s)"
        )
    return problems


def check_checkpoint_floor(
    run_index: int, runs: list[Run], floor: dict[str, Any], log: DeliveryLog, below: Any
) -> list[str]:
    """Nothing the run delivers lies at or before the checkpoint read after the previous
    run was killed. `below(position, saved)` says whether a position is covered by it."""
    problems = []
    pid = runs[run_index].pid
    for delivery in log.by_pid(pid):
        saved = floor.get(delivery.partition)
        if saved is not None and below(delivery.position, saved):
            problems.append(
                f"run {run_index} delivered {delivery.partition} #{delivery.seq} at position "
                f"{delivery.position}, already checkpointed ({saved}) before it started"
            )
    if len(problems) > 5:
        problems[5:] = [f"run {run_index}: {len(problems) - 5} more records like these"]
    return problems
