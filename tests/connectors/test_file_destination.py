"""The `file` destination's own layout: a folder it creates, one JSON Lines file per
mapping, FilesBatchInfo and the S3 event as payload. What every destination does:
tests/contract/test_destinations.py."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from aws_lambda_powertools.utilities.parser.models import S3Model

from bridge.config.plugins import BuildContext, Identity
from bridge.protocols import Destination
from bridge.records import FailureCondition, FailureRecord, InvokeResult, Record
from connectors.files.config import FileDestinationConfig
from connectors.files.events import FileChange, FileEventBuilder

FUNCTION_ARN = Identity().function_arn("handler")
TIMESTAMP = 1_700_000_000.5
MTIME_NS = 1_700_000_000_123_000_000
ISO_MILLIS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def run(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(main())


def events() -> FileEventBuilder:
    return FileEventBuilder(
        root="/srv/inbox", bucket="inbox", region="us-east-1", configuration_id="m"
    )


def file_records(builder: FileEventBuilder) -> list[Record]:
    return [
        builder.record(
            FileChange("a b.csv", size=3, mtime_ns=MTIME_NS, etag="0" * 32, changed_ns=MTIME_NS)
        ),
        builder.record(
            FileChange(
                "sub/c.csv",
                size=5,
                mtime_ns=MTIME_NS + 1_000_000,
                etag="1" * 32,
                changed_ns=MTIME_NS + 1_000_000,
            )
        ),
        builder.record(FileChange("gone.csv")),
    ]


def destination(tmp_path: Path, **settings: Any) -> Destination:
    config = FileDestinationConfig(type="file", path=tmp_path / "failed" / "nested", **settings)
    context = BuildContext(identity=Identity(), state_dir=tmp_path / "state", handler_root=tmp_path)
    return config.build("failed", context)


def exhausted(records: list[Record], mapping: str = "inbox") -> FailureRecord:
    return FailureRecord(
        mapping=mapping,
        condition=FailureCondition.RETRY_ATTEMPTS_EXHAUSTED,
        records=records,
        approximate_invoke_count=3,
        function_arn=FUNCTION_ARN,
        timestamp=TIMESTAMP,
        last_result=InvokeResult(
            payload=b'{"errorMessage": "boom"}',
            request_id="3b5b2c1e-0000-4000-8000-000000000001",
            function_error="Unhandled",
        ),
    )


def lines_of(path: Path) -> list[dict[str, Any]]:
    text = path.read_text()
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def test_files_destination_start_creates_the_folder(tmp_path: Path) -> None:
    """start() creates the destination folder, parents included."""

    async def main() -> None:
        target = destination(tmp_path)
        assert not (tmp_path / "failed").exists()
        await target.start()
        assert (tmp_path / "failed" / "nested").is_dir()
        await target.close()

    run(main)


def test_files_destination_line_holds_files_batch_info_and_the_s3_event(tmp_path: Path) -> None:
    """One send appends one newline-terminated line to <path>/<mapping>.jsonl whose batch
    info is the files source's FilesBatchInfo and whose `payload` is the discarded S3
    event (the invocation record around them: tests/contract/test_destinations.py)."""
    builder = events()
    records = file_records(builder)

    async def main() -> None:
        target = destination(tmp_path)
        await target.start()
        await target.send(exhausted(records), builder.formatter)
        await target.close()

    run(main)
    path = tmp_path / "failed" / "nested" / "inbox.jsonl"
    [line] = lines_of(path)
    info = line["FilesBatchInfo"]
    assert info["path"] == "/srv/inbox"
    assert info["bucket"] == "inbox"
    assert info["startSequencer"] == records[0].item_id
    assert info["endSequencer"] == records[-1].item_id
    assert info["batchSize"] == 3
    assert info["keys"] == ["a b.csv", "sub/c.csv", "gone.csv"]
    assert info["approximateArrivalOfFirstRecord"] == "2023-11-14T22:13:20.123Z"
    assert ISO_MILLIS.match(info["approximateArrivalOfLastRecord"])
    assert line["payload"] == {"Records": [record.payload for record in records]}
    S3Model.model_validate(line["payload"])


def test_files_destination_sends_append_lines_per_mapping_file(tmp_path: Path) -> None:
    """Sends append: two failures of one mapping are two lines of its file, in order, and
    another mapping writes its own file."""
    builder = events()
    first, second, third = file_records(builder)

    async def main() -> None:
        target = destination(tmp_path)
        await target.start()
        await target.send(exhausted([first]), builder.formatter)
        await target.send(exhausted([second, third]), builder.formatter)
        await target.send(exhausted([third], mapping="other"), builder.formatter)
        await target.close()

    run(main)
    folder = tmp_path / "failed" / "nested"
    lines = lines_of(folder / "inbox.jsonl")
    assert len(lines) == 2
    assert [line["FilesBatchInfo"]["keys"] for line in lines] == [
        ["a b.csv"],
        ["sub/c.csv", "gone.csv"],
    ]
    assert [len(line["payload"]["Records"]) for line in lines] == [1, 2]
    [other] = lines_of(folder / "other.jsonl")
    assert other["FilesBatchInfo"]["keys"] == ["gone.csv"]
    assert sorted(path.name for path in folder.iterdir()) == ["inbox.jsonl", "other.jsonl"]
