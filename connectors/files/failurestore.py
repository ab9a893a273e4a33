"""The `file` destination's failure records read back, for `lambda-bridge failures`.

Each line of `<path>/<mapping>.jsonl` is one failure record with the discarded event
under `payload` (connectors.files.destination), so a redrive invokes the function again
with exactly that event. A record's id is the start of the SHA-256 of its line: the file
is only appended to, so ids never change. The redrive ledger lives beside the file,
`<mapping>.jsonl.redrive` (no failure file ends that way).
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

from bridge.codec import JSONDecodeError, dumps, loads
from bridge.failurestores import Redeliver, RedriveError, StoredFailure

ID_LENGTH = 12


class FileFailureStore:
    def __init__(self, folder: Path, mapping: str) -> None:
        self.path = folder / f"{mapping}.jsonl"
        self.where = str(self.path)
        self.ledger_path = folder / f"{mapping}.jsonl.redrive"

    async def open(self) -> None:
        return None

    async def failures(self) -> list[StoredFailure]:
        return await asyncio.to_thread(self._read)

    def _read(self) -> list[StoredFailure]:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise RedriveError(f"cannot read {self.path}: {exc.strerror or exc}") from exc
        # A line still being written (no newline yet) is not a record yet.
        complete = data[: data.rfind(b"\n") + 1]
        found: list[StoredFailure] = []
        for number, line in enumerate(complete.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                document: Any = loads(line)
            except JSONDecodeError:
                raise RedriveError(f"{self.path}:{number}: not a JSON document") from None
            if not isinstance(document, dict):
                raise RedriveError(f"{self.path}:{number}: not a failure record")
            failure_id = hashlib.sha256(line).hexdigest()[:ID_LENGTH]
            found.append(StoredFailure(failure_id, document))
        return found

    async def redrive(self, failure: StoredFailure, redeliver: Redeliver) -> bool:
        payload = failure.document.get("payload")
        if payload is None:
            raise RedriveError(f"{failure.id} holds no records (no payload)")
        return await redeliver(dumps(payload))

    async def close(self) -> None:
        return None
