"""Settings of the `files` source and the `file` destination."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from bridge.config.plugins import (
    FILES,
    BuildContext,
    ConfigPath,
    DestinationConfig,
    Identity,
    PathSetting,
    SourceConfig,
    SourceContext,
)
from bridge.failurestores import FailureStore
from bridge.folders import folder_problem
from bridge.protocols import Destination, Source
from connectors.files.keys import shown_key

EventFilter = Literal["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]
ALL_EVENTS: tuple[EventFilter, ...] = ("s3:ObjectCreated:*", "s3:ObjectRemoved:*")


class FilesSourceConfig(SourceConfig):
    """A folder whose file changes become S3 event notification records.

    As S3 invokes Lambda (esm-reference.md 1.10, 12): each file's events in order, files
    independent of each other (up to `maximum_concurrency` batches at once, default 10),
    one record per event, a failing event retried twice and given up after six hours,
    to the on-failure destination if there is one. Every one of these can be set.
    """

    checkpoints_in_store = True
    type: Literal["files"]
    family = FILES
    path: PathSetting = Field(description="The folder to watch.")
    recursive: bool = True
    patterns: list[str] = Field(
        default_factory=list,
        description="Only keys matching one of these globs (`*` also matches `/`).",
    )
    ignore_patterns: list[str] = Field(
        default_factory=list, description="Keys matching one of these globs are ignored."
    )
    bucket: str | None = Field(
        None,
        min_length=1,
        max_length=255,
        description="Bucket name in events; default: the folder's name.",
    )
    events: list[EventFilter] = Field(default_factory=lambda: list(ALL_EVENTS), min_length=1)
    stable_after_seconds: float = Field(
        1.0, ge=0, le=3600, description="A file is reported once its mtime is this old."
    )
    observer: Literal["auto", "native", "polling"] = "auto"
    poll_interval_seconds: float = Field(
        1.0, gt=0, le=3600, description="For the polling observer."
    )
    rescan_interval_seconds: float = Field(
        300.0,
        ge=0,
        le=86400,
        description="Full rescans to catch missed notifications; 0 turns them off.",
    )
    create_path: bool = Field(True, description="Create the folder if it does not exist.")

    def source_id(self) -> str:
        # Shown as text: the real path of the folder may hold bytes that are not UTF-8.
        return f"files:{shown_key(str(self.path.resolve()))}"

    def check(self) -> list[tuple[ConfigPath, str]]:
        problem = folder_problem(self.path, create=self.create_path, write=False)
        if problem is None:
            return []
        if not self.create_path and problem.endswith("does not exist"):
            problem += " (set create_path: true to create it)"
        return [(("path",), problem)]

    def build(self, context: SourceContext) -> Source:
        from connectors.files.source import FilesSource

        return FilesSource(self, context)

    @classmethod
    def sample_event(cls, count: int, identity: Identity) -> bytes:
        from connectors.files.events import FileChange, FileEventBuilder

        builder = FileEventBuilder(
            root="/srv/inbox", bucket="inbox", region=identity.region, configuration_id="inbox"
        )
        records = []
        for index in range(count):
            content_md5 = f"{index:032x}"
            change = FileChange(
                key=f"reports/2026 report {index}.csv",
                size=1024 + index,
                mtime_ns=1_790_000_000_000_000_000 + index,
                etag=content_md5,
                changed_ns=1_790_000_000_000_000_000 + index,
            )
            records.append(builder.record(change))
        return builder.formatter.encode_event(records)


class FileDestinationConfig(DestinationConfig):
    """Failure records appended as JSON Lines to `<path>/<mapping>.jsonl`, with payload."""

    type: Literal["file"]
    path: PathSetting = Field(description="Folder of the failure files.")
    fsync: bool = Field(True, description="fsync after each record, so a crash cannot lose it.")

    def local_paths(self) -> list[Path]:
        return [self.path]

    def check(self) -> list[tuple[ConfigPath, str]]:
        problem = folder_problem(self.path)
        return [] if problem is None else [(("path",), problem)]

    def failure_store(self, destination: str, mapping: Any, context: BuildContext) -> FailureStore:
        from connectors.files.failurestore import FileFailureStore

        return FileFailureStore(self.path, mapping.name)

    def build(self, name: str, context: BuildContext) -> Destination:
        from connectors.files.destination import FileDestination

        return FileDestination(name, self)
