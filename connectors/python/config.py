"""Settings of the `python` invoker."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field

from bridge.config.plugins import BuildContext, ConfigPath, FunctionConfig
from bridge.protocols import Invoker


@dataclass(frozen=True)
class HandlerSpec:
    """Where a handler lives: a file path or an importable module, and the function name."""

    module: str
    function: str
    is_file: bool

    @classmethod
    def parse(cls, text: str) -> HandlerSpec:
        """`path/to/file.py:func`, `package.module:func`, or Lambda's own `module.func`."""
        if ":" in text:
            module, _, function = text.rpartition(":")
        else:
            module, _, function = text.rpartition(".")
        if not module or not function:
            expected = "path/to/file.py:function or package.module:function"
            raise ValueError(f"handler {text!r} should look like {expected}")
        is_file = module.endswith(".py") or "/" in module or "\\" in module
        return cls(module, function, is_file)

    def file_path(self, root: Path) -> Path:
        path = Path(self.module)
        return path if path.is_absolute() else root / path


class PythonFunctionConfig(FunctionConfig):
    invoker: Literal["python"]
    in_process = True
    handler: str = Field(
        description="path/to/file.py:function, package.module:function or module.function"
    )

    def check(self, context: BuildContext) -> list[tuple[ConfigPath, str]]:
        try:
            spec = HandlerSpec.parse(self.handler)
        except ValueError as exc:
            return [(("handler",), str(exc))]
        if spec.is_file:
            path = spec.file_path(context.handler_root)
            if path.is_dir():
                return [(("handler",), f"handler file {str(path)!r} is a folder")]
            if not path.is_file():
                return [(("handler",), f"handler file {str(path)!r} does not exist")]
        elif (
            importlib.util.find_spec(spec.module.partition(".")[0]) is None
            and not (context.handler_root / f"{spec.module.replace('.', '/')}.py").is_file()
        ):
            return [(("handler",), f"module {spec.module!r} cannot be found")]
        return []

    def build(self, name: str, context: BuildContext) -> Invoker:
        from connectors.python.invoker import PythonInvoker

        return PythonInvoker(name, self, context)
