"""`lambda-bridge failures list | show | redrive` on a `file` destination, with the daemon
and the command as real processes: failures of a folder mapping are redriven with their
original S3 events, never twice, and a redrive killed with SIGKILL mid-invocation loses
nothing when run again and repeats only the record that was in flight."""

from __future__ import annotations

import json
import signal
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.redrive_helpers import RedriveSpace, listed_ids
from tests.support import read_jsonl, wait_for

pytestmark = pytest.mark.e2e


NOWHERE = """\
  - name: nowhere
    function: steered
    source: {type: files, path: ./other, stable_after_seconds: 0.1}
    destination_config: {on_failure: {destination: metadata}}
"""


def folder_config(space: RedriveSpace, unsupported: bool = False) -> Path:
    """A folder mapping into a `file` destination; `unsupported` adds one whose destination
    (sqs: metadata only) cannot be redriven."""
    (space.root / "inbox").mkdir(exist_ok=True)
    path = space.root / "bridge.yaml"
    extra_destination = (
        '  metadata: {type: sqs, queue_url: "http://127.0.0.1:1/000000000000/nowhere"}'
        if unsupported
        else ""
    )
    path.write_text(
        f"""\
state_dir: ./state
drain_timeout_seconds: 10
functions:
  steered: {{invoker: python, handler: "steered.py:handler", timeout: 10}}
destinations:
  failed: {{type: file, path: ./failed}}
{extra_destination}
mappings:
  - name: inbox
    function: steered
    source: {{type: files, path: ./inbox, stable_after_seconds: 0.1}}
    batch_size: 1
    maximum_retry_attempts: 1
    retry_backoff: {{initial_seconds: 0.01, max_seconds: 0.05}}
    destination_config: {{on_failure: {{destination: failed}}}}
"""
        + (NOWHERE if unsupported else "")
    )
    return path


@pytest.fixture
def space(tmp_path: Path) -> Iterator[RedriveSpace]:
    workspace = RedriveSpace(tmp_path)
    yield workspace
    for daemon in workspace.daemons:
        daemon.kill()


def fail_files(space: RedriveSpace, config: Path, names: list[str]) -> list[str]:
    """Drop `names` while the handler fails; return the failure ids once all are written."""
    space.set("fail", True)
    daemon = space.daemon(config).wait_ready(mappings=1)
    for name in names:
        (space.root / "inbox" / name).write_text(f"content of {name}")
    failure_file = space.root / "failed" / "inbox.jsonl"
    wait_for(lambda: len(read_jsonl(failure_file)) == len(names), timeout=60, what="failures")
    assert daemon.stop() == 0
    space.set("fail", False)
    space.forget_calls()
    listing = space.run("list", "inbox", config=config)
    assert listing.code == 0, listing.err
    assert listing.out.startswith(f"{len(names)} failure records in ")
    return listed_ids(listing.out)


def keys_of(event: dict[str, object]) -> list[str]:
    return [record["s3"]["object"]["key"] for record in event["Records"]]  # type: ignore[attr-defined,index]


def test_list_show_redrive_sends_the_original_events_once(space: RedriveSpace) -> None:
    config = folder_config(space)
    names = ["a.txt", "b.txt", "c.txt"]
    ids = fail_files(space, config, names)
    assert len(ids) == 3 and all(i.startswith("inbox/") for i in ids)
    failures = read_jsonl(space.root / "failed" / "inbox.jsonl")

    shown = space.run("show", ids[0], config=config)
    assert shown.code == 0, shown.err
    assert "state: failed" in shown.out
    document = json.loads(shown.out[shown.out.index("{") :])
    assert document == failures[0]

    dry = space.run("redrive", "inbox", "--all", "--dry-run", config=config)
    assert dry.code == 0 and dry.out.startswith("dry run: 3 failure records"), dry
    assert space.events() == []

    redriven = space.run("redrive", "inbox", "--all", config=config)
    assert redriven.code == 0, redriven.err
    assert "3 redriven, 0 failed again, 0 already redriven" in redriven.out
    # The function got each given-up event exactly as it was first delivered.
    assert space.events() == [failure["payload"] for failure in failures]
    assert sorted(key for event in space.events() for key in keys_of(event)) == names

    again = space.run("redrive", "inbox", "--all", config=config)
    assert again.code == 0 and "0 redriven, 0 failed again, 3 already redriven" in again.out
    assert len(space.events()) == 3
    listing = space.run("list", "inbox", config=config)
    assert listing.out.count(" redriven ") == 3, listing.out


