"""Settings of the `subprocess` invoker."""

from __future__ import annotations

import os
import shlex
import shutil
from pathlib import Path
from typing import Literal

from pydantic import Field

from bridge.config.plugins import BuildContext, ConfigPath, FunctionConfig, PathSetting
from bridge.protocols import Invoker


class SubprocessFunctionConfig(FunctionConfig):
    invoker: Literal["subprocess"]
    command: str | list[str] = Field(
        description="argv list, or a string split into arguments (no shell unless shell: true)"
    )
    shell: bool = Field(False, description="Run `command` (a string) through /bin/sh.")
    cwd: PathSetting | None = None
    environment: dict[str, str] = Field(
        default_factory=dict,
        description="Variables the command gets, besides PATH, LANG, LC_*, HOME, TZ, TMPDIR "
        "and Lambda's own (write `NAME: ${NAME}` to pass one of the daemon's).",
    )
    inherit_environment: bool = Field(
        False,
        description="Hand the command the daemon's whole environment (its tokens and keys "
        "included), as before; off by default.",
    )

    def argv(self) -> list[str]:
        if self.shell:
            text = self.command if isinstance(self.command, str) else shlex.join(self.command)
            return ["/bin/sh", "-c", text]
        return shlex.split(self.command) if isinstance(self.command, str) else list(self.command)

    def check(self, context: BuildContext) -> list[tuple[ConfigPath, str]]:
        return self.command_problems()

    def command_problems(self) -> list[tuple[ConfigPath, str]]:
        """What keeps the command from being started: the first problem of `command` or
        `cwd`, and every variable of `environment` the OS would refuse."""
        return self._environment_problems() + self._command_problems()[:1]

    def _environment_problems(self) -> list[tuple[ConfigPath, str]]:
        problems: list[tuple[ConfigPath, str]] = []
        for name, value in self.environment.items():
            if not name or "=" in name or "\0" in name:
                problems.append((("environment", name), "is not a variable name"))
            elif "\0" in value:
                problems.append((("environment", name), "cannot hold a NUL character"))
        return problems

    def _command_problems(self) -> list[tuple[ConfigPath, str]]:
        try:
            argv = self.argv()
        except ValueError as exc:
            return [(("command",), f"cannot be split into arguments: {exc}")]
        if not argv:
            return [(("command",), "is empty")]
        if any("\0" in argument for argument in argv):
            return [(("command",), "an argument cannot hold a NUL character")]
        if self.cwd is not None and not self.cwd.is_dir():
            return [(("cwd",), f"{str(self.cwd)!r} is not a folder")]
        executable = argv[0]
        if "/" in executable:
            base = self.cwd or Path.cwd()
            path = base / executable
            if not path.is_file():
                return [(("command",), f"{executable!r} does not exist")]
            if not os.access(path, os.X_OK):
                return [(("command",), f"{executable!r} is not executable")]
        elif shutil.which(executable) is None:
            return [(("command",), f"{executable!r} is not on PATH")]
        return []

    def build(self, name: str, context: BuildContext) -> Invoker:
        from connectors.subprocess.invoker import SubprocessInvoker

        return SubprocessInvoker(name, self, context)
