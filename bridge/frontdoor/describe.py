"""Configured functions as Lambda describes them: GetFunction, GetFunctionConfiguration
and ListFunctions' `FunctionConfiguration` (AWS's API reference).

Only what the config says is shown: `Environment.Variables` are the function's own
`environment:` values (a `runtime` function's), never the daemon's environment or any
credential. Fields Lambda always has but the bridge has no notion of are fixed: `State:
Active`, `LastUpdateStatus: Successful`, `PackageType: Zip` and a placeholder `Role`.
`LastModified` is when the daemon first served the function's (or version's) current
configuration (a reload that changes it moves it on).

Asked with a qualifier, they describe that version (an alias: the version it names) with
its own settings (bridge.config.versions): `Version` is the version, `FunctionArn` is qualified
as asked (`...:function:orders:live`).
"""

from __future__ import annotations

import hashlib
import platform
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bridge.asyncinvoke.settings import destination_arn
from bridge.config.model import BridgeConfig
from bridge.config.plugins import FunctionConfig
from bridge.config.versions import LATEST, version_config

# Lambda's maximum for ListFunctions' MaxItems, and its page size when none is given.
MAX_ITEMS = 10000
DEFAULT_ITEMS = 50


def lambda_timestamp(seconds: float) -> str:
    """Lambda's LastModified: `2026-12-06T20:42:12.000+0000`."""
    millis = int(seconds * 1000) % 1000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}+0000"


def _architecture(function: FunctionConfig) -> str:
    configured = getattr(function, "architecture", None)
    if isinstance(configured, str):
        return configured
    machine = platform.machine().lower()
    return {"amd64": "x86_64", "aarch64": "arm64"}.get(machine, machine)


def _runtime(function: FunctionConfig) -> str | None:
    runtime = getattr(function, "runtime", None)
    if isinstance(runtime, str):
        return runtime
    if function.invoker == "python":  # runs in the daemon's own interpreter
        return f"python{sys.version_info.major}.{sys.version_info.minor}"
    return None


def _package(function: FunctionConfig, handler_root: Path) -> Path | None:
    code = getattr(function, "code", None)
    return handler_root / code if isinstance(code, str | Path) else None


def _code_size(package: Path | None) -> int:
    """The package's bytes (a zip's, or a folder's files'); 0 when there is none."""
    try:
        if package is None:
            return 0
        if package.is_file():
            return package.stat().st_size
        return sum(path.stat().st_size for path in package.rglob("*") if path.is_file())
    except OSError:
        return 0


@dataclass
class _Seen:
    settings: str
    since: float


