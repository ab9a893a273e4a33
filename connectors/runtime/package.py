"""Deployment packages and layers of the `runtime` invoker.

The code (a .zip or a folder) becomes the environment's task root (LAMBDA_TASK_ROOT, its
working folder); the layers (up to 5, zips or folders) are merged in order into one tree that
stands for Lambda's /opt. Both are unpacked once into a content-addressed cache under the
daemon's state folder (`state_dir/runtime`) and reused while their content is the same.
Limits are Lambda's: at most 5 layers, 250 MB (262,144,000 bytes) for the code and its
layers unpacked.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import tempfile
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from connectors.runtime.layers import Scan, UnsafeSource, lay_into, scan_source

CODE_SIZE_UNZIPPED_MAX = 262_144_000  # Lambda's CodeSizeUnzipped: code and layers, unpacked
MAX_LAYERS = 5
CACHE_FORMAT = "1"  # part of every cache key: a change of the unpacking changes the keys

ProblemPath = tuple[str | int, ...]
_PYTHON = re.compile(r"python(\d+)\.(\d+)")
_NODE = re.compile(r"nodejs(\d+)\.x")
_NODE_SUFFIXES = ("", ".js", ".mjs", ".cjs")


class PackageError(ValueError):
    """The code or a layer cannot be prepared; `path` is its place in the configuration."""

    def __init__(self, path: ProblemPath, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


@dataclass(frozen=True)
class PreparedPackage:
    task_root: Path  # the unpacked code (LAMBDA_TASK_ROOT, the environment's cwd)
    opt_root: Path | None  # the layers merged in order (what Lambda mounts at /opt)

    def search_paths(self, runtime: str) -> dict[str, str]:
        """PYTHONPATH / NODE_PATH / LD_LIBRARY_PATH / PATH values as Lambda orders them for
        this runtime (task root first, then the layer folders), to merge into the env.

        PYTHONPATH and NODE_PATH are whole values. LD_LIBRARY_PATH and PATH hold only the
        package's folders, which Lambda puts after the system's (`/lib64:/usr/lib64:...`,
        `/usr/local/bin:/usr/bin/:/bin`): append them, as `merged_into` does."""
        task, opt = self.task_root, self.opt_root
        paths = {"LD_LIBRARY_PATH": _join([task, task / "lib"] + ([opt / "lib"] if opt else []))}
        if opt is not None:
            paths["PATH"] = str(opt / "bin")
        if python := _PYTHON.fullmatch(runtime):
            version = f"python{python[1]}.{python[2]}"
            site = [opt / "python/lib" / version / "site-packages", opt / "python"] if opt else []
            paths["PYTHONPATH"] = _join([task, *site])
        elif node := _NODE.fullmatch(runtime):
            # Lambda's NODE_PATH: /opt/nodejs/nodeNN/node_modules:/opt/nodejs/node_modules:
            # /var/runtime/node_modules:/var/runtime:/var/task
            versioned = f"nodejs/node{node[1]}/node_modules"
            modules = [opt / versioned, opt / "nodejs/node_modules"] if opt else []
            paths["NODE_PATH"] = _join([*modules, task])
        return paths

    def merged_into(self, runtime: str, environment: Mapping[str, str]) -> dict[str, str]:
        """`environment` with the search paths merged in: LD_LIBRARY_PATH and PATH appended
        to what it holds, PYTHONPATH and NODE_PATH set."""
        merged = dict(environment)
        for name, value in self.search_paths(runtime).items():
            before = merged.get(name, "") if name in ("LD_LIBRARY_PATH", "PATH") else ""
            merged[name] = f"{before}:{value}" if before else value
        return merged


def _join(paths: list[Path]) -> str:
    return os.pathsep.join(str(path) for path in paths)


def package_problems(
    code: Path, layers: list[Path], runtime: str, handler: str
) -> list[tuple[ProblemPath, str]]:
    """Offline: missing code, not a zip, unsafe zip members, missing handler file, missing layer."""
    problems: list[tuple[ProblemPath, str]] = []
    if len(layers) > MAX_LAYERS:
        problems.append((("layers",), f"has {len(layers)} layers; Lambda allows at most 5"))
    scans = _scans(code, layers, digest=False)
    for path, scan in scans:
        if scan.problems:
            more = f" (and {len(scan.problems) - 1} more)" if len(scan.problems) > 1 else ""
            problems.append((path, scan.problems[0] + more))
    if any(scan.problems for _, scan in scans):
        return problems
    total = sum(scan.size for _, scan in scans)
    if total > CODE_SIZE_UNZIPPED_MAX:
        where: ProblemPath = ("layers",) if layers else ("code",)
        problems.append((where, _too_large(total)))
    problem = handler_problem(scans[0][1], [scan for _, scan in scans[1:]], runtime, handler)
    if problem is not None:
        problems.append(problem)
    return problems


def handler_problem(
    code: Scan, layers: list[Scan], runtime: str, handler: str
) -> tuple[ProblemPath, str] | None:
    """What keeps the runtime from finding the function: for python a module file in the code
    or a layer's python folders, for nodejs a module file in the code, for provided runtimes
    an executable `bootstrap` at the top of the code or of a layer."""
    if runtime.startswith("provided"):
        return _bootstrap_problem(code, layers)
    python, node = _PYTHON.fullmatch(runtime), _NODE.fullmatch(runtime)
    if python is None and node is None:
        return None  # an unknown runtime is the configuration model's to report
    module, dot, function = handler.rpartition(".") if python else _node_split(handler)
    if not dot or not module or not function:
        return (("handler",), f"{handler!r} is not `module.function`")
    if python:
        parts = module.replace("/", ".").split(".")
        version = f"python{python[1]}.{python[2]}"
        roots = [(code, "")] + [
            (layer, prefix)
            for layer in layers
            for prefix in (f"python/lib/{version}/site-packages/", "python/")
        ]
        stem = "/".join(parts)
        if any(_python_module(scan, prefix + stem) for scan, prefix in roots):
            return None
        where = f"{stem}.py nor {stem}/__init__.py is in the code or a layer's python folder"
        return (("handler",), f"no module for {handler!r}: neither {where}")
    if any(code.modes.get(module + suffix, 0) for suffix in _NODE_SUFFIXES):
        return None
    tried = ", ".join(module + suffix for suffix in _NODE_SUFFIXES[1:])
    return (("handler",), f"no module for {handler!r}: none of {tried} is in the code")


def _node_split(handler: str) -> tuple[str, str, str]:
    # As aws-lambda-ric: the folder, then the module up to the first dot, then the function.
    folder, _, base = handler.rpartition("/")
    module, dot, function = base.partition(".")
    return (f"{folder}/{module}" if folder else module), dot, function


def _python_module(scan: Scan, stem: str) -> bool:
    source = scan.modes.get(stem + ".py", 0)
    if (source and not stat.S_ISDIR(source)) or stem + "/__init__.py" in scan.modes:
        return True  # a file or a symlink (one that leads outside is refused anyway)
    folder, _, name = stem.rpartition("/")
    prefix = f"{folder}/{name}." if folder else f"{name}."
    # compiled modules: name.pyc, name.so, name.cpython-311-x86_64-linux-gnu.so
    return any(
        path.startswith(prefix)
        and "/" not in path[len(prefix) :]
        and path.endswith((".so", ".pyc"))
        for path in scan.modes
    )


def _bootstrap_problem(code: Scan, layers: list[Scan]) -> tuple[ProblemPath, str] | None:
    for scan in [code, *layers]:
        mode = scan.modes.get("bootstrap")
        if mode is None:
            continue
        if stat.S_ISLNK(mode) or (stat.S_ISREG(mode) and mode & 0o111):
            return None
        return (("code",), "`bootstrap` is not executable (chmod +x it before zipping)")
    return (("code",), "a provided runtime needs an executable `bootstrap` in the code or a layer")


def _scans(code: Path, layers: list[Path], *, digest: bool) -> list[tuple[ProblemPath, Scan]]:
    scans: list[tuple[ProblemPath, Scan]] = [(("code",), scan_source(code, digest=digest))]
    scans += [(("layers", i), scan_source(layer, digest=digest)) for i, layer in enumerate(layers)]
    return scans


def _too_large(total: int) -> str:
    return (
        f"unpacked, the code and its layers take {total / 1_048_576:.1f} MB; "
        f"Lambda allows {CODE_SIZE_UNZIPPED_MAX // 1_048_576} MB"
    )


def prepare_package(code: Path, layers: list[Path], cache_root: Path) -> PreparedPackage:
    """Unpack (zip) or take (folder) code and layers into a content-addressed cache under
    cache_root (state_dir/runtime), safely (no zip-slip, no symlink escapes), reusing an
    earlier unpack of the same content. Blocking: callers run it in a thread.

    Raises PackageError (a ValueError) naming the setting at fault."""
    if len(layers) > MAX_LAYERS:
        raise PackageError(("layers",), f"has {len(layers)} layers; Lambda allows at most 5")
    scans = _scans(code, layers, digest=True)
    for path, scan in scans:
        if scan.problems:
            raise PackageError(path, scan.problems[0])
    total = sum(scan.size for _, scan in scans)
    if total > CODE_SIZE_UNZIPPED_MAX:
        raise PackageError(("layers",) if layers else ("code",), _too_large(total))
    budget = CODE_SIZE_UNZIPPED_MAX - total  # headroom for what grew since the scan

    def lay(sources: list[tuple[ProblemPath, Path, Scan]]) -> Callable[[Path], None]:
        def build(root: Path) -> None:
            for where, source, scan in sources:
                try:
                    lay_into(source, scan, root, scan.size + budget)
                except UnsafeSource as exc:
                    raise PackageError(where, str(exc)) from None
                except (OSError, zipfile.BadZipFile) as exc:
                    raise PackageError(where, f"cannot be unpacked: {exc}") from None

        return build

    sources = [
        (path, source, scan) for (path, scan), source in zip(scans, [code, *layers], strict=True)
    ]
    task_root = _cached(cache_root / "code", _key([scans[0][1]]), lay(sources[:1]))
    opt_root = None
    if layers:
        opt_root = _cached(cache_root / "opt", _key([s for _, s in scans[1:]]), lay(sources[1:]))
    return PreparedPackage(task_root, opt_root)


def _key(scans: list[Scan]) -> str:
    text = "\n".join([CACHE_FORMAT] + [f"{scan.kind}:{scan.digest}" for scan in scans])
    return hashlib.sha256(text.encode()).hexdigest()


def _cached(parent: Path, key: str, build: Callable[[Path], None]) -> Path:
    """The folder `parent/key`, built by `build` in a temporary folder beside it and renamed
    into place (atomic), unless an earlier call already did."""
    final = parent / key
    if final.is_dir():
        return final
    parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".unpacking-", dir=parent))
    try:
        build(scratch)
        scratch.chmod(0o755)
        try:
            scratch.rename(final)
        except OSError:
            if not final.is_dir():  # not another thread or process that won the race
                raise
    finally:
        if scratch.exists():
            shutil.rmtree(scratch, ignore_errors=True)
    return final
