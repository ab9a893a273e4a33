"""Settings of the `runtime` invoker: a function package run in execution environments
behind the Lambda Runtime API (esm-reference.md 15), with Lambda's limits for memory,
timeout and /tmp, and its reserved variables."""

from __future__ import annotations

import os
import platform
import pwd
import re
import shlex
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from bridge.config.plugins import BuildContext, ConfigPath, FunctionConfig, PathSetting
from bridge.protocols import Invoker

# pythonX.Y, nodejsN.x, provided, provided.al2, provided.al2023 (Lambda's identifiers).
RUNTIME_PATTERN = re.compile(r"python3\.\d{1,2}|nodejs\d{1,2}\.x|provided(\.al2|\.al2023)?")

# Environments of one function without `reserved_concurrency`: as many as the machine can
# run side by side (two per CPU), never more than Lambda's account default of 1000.
DEFAULT_MAX_ENVIRONMENTS = min(1000, 2 * (os.cpu_count() or 1))

# Variables Lambda sets itself and refuses in a function's configuration.
RESERVED_VARIABLES = frozenset(
    {
        "_HANDLER",
        "_X_AMZN_TRACE_ID",
        "AWS_DEFAULT_REGION",
        "AWS_REGION",
        "AWS_EXECUTION_ENV",
        "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        "AWS_LAMBDA_FUNCTION_VERSION",
        "AWS_LAMBDA_INITIALIZATION_TYPE",
        "AWS_LAMBDA_LOG_GROUP_NAME",
        "AWS_LAMBDA_LOG_STREAM_NAME",
        "AWS_LAMBDA_RUNTIME_API",
        "LAMBDA_TASK_ROOT",
        "LAMBDA_RUNTIME_DIR",
    }
)


def host_architecture() -> str:
    """This machine's architecture as Lambda names it (x86_64 or arm64)."""
    machine = platform.machine().lower()
    return {"amd64": "x86_64", "aarch64": "arm64"}.get(machine, machine)


class RuntimeFunctionConfig(FunctionConfig):
    invoker: Literal["runtime"]
    # The pool makes at most `reserved_concurrency` environments and counts the throttles.
    limits_its_concurrency: ClassVar[bool] = True
    runtime: str = Field(
        description="Lambda's runtime identifier: pythonX.Y, nodejsN.x, provided.al2023, "
        "provided.al2 or provided"
    )
    handler: str = Field(
        "",
        description="As on Lambda (module.function); provided runtimes see it as _HANDLER",
    )
    code: PathSetting = Field(description="A .zip deployment package or a folder")
    layers: list[PathSetting] = Field(
        default_factory=list, description="Zips or folders, merged in order like /opt"
    )
    environment: dict[str, str] = Field(
        default_factory=dict,
        description="The function's variables; nothing else of the daemon's environment is "
        "passed (write `NAME: ${NAME}` to pass one)",
    )
    ephemeral_storage: int = Field(512, ge=512, le=10240, description="MB of /tmp (TMPDIR)")
    architecture: Literal["x86_64", "arm64"] | None = Field(
        None, description="x86_64 or arm64; must be the host's (default: the host's)"
    )
    provisioned_concurrency: int = Field(
        0, ge=0, le=10000, description="Environments initialised before the daemon is ready"
    )
    idle_timeout: float = Field(
        300.0, gt=0, le=86400, description="Seconds an unused environment is kept warm"
    )
    runtime_command: str | list[str] | None = Field(
        None,
        description="What starts the runtime instead of the default: the Python interpreter "
        "(python*), node (nodejs*) or the bootstrap command (provided*)",
    )
    user: str | None = Field(
        None, description="Run the environments as this user (the daemon must be root)"
    )

    @model_validator(mode="after")
    def _consistent(self) -> RuntimeFunctionConfig:
        if RUNTIME_PATTERN.fullmatch(self.runtime) is None:
            raise ValueError(
                f"runtime {self.runtime!r} is not one of pythonX.Y, nodejsN.x, "
                "provided.al2023, provided.al2, provided"
            )
        if self.provisioned_concurrency > self.max_environments:
            raise ValueError(
                f"provisioned_concurrency ({self.provisioned_concurrency}) is more than the "
                f"environments the function may have ({self.max_environments})"
            )
        if self.family != "provided" and not self.handler:
            raise ValueError(f"runtime {self.runtime} needs a handler (module.function)")
        return self

    @property
    def family(self) -> Literal["python", "nodejs", "provided"]:
        if self.runtime.startswith("python"):
            return "python"
        if self.runtime.startswith("nodejs"):
            return "nodejs"
        return "provided"

    @property
    def max_environments(self) -> int:
        return self.reserved_concurrency or DEFAULT_MAX_ENVIRONMENTS

    def command_override(self) -> list[str] | None:
        if self.runtime_command is None:
            return None
        if isinstance(self.runtime_command, str):
            return shlex.split(self.runtime_command)
        return list(self.runtime_command)

    def resolved(self, root: Path) -> tuple[Path, list[Path]]:
        """`code` and `layers`, relative ones taken from `root` (where the daemon runs)."""
        return root / self.code, [root / layer for layer in self.layers]

    def check(self, context: BuildContext) -> list[tuple[ConfigPath, str]]:
        from connectors.runtime.package import package_problems

        problems: list[tuple[ConfigPath, str]] = []
        host = host_architecture()
        if self.architecture is not None and self.architecture != host:
            problems.append(
                (("architecture",), f"is {self.architecture}, but this machine is {host}")
            )
        for name, value in self.environment.items():
            if not name or "=" in name or "\0" in name:
                problems.append((("environment", name), "is not a variable name"))
            elif name in RESERVED_VARIABLES:
                problems.append((("environment", name), "is reserved: Lambda sets it"))
            elif "\0" in value:
                problems.append((("environment", name), "cannot hold a NUL character"))
        try:
            command = self.command_override()
        except ValueError as exc:
            problems.append((("runtime_command",), f"cannot be split into arguments: {exc}"))
        else:
            if command is not None and not command:
                problems.append((("runtime_command",), "is empty"))
        if self.user is not None:
            try:
                pwd.getpwnam(self.user)
            except KeyError:
                problems.append((("user",), f"no user named {self.user!r} on this machine"))
        code, layers = self.resolved(context.handler_root)
        problems += package_problems(code, layers, self.runtime, self.handler)
        return problems

    def build(self, name: str, context: BuildContext) -> Invoker:
        from connectors.runtime.invoker import RuntimeInvoker

        return RuntimeInvoker(name, self, context)