class Describer:
    """Describes the configured functions; remembers when each one's settings changed."""

    def __init__(self, handler_root: Path) -> None:
        self._handler_root = handler_root
        self._seen: dict[str, _Seen] = {}

    def _last_modified(self, name: str, function: FunctionConfig) -> tuple[str, str]:
        settings = function.model_dump_json(exclude={"versions", "aliases"})
        seen = self._seen.get(name)
        if seen is None or seen.settings != settings:
            seen = self._seen[name] = _Seen(settings, time.time())
        revision = hashlib.sha256(f"{seen.since}:{settings}".encode()).hexdigest()[:32]
        return lambda_timestamp(seen.since), str(uuid.UUID(hex=revision))

    def configuration(
        self, config: BridgeConfig, name: str, qualifier: str | None = None
    ) -> dict[str, Any]:
        """GetFunctionConfiguration's answer for a configured function (with `qualifier`:
        for that version, or the version that alias names)."""
        function = config.functions[name]
        identity = config.identity
        arn = function.arn or identity.function_arn(name)
        alias = function.aliases.get(qualifier or LATEST)
        version = alias.version if alias is not None else qualifier or LATEST
        if version != LATEST:
            function = version_config(function, version)
        last_modified, revision = self._last_modified(f"{name}:{version}", function)
        described: dict[str, Any] = {
            "FunctionName": name,
            "FunctionArn": f"{arn}:{qualifier}" if qualifier else arn,
        }
        runtime = _runtime(function)
        if runtime is not None:
            described["Runtime"] = runtime
        described |= {
            "Role": f"arn:aws:iam::{identity.account_id}:role/lambda-bridge",
            "Handler": getattr(function, "handler", None) or "",
            "CodeSize": _code_size(_package(function, self._handler_root)),
            "Description": "",
            "Timeout": _whole_seconds(function.timeout),
            "MemorySize": function.memory_size,
            "LastModified": last_modified,
            "Version": version,
            "TracingConfig": {"Mode": "PassThrough"},
            "RevisionId": revision,
            "State": "Active",
            "LastUpdateStatus": "Successful",
            "PackageType": "Zip",
            "Architectures": [_architecture(function)],
            "EphemeralStorage": {"Size": getattr(function, "ephemeral_storage", 512)},
            "LoggingConfig": {"LogFormat": "Text", "LogGroup": f"/aws/lambda/{name}"},
        }
        environment = getattr(function, "environment", None)
        if isinstance(environment, dict):
            described["Environment"] = {"Variables": dict(environment)}
        dead_letter = config.destinations.get(function.async_.dead_letter or "")
        if dead_letter is not None:
            described["DeadLetterConfig"] = {"TargetArn": destination_arn(config, dead_letter)}
        return described

    def function(
        self, config: BridgeConfig, name: str, qualifier: str | None = None
    ) -> dict[str, Any]:
        """GetFunction's answer: the configuration, where its code is, its concurrency."""
        configuration = self.configuration(config, name, qualifier)
        function = version_config(config.functions[name], configuration["Version"])
        package = _package(function, self._handler_root)
        code: dict[str, str] = {"RepositoryType": "S3"}
        if package is not None:
            # No presigned S3 URL: the package is a file or folder on the daemon's host.
            code["Location"] = package.absolute().as_uri()
        answer: dict[str, Any] = {
            "Configuration": configuration,
            "Code": code,
        }
        reserved = config.functions[name].reserved_concurrency
        if reserved:
            answer["Concurrency"] = {"ReservedConcurrentExecutions": reserved}
        return answer

    def page(
        self, config: BridgeConfig, marker: str | None, max_items: int, versions: bool = False
    ) -> dict[str, Any]:
        """ListFunctions' answer: functions in name order from `marker` (the name of the
        first one of the page, as NextMarker gave it); with `versions` (FunctionVersion=ALL)
        each function's versions follow it, marked `name:1`."""
        keys = [
            f"{name}:{version}"
            for name in sorted(config.functions)
            for version in [LATEST, *(_numbered(config.functions[name]) if versions else [])]
        ]
        if marker is not None:
            wanted = marker if ":" in marker else f"{marker}:{LATEST}"
            if wanted in keys:
                keys = keys[keys.index(wanted) :]
            else:  # its function is gone: from the names after it on
                name = wanted.partition(":")[0]
                keys = [key for key in keys if key.partition(":")[0] >= name]
        page = [key.partition(":")[::2] for key in keys[:max_items]]
        answer: dict[str, Any] = {
            "Functions": [
                self.configuration(config, name, None if version == LATEST else version)
                for name, version in page
            ]
        }
        if len(keys) > max_items:
            answer["NextMarker"] = keys[max_items].removesuffix(f":{LATEST}")
        # Names whose functions (or versions) were removed by a reload are forgotten.
        for gone in self._seen.keys() - self._current(config):
            self._seen.pop(gone, None)
        return answer

    @staticmethod
    def _current(config: BridgeConfig) -> set[str]:
        return {
            f"{name}:{version}"
            for name, function in config.functions.items()
            for version in [LATEST, *function.versions]
        }


def _numbered(function: FunctionConfig) -> list[str]:
    return sorted(function.versions, key=int)


def _whole_seconds(timeout: float) -> int:
    """Lambda's Timeout is whole seconds; a fractional one is shown rounded up."""
    return int(-(-timeout // 1))
