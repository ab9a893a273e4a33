"""How each runtime family starts in an environment: the command and the variables it
needs besides Lambda's own (the runtime interface clients speak esm-reference.md 15).

- `python*`: `<interpreter> -m awslambdaric <handler>`, the official runtime interface
  client. The interpreter is the one of the runtime's version found on the machine
  (`runtime_command` overrides it). awslambdaric is made importable without installing
  it into that interpreter: the daemon's own copy (extra `[runtime]`) goes LAST on
  PYTHONPATH, after the task root and the layers, when its compiled part fits the
  interpreter (same Python version); otherwise the interpreter must have its own.
- `nodejs*`: `node <aws-lambda-ric> <handler>`, the official client (npm package
  aws-lambda-ric: 3.x for Node.js 20, 4.x needs 22) found in the package's node_modules,
  a layer's nodejs/node_modules, or the global one (`npm root -g`, so NPM_CONFIG_PREFIX
  counts).
- `provided*`: the package's `bootstrap` executable, else the layers' (/opt/bootstrap).

A runtime that is not installed is an InvokerStartError naming what to install.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from bridge.errors import InvokerStartError
from connectors.runtime.config import RuntimeFunctionConfig
from connectors.runtime.package import PreparedPackage


@dataclass(frozen=True)
class Bootstrap:
    argv: list[str]
    # Appended to the package's search paths (e.g. the runtime client's folder).
    pythonpath_tail: list[str] = field(default_factory=list)
    runtime_dir: str = ""


async def bootstrap_for(
    name: str, config: RuntimeFunctionConfig, package: PreparedPackage
) -> Bootstrap:
    """The command that starts `config`'s runtime; InvokerStartError if it cannot be had."""
    if config.family == "python":
        return await _python(name, config)
    if config.family == "nodejs":
        return await _nodejs(name, config, package)
    return _provided(name, config, package)


async def _python(name: str, config: RuntimeFunctionConfig) -> Bootstrap:
    version = config.runtime.removeprefix("python")
    override = config.command_override()
    interpreter = override or _find_python(version)
    if interpreter is None:
        raise InvokerStartError(
            f"function {name!r}: runtime {config.runtime} needs a python{version} "
            f"interpreter on PATH (install Python {version}, or set runtime_command)"
        )
    argv = [*interpreter, "-m", "awslambdaric", config.handler]
    ours = _awslambdaric_folder()
    theirs = await _interpreter_facts(interpreter)
    if theirs is None:
        raise InvokerStartError(f"function {name!r}: cannot run {interpreter[0]!r}")
    their_version, has_own = theirs
    daemon_version = f"{sys.version_info.major}.{sys.version_info.minor}"
    if ours is not None and their_version == daemon_version:
        return Bootstrap(argv, [ours], ours)
    if has_own:
        return Bootstrap(argv)
    if ours is None:
        raise InvokerStartError(
            f"function {name!r}: runtime {config.runtime} needs the runtime interface "
            "client: pip install 'lambda-bridge[runtime]'"
        )
    raise InvokerStartError(
        f"function {name!r}: the daemon's awslambdaric is built for Python {daemon_version}, "
        f"the interpreter is Python {their_version}: run the daemon with Python "
        f"{their_version}, or install it there: python{their_version} -m pip install awslambdaric"
    )


def _find_python(version: str) -> list[str] | None:
    if f"{sys.version_info.major}.{sys.version_info.minor}" == version:
        # The daemon's own base interpreter (not its virtualenv: its packages stay out).
        base = getattr(sys, "_base_executable", sys.executable)
        return [base if os.access(base, os.X_OK) else sys.executable]
    found = shutil.which(f"python{version}")
    if found is None:
        return None
    if "/shims/" in found:  # pyenv: the shim needs pyenv's variables; take the real one
        root = Path(found).parent.parent / "versions"
        for candidate in sorted(root.glob(f"{version}*/bin/python{version}"), reverse=True):
            return [str(candidate)]
    return [found]


