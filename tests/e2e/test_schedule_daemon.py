"""lambda-bridge run as a process with `schedule` sources and a recording Python handler:
firings as EventBridge's scheduled events, filters, retries and the on-failure
destination, and the catch-up rule across restarts, kill -9 included.

Local `rate(N seconds)` keeps the tests short. A restart's downtime is real time the
daemon is not running, so those tests wait for it (it is what they test).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import DaemonProcess, read_jsonl, wait_for

pytestmark = pytest.mark.e2e

START_MARGIN_SECONDS = 6

HANDLER = '''
"""Records every event with the time the handler was entered; fails when the event
asks for it, sleeps when it asks for that."""
import json, os, time

LOG = os.environ["RECORD_TO"]


def handler(event, context):
    entry = {"entered": time.time(), "request_id": context.aws_request_id, "event": event}
    with open(LOG, "a") as out:
        out.write(json.dumps(entry) + "\\n")
    time.sleep(event.get("sleep", 0))
    if event.get("fail"):
        raise ValueError("the schedule's input asks for a failure")
    return {"ok": True}
'''


class Space:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.calls = root / "calls.jsonl"
        (root / "handler.py").write_text(HANDLER)
        self.daemons: list[DaemonProcess] = []

    def config(self, mappings: str) -> Path:
        path = self.root / "bridge.yaml"
        path.write_text(
            f"""\
state_dir: ./state
drain_timeout_seconds: 10
aws: {{region: eu-central-1, account_id: "123456789012"}}
functions:
  recorder: {{invoker: python, handler: handler.py:handler, timeout: 30}}
destinations:
  failed: {{type: file, path: ./failed}}
