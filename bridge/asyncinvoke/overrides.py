"""Event invoke configs made through the API, kept in `state_dir/async/event-invoke-configs.json`
so that they survive a restart (written whole to a new file, then renamed over the old).

Settings live per function and qualifier, as on AWS (esm-reference.md 12: Put replaces,
Update merges); each is what the API took: `MaximumRetryAttempts`,
`MaximumEventAgeInSeconds`, `OnSuccess` / `OnFailure` (destination ARNs or names) and
`LastModified` (epoch seconds).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from bridge.codec import dumps, loads
from bridge.folders import make_private_folder

FILE_NAME = "event-invoke-configs.json"


class EventInvokeConfigs:
    def __init__(self, folder: Path) -> None:
        self.path = folder / FILE_NAME
        self._configs: dict[str, dict[str, dict[str, Any]]] = {}
        self._lock = asyncio.Lock()

    async def load(self) -> None:
        def read() -> dict[str, dict[str, dict[str, Any]]]:
            try:
                data = self.path.read_bytes()
            except FileNotFoundError:
                return {}
            kept: dict[str, dict[str, dict[str, Any]]] = loads(data)
            return kept

        self._configs = await asyncio.to_thread(read)

    def get(self, function: str, qualifier: str) -> dict[str, Any] | None:
        return self._configs.get(function, {}).get(qualifier)

    def of_function(self, function: str) -> dict[str, dict[str, Any]]:
        return dict(self._configs.get(function, {}))

    async def put(self, function: str, qualifier: str, config: dict[str, Any]) -> None:
        async with self._lock:
            self._configs.setdefault(function, {})[qualifier] = config
            await self._save()

    async def delete(self, function: str, qualifier: str) -> bool:
        async with self._lock:
            found = self._configs.get(function, {}).pop(qualifier, None)
            if not self._configs.get(function):
                self._configs.pop(function, None)
            if found is not None:
                await self._save()
            return found is not None

    async def _save(self) -> None:
        data = dumps(self._configs)

        def write() -> None:
            make_private_folder(self.path.parent)
            temporary = self.path.with_suffix(".tmp")
            descriptor = os.open(
                temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600
            )
            try:
                os.write(descriptor, data)
                os.fsync(descriptor)
            finally:
                os.close(descriptor)
            os.replace(temporary, self.path)

        await asyncio.to_thread(write)
