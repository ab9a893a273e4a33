"""Event source mappings made or changed through Lambda's API (esm-reference.md 16), kept
beside the config file and applied over it.

The config file stays the source of truth for what it declares. An API change of one of
its mappings is an overlay of settings on that entry, stored with a fingerprint of the
entry as the file had it then; when a reload (or a restart) finds the file's entry
changed, the file wins: the overlay is dropped, and that is logged. Mappings made by
CreateEventSourceMapping are named by their UUID and kept whole. Both are written to
`<state_dir>/event-source-mappings.json` (atomically, readable by the owner only) and
applied again when the daemon starts.

Every mapping has a stable UUID: a config mapping's is derived from its name (uuid5 under
a fixed namespace), so it is the same after every restart; an API-made mapping's is
random and kept.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import hashlib
import os
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, get_args

import structlog
from pydantic import ValidationError

from bridge.codec import JSONDecodeError, dumps, loads
from bridge.config.checks import check_config
from bridge.config.model import BridgeConfig, LoadedConfig, MappingConfig, config_model
from bridge.errors import BridgeError

OVERLAY_FILE = "event-source-mappings.json"
_NAMESPACE = uuid.UUID("4f1c7a52-2b0e-5d5c-9a64-6c616d626461")
_VERSION = 1

Problems = list[tuple[tuple[str | int, ...], str]]
T = TypeVar("T")


def config_uuid(name: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, name))


def fingerprint(mapping: MappingConfig) -> str:
    """What the file said of a mapping. Secrets are masked in this dump, so a rotated
    password alone keeps the overlay; it still reaches the mapping, which is rebuilt."""
    return hashlib.sha256(mapping.model_dump_json().encode()).hexdigest()


class MappingInvalid(Exception):
    """Settings that do not make a valid mapping: (path below the mapping, message)."""

    def __init__(self, problems: Problems) -> None:
        super().__init__("; ".join(message for _, message in problems))
        self.problems = problems


def _mapping_model() -> type[MappingConfig]:
    model: type[MappingConfig] = get_args(config_model().model_fields["mappings"].annotation)[0]
    return model


def merged(base: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    """`base` with `settings` over it; a None setting removes the key (its default)."""
    result = dict(base)
    for key, value in settings.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = value
    return result


def entry_of(mapping: MappingConfig) -> dict[str, Any]:
    """A mapping as the settings it was given (what is unset stays unset)."""
    return mapping.model_dump(mode="python", exclude_unset=True)


def build_mapping(config: BridgeConfig, settings: dict[str, Any]) -> MappingConfig:
    """Validate a mapping with the config file's models and checks (bridge.config.checks)
    in the context of `config`; MappingInvalid otherwise."""
    try:
        mapping = _mapping_model().model_validate(settings)
    except ValidationError as exc:
        raise MappingInvalid(
            [(tuple(error["loc"]), error["msg"]) for error in exc.errors()]
        ) from None
    alone = config.model_copy(update={"mappings": [mapping]})
    found, _ = check_config(LoadedConfig(alone, "api", Path.cwd()))
    problems: Problems = [
        (path[2:], message) for path, message in found if path[:2] == ("mappings", 0)
    ]
    if problems:
        raise MappingInvalid(problems)
    return mapping


@dataclass
class Created:
    settings: dict[str, Any]  # the whole config entry, `name` (its UUID) included
    last_modified: float


@dataclass
class Changed:
    fingerprint: str  # of the file's entry the settings were made over
    settings: dict[str, Any]  # config keys; None: back to the default
    last_modified: float


@dataclass
class Note:
    event: str
    mapping: str
    reason: str


@dataclass
class StoredChanges:
    created: dict[str, Created] = field(default_factory=dict)
    changed: dict[str, Changed] = field(default_factory=dict)

    @classmethod
    def load(cls, state_dir: Path) -> StoredChanges:
        path = state_dir / OVERLAY_FILE
        try:
            document = loads(path.read_bytes())
        except FileNotFoundError:
            return cls()
        except (OSError, JSONDecodeError, UnicodeDecodeError) as exc:
            raise BridgeError(f"{path}: cannot read the API's mappings: {exc}") from None
        try:
            return cls(
                created={key: Created(**value) for key, value in document["created"].items()},
                changed={key: Changed(**value) for key, value in document["changed"].items()},
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise BridgeError(f"{path}: not a file of the API's mappings ({exc})") from None

    def save(self, state_dir: Path) -> None:
        """Write the file whole (a crash leaves the old one or the new one), owner-only."""
        document = {
            "version": _VERSION,
            "created": {key: dataclasses.asdict(value) for key, value in self.created.items()},
            "changed": {key: dataclasses.asdict(value) for key, value in self.changed.items()},
        }
        descriptor, temporary = tempfile.mkstemp(dir=state_dir, prefix=".esm-", suffix=".tmp")
        try:
            with os.fdopen(descriptor, "wb") as file:
                file.write(dumps(document))
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, state_dir / OVERLAY_FILE)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    def copy(self) -> StoredChanges:
        return copy.deepcopy(self)

    def uuid_of(self, name: str) -> str:
        return name if name in self.created else config_uuid(name)

    def last_modified(self, name: str) -> float | None:
        entry = self.created.get(name) or self.changed.get(name)
        return entry.last_modified if entry is not None else None

    def effective(self, file: LoadedConfig) -> tuple[LoadedConfig, list[Note]]:
        """The file's config with the overlay applied. Changes of entries the file has
        changed since are dropped (the file wins); entries that no longer fit the file
        (their function removed) are left out of this run but kept."""
        config, notes = file.config, []
        mappings: list[MappingConfig] = []
        for declared in config.mappings:
            change, mapping = self.changed.get(declared.name), declared
            if change is not None and change.fingerprint != fingerprint(declared):
                del self.changed[declared.name]
                notes.append(Note("api.change_dropped", declared.name, "the config file changed"))
            elif change is not None:
                try:
                    mapping = build_mapping(config, merged(entry_of(declared), change.settings))
                except MappingInvalid as exc:
                    notes.append(Note("api.change_skipped", declared.name, str(exc)))
            mappings.append(mapping)
        names = {mapping.name for mapping in mappings}
        for name, created in self.created.items():
            if name in names:
                notes.append(Note("api.mapping_skipped", name, "the config file names one so"))
                continue
            try:
                mappings.append(build_mapping(config, created.settings))
            except MappingInvalid as exc:
                notes.append(Note("api.mapping_skipped", name, str(exc)))
        effective = config.model_copy(update={"mappings": mappings})
        return dataclasses.replace(file, config=effective), notes


class MappingOverlay:
    """The daemon's overlay and the config file under it; changes go through the daemon's
    reload path (`apply`), under its reload lock, one at a time."""

    def __init__(
        self,
        file: LoadedConfig,
        apply: Callable[[LoadedConfig], Awaitable[Any]],
        lock: asyncio.Lock,
        stopping: asyncio.Event,
    ) -> None:
        self.file = file
        self.stored = StoredChanges()
        self._apply, self._lock, self._stopping = apply, lock, stopping
        self._started = False
        self._log = structlog.get_logger("bridge.api")

    async def open(self) -> LoadedConfig:
        """Read the stored overlay; the effective config to start with."""
        state_dir = self.file.config.state_dir
        self.stored = await asyncio.to_thread(StoredChanges.load, state_dir)
        loaded = await self.reloaded(self.file)
        self._started = True
        return loaded

    async def reloaded(self, file: LoadedConfig) -> LoadedConfig:
        """The effective config over a newly read file (start and reload)."""
        stored = self.stored.copy()
        loaded, notes = await asyncio.to_thread(stored.effective, file)
        for note in notes:
            self._log.warning(note.event, mapping=note.mapping, reason=note.reason)
        if stored.changed != self.stored.changed:
            await asyncio.to_thread(stored.save, file.config.state_dir)
        self.stored, self.file = stored, file
        return loaded

    async def edit(self, change: Callable[[StoredChanges, LoadedConfig], T]) -> T:
        """Run `change` (validating, raising on bad input) on a copy of the stored, keep
        the result on disk, then apply it as a reload of the mappings it changes."""
        async with self._lock:
            if self._stopping.is_set() or not self._started:
                raise BridgeError("the daemon is starting or stopping")
            stored = self.stored.copy()
            result = await asyncio.to_thread(change, stored, self.file)
            loaded, _ = await asyncio.to_thread(stored.effective, self.file)
            await asyncio.to_thread(stored.save, self.file.config.state_dir)
            self.stored = stored
            await self._apply(loaded)
            return result


def now() -> float:
    return round(time.time(), 3)
