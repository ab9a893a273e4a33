"""The variables an execution environment starts with: Lambda's own and the function's
`environment:`, nothing of the daemon's (esm-reference.md 15)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from connectors.runtime.environment import Setup

SYSTEM_PATH = ("/usr/local/bin", "/usr/bin", "/bin")


def lambda_environment(setup: Setup, address: str, tmp: Path, log_stream: str) -> dict[str, str]:
    """Lambda's variables (and the function's own), nothing of the daemon's."""
    config = setup.config
    paths = setup.package.search_paths(config.runtime)
    # Lambda's order: the system's folders, then the layers' bin (/opt/bin).
    path = list(SYSTEM_PATH)
    path += [p for p in paths.get("PATH", "").split(os.pathsep) if p and p not in path]
    interpreter = Path(setup.bootstrap.argv[0])
    if interpreter.is_absolute() and str(interpreter.parent) not in path:
        path.insert(0, str(interpreter.parent))
    variables = {
        "LANG": "en_US.UTF-8",
        "TZ": ":UTC",
        "TMPDIR": str(tmp),
        **{key: value for key, value in paths.items() if value},
        "PATH": os.pathsep.join(path),
        **config.environment,
        "AWS_LAMBDA_RUNTIME_API": address,
        "_HANDLER": config.handler,
        "LAMBDA_TASK_ROOT": str(setup.package.task_root),
        "LAMBDA_RUNTIME_DIR": setup.bootstrap.runtime_dir or str(setup.package.task_root),
        "AWS_LAMBDA_FUNCTION_NAME": setup.name,
        "AWS_LAMBDA_FUNCTION_VERSION": setup.version,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(config.memory_size),
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{setup.name}",
        "AWS_LAMBDA_LOG_STREAM_NAME": log_stream,
        "AWS_REGION": setup.region,
        "AWS_DEFAULT_REGION": setup.region,
        "AWS_EXECUTION_ENV": f"AWS_Lambda_{config.runtime}",
    }
    if setup.bootstrap.pythonpath_tail:
        head = [p for p in variables.get("PYTHONPATH", "").split(os.pathsep) if p]
        variables["PYTHONPATH"] = os.pathsep.join(head + setup.bootstrap.pythonpath_tail)
    return variables