def _awslambdaric_folder() -> str | None:
    """The site-packages folder holding the daemon's awslambdaric (and its C part)."""
    spec = importlib.util.find_spec("awslambdaric")
    if spec is None or spec.origin is None:
        return None
    return str(Path(spec.origin).parent.parent)


async def _interpreter_facts(interpreter: list[str]) -> tuple[str, bool] | None:
    """The interpreter's X.Y version, and whether it can import awslambdaric itself."""
    script = (
        "import sys, importlib.util as u;"
        "print(f'{sys.version_info[0]}.{sys.version_info[1]}',"
        " u.find_spec('awslambdaric') is not None)"
    )
    try:
        process = await asyncio.create_subprocess_exec(
            *interpreter,
            "-c",
            script,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        )
        out, _ = await process.communicate()
    except OSError:
        return None
    parts = out.decode(errors="replace").split()
    if process.returncode != 0 or len(parts) != 2:
        return None
    return parts[0], parts[1] == "True"


async def _nodejs(name: str, config: RuntimeFunctionConfig, package: PreparedPackage) -> Bootstrap:
    node = config.command_override() or ([found] if (found := shutil.which("node")) else None)
    if node is None:
        raise InvokerStartError(
            f"function {name!r}: runtime {config.runtime} needs Node.js: install node "
            "(and aws-lambda-ric: npm install -g aws-lambda-ric), or set runtime_command"
        )
    major = config.runtime.removeprefix("nodejs").removesuffix(".x")
    candidates = [package.task_root / "node_modules"]
    if package.opt_root is not None:
        candidates.append(package.opt_root / "nodejs" / f"node{major}" / "node_modules")
        candidates.append(package.opt_root / "nodejs" / "node_modules")
    global_root = await _npm_global_root()
    if global_root is not None:
        candidates.append(global_root)
    candidates.append(Path("/usr/local/lib/node_modules"))
    candidates.append(Path("/usr/lib/node_modules"))
    for folder in candidates:
        # aws-lambda-ric 3.x has its entry point in bin/, 4.x at the top.
        for entry in ("bin/index.mjs", "index.mjs"):
            client = folder / "aws-lambda-ric" / entry
            if client.is_file():
                return Bootstrap(
                    [*node, str(client), config.handler], runtime_dir=str(client.parent)
                )
    raise InvokerStartError(
        f"function {name!r}: runtime {config.runtime} needs the Node.js runtime interface "
        "client: npm install -g aws-lambda-ric (or into the package's node_modules or a "
        "layer's nodejs/node_modules; see the README for what its native build needs)"
    )


async def _npm_global_root() -> Path | None:
    """`npm root -g`: where `npm install -g` puts packages (None without npm)."""
    npm = shutil.which("npm")
    if npm is None:
        return None
    try:
        process = await asyncio.create_subprocess_exec(
            npm,
            "root",
            "-g",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            stdin=asyncio.subprocess.DEVNULL,
        )
    except OSError:
        return None
    try:
        out, _ = await asyncio.wait_for(process.communicate(), 30)
    except TimeoutError:
        process.kill()
        await process.wait()
        return None
    root = out.decode(errors="replace").strip()
    return Path(root) if process.returncode == 0 and root else None


def _provided(name: str, config: RuntimeFunctionConfig, package: PreparedPackage) -> Bootstrap:
    override = config.command_override()
    if override:
        return Bootstrap(override, runtime_dir=str(package.task_root))
    candidates = [package.task_root / "bootstrap"]
    if package.opt_root is not None:
        candidates.append(package.opt_root / "bootstrap")
    for candidate in candidates:
        if candidate.is_file():
            if not os.access(candidate, os.X_OK):
                raise InvokerStartError(f"function {name!r}: {candidate} is not executable")
            return Bootstrap([str(candidate)], runtime_dir=str(candidate.parent))
    raise InvokerStartError(
        f"function {name!r}: runtime {config.runtime} runs an executable named bootstrap "
        "at the top of the package or of a layer; there is none"
    )