mappings:
{mappings}"""
        )
        return path

    def daemon(self, config: Path, mappings: int = 1) -> DaemonProcess:
        daemon = DaemonProcess(config, self.root, env={"RECORD_TO": str(self.calls)})
        self.daemons.append(daemon)
        return daemon.start().wait_ready(mappings)

    def events(self) -> list[dict[str, Any]]:
        return [call["event"] for call in read_jsonl(self.calls)]

    def times(self, rule: str) -> list[float]:
        """The scheduled times of the scheduled events of one rule, as delivered."""
        return [
            scheduled(event["time"])
            for event in self.events()
            if event.get("resources") == [f"arn:aws:events:eu-central-1:123456789012:rule/{rule}"]
        ]


def scheduled(text: str) -> float:
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC).timestamp()


def at_expression(moment: float) -> str:
    return "at(" + dt.datetime.fromtimestamp(moment, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S") + ")"


@pytest.fixture
def space(tmp_path: Path) -> Iterator[Space]:
    rig = Space(tmp_path)
    yield rig
    for daemon in rig.daemons:
        daemon.kill()


def mapping(name: str, source: str, extra: str = "") -> str:
    return f"""\
  - name: {name}
    function: recorder
    source: {source}
    destination_config: {{on_failure: {{destination: failed}}}}
    retry_backoff: {{initial_seconds: 0.05, max_seconds: 0.2}}
{extra}"""


def test_firings_reach_the_handler_as_scheduled_events_and_filters_apply(space: Space) -> None:
    """`rate(1 second)`: one invocation a second with EventBridge's scheduled event, its
    `time` the scheduled second; filters match the event as the function receives it
    (here a schedule's input), and what they do not match never reaches the function."""
    keep = """\
    filter_criteria:
      filters:
        - pattern: '{"kind": ["keep"]}'
"""
    config = space.config(
        mapping("ticks", '{type: schedule, expression: "rate(1 second)"}')
        + mapping(
            "kept", '{type: schedule, expression: "rate(1 second)", input: {kind: keep}}', keep
        )
        + mapping(
            "dropped", '{type: schedule, expression: "rate(1 second)", input: {kind: drop}}', keep
        )
    )
    daemon = space.daemon(config, mappings=3)
    wait_for(lambda: len(space.times("ticks")) >= 3, what="three firings")
    wait_for(
        lambda: [event for event in space.events() if event.get("kind") == "keep"][1:],
        what="two firings that the filter keeps",
    )
    assert daemon.stop() == 0
    # Each firing once, none left out (firings due together may enter in either order).
    times = sorted(space.times("ticks"))
    assert times == [times[0] + index for index in range(len(times))]
    for event in space.events():
        if "kind" in event:
            assert event == {"kind": "keep"}
            continue
        assert event["detail-type"] == "Scheduled Event"
        assert event["source"] == "aws.events"
        assert (event["account"], event["region"], event["detail"]) == (
            "123456789012",
            "eu-central-1",
            {},
        )
    [dropped] = daemon.events("mapping.stopped", mapping="dropped")
    assert int(dropped["filtered_out"]) >= 1


def test_a_failing_firing_is_retried_then_sent_to_the_on_failure_destination(
    space: Space,
) -> None:
    """As an asynchronous invocation: two retries (three invocations of the same event),
    then the failure record with the event, to the on-failure destination."""
    config = space.config(
        mapping("failing", '{type: schedule, expression: "rate(1 hour)", input: {fail: true}}')
    )
    daemon = space.daemon(config)
    failures = space.root / "failed" / "failing.jsonl"
    [failure] = wait_for(lambda: read_jsonl(failures), what="the failure record")
    assert failure["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert failure["requestContext"]["approximateInvokeCount"] == 3
    assert failure["responseContext"]["functionError"] == "Unhandled"
    assert failure["payload"] == {"fail": True}
    info = failure["ScheduleBatchInfo"]
    assert info["ruleArn"] == "arn:aws:events:eu-central-1:123456789012:rule/failing"
    assert info["scheduleExpression"] == "rate(1 hour)"
    assert info["batchSize"] == 1
    assert space.events() == [{"fail": True}] * 3
    assert daemon.stop() == 0


def downtime(daemon: DaemonProcess, seconds: float, kill: bool) -> None:
    if kill:
        daemon.signal(signal.SIGKILL)
        daemon.wait()
    else:
        assert daemon.stop() == 0
    # The daemon is down for this long: the firings due meanwhile are the ones missed.
    time.sleep(seconds)


@pytest.mark.parametrize("kill", [False, True], ids=["sigterm", "kill-9"])
def test_firings_missed_while_down_are_skipped_without_catch_up(space: Space, kill: bool) -> None:
    """As on AWS: nothing due while the daemon was down is delivered after the restart,
    and no firing is delivered twice."""
    config = space.config(mapping("ticks", '{type: schedule, expression: "rate(1 second)"}'))
    first = space.daemon(config)
    wait_for(lambda: len(space.times("ticks")) >= 2, what="firings before the restart")
    downtime(first, 3, kill)
    before = space.times("ticks")
    restarted = time.time()
    second = space.daemon(config)
    [missed] = second.wait_for_log("schedule.missed")
    assert missed["delivering"] is None
    wait_for(lambda: len(space.times("ticks")) >= len(before) + 2, what="firings after it")
    assert second.stop() == 0
    after = space.times("ticks")[len(before) :]
    assert len(set(before + after)) == len(before + after)
    assert min(after) >= math.floor(restarted)


@pytest.mark.parametrize("kill", [False, True], ids=["sigterm", "kill-9"])
def test_catch_up_delivers_the_newest_missed_firing_once(space: Space, kill: bool) -> None:
    """`catch_up: 60`: after a downtime of a few seconds the newest firing due while the
    daemon was down comes once, late; the older ones do not; nothing comes twice."""
    source = '{type: schedule, expression: "rate(1 second)", catch_up: 60}'
    config = space.config(mapping("ticks", source))
    first = space.daemon(config)
    wait_for(lambda: len(space.times("ticks")) >= 2, what="firings before the restart")
    downtime(first, 3, kill)
    before = space.times("ticks")
    second = space.daemon(config)
    [missed] = second.wait_for_log("schedule.missed")
    caught_up = scheduled(missed["delivering"])
    wait_for(lambda: len(space.times("ticks")) >= len(before) + 2, what="firings after it")
    assert second.stop() == 0
    after = space.times("ticks")[len(before) :]
    assert after[0] == caught_up
    assert after.count(caught_up) == 1
    # Only the newest missed one: nothing between the last before and the caught-up one.
    assert not [moment for moment in after if max(before) < moment < caught_up]
    assert caught_up - max(before) >= 3
    if not kill:
        assert len(set(before + after)) == len(before + after)


def test_at_fires_once_and_never_again_after_a_restart(space: Space) -> None:
    # Far enough ahead for a daemon that starts slowly on a busy machine: an at() already
    # past when the schedule first starts never fires.
    moment = math.floor(time.time()) + START_MARGIN_SECONDS
    source = f'{{type: schedule, expression: "{at_expression(moment)}", catch_up: 3600}}'
    config = space.config(mapping("once", source))
    first = space.daemon(config)
    wait_for(lambda: space.times("once"), what="the one firing")
    assert first.stop() == 0
    second = space.daemon(config)
    [started] = second.wait_for_log("schedule.started")
    assert started["next_firing"] is None
    assert second.stop() == 0
    assert space.times("once") == [moment]


def invocations_reach(space: Space, count: int) -> None:
    wait_for(lambda: len(space.events()) == count, what=f"invocation {count}")


def test_a_firing_in_flight_at_kill_9_comes_again_at_most_once(space: Space) -> None:
    """Killed while the function runs the one-time firing: the next run delivers it
    again (catch_up); killed again while it runs, the run after that does not."""
    moment = math.floor(time.time()) + START_MARGIN_SECONDS
    source = (
        f'{{type: schedule, expression: "{at_expression(moment)}", catch_up: 3600, '
        "input: {sleep: 30}}"
    )
    config = space.config(mapping("slow", source))
    for attempt in (1, 2):
        daemon = space.daemon(config)
        invocations_reach(space, attempt)
        daemon.signal(signal.SIGKILL)
        daemon.wait()
    third = space.daemon(config)
    third.wait_for_log("schedule.not_redelivered_again")
    assert third.stop() == 0
    assert space.events() == [{"sleep": 30}] * 2


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bridge", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_validate_warns_about_rates_in_seconds_and_points_at_bad_expressions(
    space: Space,
) -> None:
    config = space.config(mapping("ticks", '{type: schedule, expression: "rate(1 second)"}'))
    checked = cli("validate", str(config), cwd=space.root)
    assert checked.returncode == 0, checked.stderr
    assert (
        "bridge.yaml:11: mappings[0].source.expression: a rate in seconds works only here: on "
        "AWS the smallest rate is 1 minute"
    ) in checked.stderr
    config = space.config(mapping("ticks", '{type: schedule, expression: "cron(0 12 * * * *)"}'))
    refused = cli("validate", str(config), cwd=space.root)
    assert refused.returncode != 0
    assert refused.stderr.strip() == (
        f"error: {config}:11: mappings[0].source.expression: Parameter ScheduleExpression is "
        "not valid. (day-of-month and day-of-week: exactly one of them must be ?, not both, "
        "nor neither)"
    )


def test_generate_event_prints_the_scheduled_event(tmp_path: Path) -> None:
    printed = cli("generate-event", "schedule", cwd=tmp_path)
    assert printed.returncode == 0, printed.stderr
    event = json.loads(printed.stdout)
    assert set(event) == {
        "version",
        "id",
        "detail-type",
        "source",
        "account",
        "time",
        "region",
        "resources",
        "detail",
    }
    assert (event["detail-type"], event["source"], event["detail"]) == (
        "Scheduled Event",
        "aws.events",
        {},
    )
