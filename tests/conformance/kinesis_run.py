"""One run of every supported Kinesis case at once, against moto: one daemon with one
mapping per case (own stream, function and destination). The record age cases' mappings
start disabled and are enabled (config + SIGHUP reload) 60 s after their records were
written, so that the records are older than `MaximumRecordAgeInSeconds` (60 s, AWS's
minimum) when first read, as AWS's mappings created 60 s later saw them. The disable
case is disabled the same way after its first invocation.

What each case produced is collected in the shape of its recording (`actual`)."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

from tests.conformance import streams
from tests.conformance.kinesis_cases import AFTER, AGED, BEFORE, KinesisCase, Put, setup_for
from tests.conformance.snapshots import Case
from tests.e2e import aws_helpers as aws
from tests.support import DaemonProcess, wait_for

AGE_LIMIT = 60.0
DISABLE = "test_disable_kinesis_event_source_mapping"


class KinesisRun:
    def __init__(self, root: Path, endpoint: str, cases: list[Case]) -> None:
        self.root = root
        self.endpoint = endpoint
        self.cases = {case.name: case for case in cases}
        self.setups = {case.name: setup_for(case) for case in cases}
        self.names = {name: f"k{index:02d}" for index, name in enumerate(self.setups)}
        self.streams: dict[str, str] = {}
        self.destinations: dict[str, tuple[str, str]] = {}  # case: (kind, queue url/bucket)
        self.daemons: list[DaemonProcess] = []
        self.reached: dict[str, bool] = {}
        self.actual: dict[str, dict[str, Any]] = {}
        self.notes: dict[str, Any] = {}
        self.timings: list[tuple[str, float]] = []
        self.disabled: set[str] = set()
        self._mark: Any = lambda what: None

    # -- setting up ------------------------------------------------------------------

    def run(self, timeout: float = 75) -> None:
        late = [name for name, setup in self.setups.items() if setup.late]
        started = time.time()
        self._mark = lambda what: self.timings.append((what, round(time.time() - started, 2)))
        for name in late:  # first: their age counts from here
            self._stream(name)
            self._put(name, AGED)
        # After the last put returned: no aged record arrived later, however slow the
        # emulator was to take them.
        aged_at = time.time()
        for name in self.setups:
            if name not in self.streams:
                self._stream(name)
            self._destination(name)
            self._put(name, BEFORE)
        main = [name for name in self.setups if name not in late]
        self._mark("streams and destinations made")
        self.disabled = set(late)
        config = self._config(self.root, list(self.setups))
        daemon = self._daemon(config, self.root, len(self._mappings(main)))
        for name in main:
            for mapping in self._mappings([name]):
                daemon.wait_for_log("stream.reading", mapping=mapping)
            self._put(name, AFTER)
        self._mark("main mappings reading")
        if DISABLE in main:
            self._disable()
        if late:
            # Enabled once their records are older than the age limit: as AWS's mapping,
            # created 60 s after the record was written, they read them for the first time.
            self._until(aged_at + AGE_LIMIT - 5)
            for name in late:
                self._put(name, "young")
            self._until(aged_at + AGE_LIMIT + 0.5)
            self.disabled -= set(late)
            self._reload()
            self._mark("late mappings enabled")
        checks = {name: (lambda name=name: self._done(name)) for name in self.setups}
        self.reached = streams.wait_all(checks, timeout)
        self._mark("all reached")
        for name in self.setups:
            self.actual[name] = self._collect(name)

    def _reload(self) -> None:
        """Write the config with the mappings of `self.disabled` off, and reload it."""
        daemon = self.daemons[0]
        applied = len(daemon.events("reload.applied"))
        self._config(self.root, list(self.setups))
        daemon.signal(signal.SIGHUP)
        daemon.wait_for_log("reload.applied", count=applied + 1)

    def stop(self) -> None:
        for daemon in self.daemons:
            if daemon.process is not None and daemon.process.poll() is None:
                daemon.signal(signal.SIGTERM)
        for daemon in self.daemons:
            try:
                daemon.wait(15)
            except Exception:
                daemon.kill()
            # Shown by pytest when a test failed.
            print(f"--- timings: {self.timings}")
            print(f"--- last log lines of the daemon in {daemon.cwd}:")
            print("".join(daemon.raw_stderr[-30:]))
            # The disable case waits on its first invocation: its own lines say why not.
            mapping = self.names.get(DISABLE)
            if mapping is not None:
                own = [line for line in daemon.raw_stderr if f'"mapping":"{mapping}"' in line]
                print(f"--- log lines of {mapping} (the disable case):")
                print("".join(own[-30:]))

    def _until(self, moment: float) -> None:
        time.sleep(max(0.0, moment - time.time()))

    def _stream(self, name: str) -> None:
        self.streams[name] = aws.new_stream(self.endpoint)

    def _destination(self, name: str) -> None:
        kind = self.setups[name].destination
        if kind is None:
            return
        make = {
            "sqs": streams.sqs_destination,
            "sns": streams.sns_destination,
            "s3": streams.s3_destination,
        }[kind]
        handle, spec = make(self.endpoint)
        self.destinations[name] = (kind, handle)
        self.notes[f"spec:{name}"] = spec

    def _put(self, name: str, when: str) -> None:
        for put in self.setups[name].puts:
            if put.when == when:
                self.put(name, put)

    def put(self, name: str, put: Put) -> None:
        entries = [{"PartitionKey": key, "Data": data} for key, data in put.records]
        reply = aws.client("kinesis", self.endpoint).put_records(
            StreamName=self.streams[name], Records=entries
        )
        assert not reply.get("FailedRecordCount"), reply

    def _mappings(self, names: list[str]) -> list[str]:
        found = []
        for name in names:
            found.append(self.names[name])
            found += [
                f"{self.names[name]}-{suffix}" for suffix, _, _ in self.setups[name].extra_mappings
            ]
        return found

    def _config(self, root: Path, names: list[str]) -> Path:
        setups, destinations = [], {}
        for name in names:
            setup = self.setups[name]
            params = dict(self.cases[name].esm_parameters or {})
            params.pop("second_mapping_FilterCriteria", None)
            settings = streams.mapping_settings(params)
            if name in self.disabled:
                settings["enabled"] = False
            if name in self.destinations:
                destinations[self.names[name]] = self.notes[f"spec:{name}"]
            mapping = self.names[name]
            setups.append(self._setup(mapping, setup, setup.behaviour, settings, name))
            for suffix, behaviour, extra in setup.extra_mappings:
                more = {key: value for key, value in settings.items() if key != "filter_criteria"}
                setups.append(
                    self._setup(f"{mapping}-{suffix}", setup, behaviour, {**more, **extra}, name)
                )
        return streams.write_workspace(root, self.endpoint, setups, destinations)

    def _setup(
        self,
        mapping: str,
        setup: KinesisCase,
        behaviour: dict[str, Any],
        settings: dict[str, Any],
        name: str,
    ) -> streams.CaseSetup:
        role = f"arn:aws:iam::{streams.ACCOUNT}:role/{self.names[name]}-role"
        source = (
            f'{{type: kinesis, stream: "{self.streams[name]}", endpoint_url: "{self.endpoint}", '
            f'starting_position: {setup.starting_position}, invoke_identity_arn: "{role}", '
            "poll_interval_seconds: 0.2, shard_discovery_interval_seconds: 5}"
        )
        destination = (
            self.names[name] if name in self.destinations and mapping == self.names[name] else None
        )
        return streams.CaseSetup(mapping, behaviour, source, settings, destination)

    def _daemon(self, config: Path, root: Path, mappings: int) -> DaemonProcess:
        daemon = DaemonProcess(config, root)
        self.daemons.append(daemon.start())
        daemon.wait_for_log("mapping.started", timeout=60, count=mappings)
        return daemon

    def _disable(self) -> None:
        """After the first invocation, disable the mapping (config + reload), then write
        10 more records, which must not reach the function."""
        function = self.names[DISABLE]
        # Polling some 25 streams on one emulator can be slow on a busy machine: a wait, not a bound.
        wait_for(lambda: self.events(DISABLE), timeout=60, what="the first invocation")
        self.disabled.add(DISABLE)
        self._reload()
        self.daemons[0].wait_for_log("mapping.stopped", mapping=function)
        more = [("test", json.dumps({"record_id": index}).encode()) for index in range(10, 20)]
        self.put(DISABLE, Put(more))
        self.notes["disabled"] = True

    # -- end states and results ---------------------------------------------------------

    def events(self, name: str, suffix: str = "") -> list[Any]:
        function = self.names[name] + (f"-{suffix}" if suffix else "")
        return streams.events_of(self.root, function)

    def _destination_count(self, name: str) -> int:
        kind, handle = self.destinations[name]
        if kind == "s3":
            return len(
                aws.client("s3", self.endpoint).list_objects_v2(Bucket=handle).get("Contents", [])
            )
        return aws.queue_depth(self.endpoint, handle)

    def _done(self, name: str) -> bool:
        expected_events = {
            "test_kinesis_event_source_mapping_with_async_invocation": 2,
            "test_kinesis_event_source_trim_horizon": 3,
        }
        if name in self.destinations and self._destination_count(name) < 1:
            return False
        if "failure_scenarios" in name:
            return len(self.events(name)) >= 3
        if name.startswith("test_kinesis_maximum_record_age_exceeded_discard"):
            return sum(len(event["Records"]) for event in self.events(name)) >= 5
        if self.setups[name].extra_mappings:
            suffix = self.setups[name].extra_mappings[0][0]
            return bool(self.events(name)) and bool(self.events(name, suffix))
        if name == DISABLE:
            return bool(self.notes.get("disabled"))
        if "maximum_record_age" in name:
            return True
        return len(self.events(name)) >= expected_events.get(name, 1)

    def _collect(self, name: str) -> dict[str, Any]:
        found: dict[str, Any] = {}
        if name in self.destinations:
            kind, handle = self.destinations[name]
            try:
                if kind == "s3":
                    found["s3"] = streams.s3_documents(self.endpoint, handle, 1, timeout=1)
                else:
                    found["queue"] = streams.queue_messages(self.endpoint, handle, 1, timeout=1)
            except AssertionError as exc:  # the case's test reports it
                found["destination_error"] = str(exc)
        found["events"] = self.events(name)
        for suffix, _, _ in self.setups[name].extra_mappings:
            found[f"events-{suffix}"] = self.events(name, suffix)
        return found