def test_a_record_that_fails_again_stays_failed_after_the_mappings_retries(
    space: RedriveSpace,
) -> None:
    config = folder_config(space)
    ids = fail_files(space, config, ["a.txt", "b.txt"])
    space.set("fail", True)
    failed = space.run("redrive", "inbox", "--ids", ids[1], config=config)
    assert failed.code == 1, failed
    assert f"{ids[1]}: failed again" in failed.out
    second = keys_of(read_jsonl(space.root / "failed" / "inbox.jsonl")[1]["payload"])
    # maximum_retry_attempts: 1, so two invocations, of the second record's file only.
    assert [keys_of(event) for event in space.events()] == [second, second]
    assert "attempt 2 of 2: function error (Unhandled)" in failed.err

    space.set("fail", False)
    listing = space.run("list", "inbox", "--since", "1h", config=config)
    assert "failed again (redriven once)" in listing.out
    redriven = space.run("redrive", "inbox", "--all", config=config)
    assert redriven.code == 0 and "2 redriven" in redriven.out
    counts = Counter(key for event in space.events() for key in keys_of(event))
    assert counts == {name: 3 if [name] == second else 1 for name in ["a.txt", "b.txt"]}


def test_a_redrive_killed_mid_invocation_loses_nothing_and_repeats_only_that_record(
    space: RedriveSpace,
) -> None:
    config = folder_config(space)
    names = ["a.txt", "b.txt", "c.txt", "d.txt"]
    ids = fail_files(space, config, names)
    space.set("block", True)
    redrive = space.start("redrive", "inbox", "--all", config=config)
    try:
        wait_for(lambda: len(space.events()) == 1, timeout=60, what="the first redrive call")
        redrive.send_signal(signal.SIGKILL)
        assert redrive.wait(10) == -signal.SIGKILL
    finally:
        if redrive.poll() is None:
            redrive.kill()
    in_flight = space.run("list", "inbox", config=config)
    assert f"{ids[0]}  " in in_flight.out and "in flight when a redrive stopped" in in_flight.out

    space.set("block", False)
    finished = space.run("redrive", "inbox", "--all", config=config)
    assert finished.code == 0, finished.err
    assert "4 redriven, 0 failed again, 0 already redriven" in finished.out
    counts = Counter(key for event in space.events() for key in keys_of(event))
    first = keys_of(read_jsonl(space.root / "failed" / "inbox.jsonl")[0]["payload"])[0]
    assert counts == {name: 2 if name == first else 1 for name in names}

    nothing = space.run("redrive", "inbox", "--all", config=config)
    assert "0 redriven, 0 failed again, 4 already redriven" in nothing.out
    assert sum(Counter(k for e in space.events() for k in keys_of(e)).values()) == 5


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["list", "missing"], "error: no mapping named 'missing' (known: inbox, nowhere)"),
        (["list", "inbox", "--since", "yesterday"], "error: --since 'yesterday': give an ISO"),
        (["list", "inbox", "--since", "800000d"], "error: --since '800000d': that reaches"),
        (["redrive", "inbox", "--all", "--since", "99999999999d"], "error: --since '9999"),
        (["show", "inbox/0123456789ab"], "error: no failure record 'inbox/0123456789ab'"),
        (["show", "inbox"], "error: 'inbox': a failure id is MAPPING/ID"),
        (["redrive", "inbox"], "error: say which records: --ids ID... or --all"),
        (["redrive", "inbox", "--ids", "nope"], "error: no failure record 'nope'"),
        (["redrive", "nowhere", "--all"], "error: mapping 'nowhere': its destination 'metadata'"),
        (["redrive", "inbox", "--all", "--ids", "x"], "error: argument --ids: not allowed"),
    ],
)
def test_bad_input_is_one_line_and_exit_status_2(
    space: RedriveSpace, args: list[str], message: str
) -> None:
    finished = space.run(*args, config=folder_config(space, unsupported=True))
    assert finished.code == 2, finished
    assert finished.err.startswith(message), finished.err
    assert finished.err.count("\n") == 1


def test_a_record_time_without_a_zone_is_taken_as_utc(space: RedriveSpace) -> None:
    """Another writer may leave the zone out (a shared failure topic): --since still works."""
    config = folder_config(space)
    (space.root / "failed").mkdir()
    lines = [
        {"timestamp": "2024-01-01T00:00:00", "requestContext": {"condition": "Old"}},
        {"timestamp": "2024-01-02T00:00:00Z", "requestContext": {"condition": "New"}},
    ]
    (space.root / "failed" / "inbox.jsonl").write_text(
        "".join(json.dumps(line) + "\n" for line in lines)
    )
    both = space.run("list", "inbox", "--since", "2024-01-01T00:30:00+01:00", config=config)
    assert both.code == 0, both.err
    assert both.out.startswith("2 failure records in "), both.out
    later = space.run("list", "inbox", "--since", "2024-01-01T00:00:01Z", config=config)
    assert later.code == 0, later.err
    assert later.out.startswith("1 failure records in ") and "  New  " in later.out, later.out
