"""Function packages and layers (minimal stand-in: folders only, no zips).

This module's interface is shared with the package helper; its full version (zips, a
content-addressed cache, safe unpacking) replaces this one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

SYSTEM_PATH = ("/usr/local/bin", "/usr/bin", "/bin")
SYSTEM_LIBRARIES = ("/lib64", "/usr/lib64")


@dataclass(frozen=True)
class PreparedPackage:
    task_root: Path  # the unpacked code (LAMBDA_TASK_ROOT, the environment's cwd)
    opt_root: Path | None  # the layers merged in order (what Lambda mounts at /opt)

    def search_paths(self, runtime: str) -> dict[str, str]:
        """PYTHONPATH / NODE_PATH / LD_LIBRARY_PATH / PATH values as Lambda orders them for
        this runtime (task root first, then the layer folders), to merge into the env."""
        task = str(self.task_root)
        opt = [str(self.opt_root)] if self.opt_root is not None else []
        paths: dict[str, str] = {
            "PATH": os.pathsep.join([*SYSTEM_PATH, *(f"{o}/bin" for o in opt)]),
            "LD_LIBRARY_PATH": os.pathsep.join(
                [*SYSTEM_LIBRARIES, task, f"{task}/lib", *(f"{o}/lib" for o in opt)]
            ),
        }
        if runtime.startswith("python"):
            version = runtime.removeprefix("python")
            paths["PYTHONPATH"] = os.pathsep.join(
                [
                    task,
                    *(f"{o}/python/lib/python{version}/site-packages" for o in opt),
                    *(f"{o}/python" for o in opt),
                ]
            )
        elif runtime.startswith("nodejs"):
            major = runtime.removeprefix("nodejs").removesuffix(".x")
            paths["NODE_PATH"] = os.pathsep.join(
                [
                    *(f"{o}/nodejs/node{major}/node_modules" for o in opt),
                    *(f"{o}/nodejs/node_modules" for o in opt),
                    task,
                ]
            )
        return paths


def package_problems(
    code: Path, layers: list[Path], runtime: str, handler: str
) -> list[tuple[tuple[str | int, ...], str]]:
    """Offline: missing code, missing layer (folders only in this stand-in)."""
    problems: list[tuple[tuple[str | int, ...], str]] = []
    if not code.is_dir():
        problems.append((("code",), f"{str(code)!r} is not a folder"))
    for index, layer in enumerate(layers):
        if not layer.is_dir():
            problems.append((("layers", index), f"{str(layer)!r} is not a folder"))
    return problems


def prepare_package(code: Path, layers: list[Path], cache_root: Path) -> PreparedPackage:
    """Folders are taken as they are; several layers are not merged in this stand-in (the
    first one is /opt). Blocking: callers run it in a thread."""
    return PreparedPackage(code.resolve(), layers[0].resolve() if layers else None)
