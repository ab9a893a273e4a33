"""Each `python` function imports from its own folder, as each Lambda function has its own
task root: one function's modules never answer another's imports, and a handler folder
never stands in for a library the daemon imports."""

from __future__ import annotations

import asyncio
import json
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bridge.config.plugins import BuildContext, Identity
from connectors.python.config import PythonFunctionConfig
from connectors.python.invoker import PythonInvoker


@pytest.fixture(autouse=True)
def _restore_import_state() -> Iterator[None]:
    modules = set(sys.modules)
    path = list(sys.path)
    yield
    sys.path[:] = path
    for name in set(sys.modules) - modules:
        del sys.modules[name]


def write(path: Path, source: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source))


def answers(tmp_path: Path, functions: dict[str, str], event: Any = None) -> dict[str, Any]:
    """Start every function, then invoke each once: name -> its answer."""
    context = BuildContext(identity=Identity(), state_dir=tmp_path, handler_root=tmp_path)
    invokers = {
        name: PythonFunctionConfig(invoker="python", handler=handler).build(name, context)
        for name, handler in functions.items()
    }

    async def main() -> dict[str, Any]:
        found = {}
        for invoker in invokers.values():
            await invoker.start()
        for name, invoker in invokers.items():
            assert isinstance(invoker, PythonInvoker)
            result = await invoker.invoke(json.dumps(event).encode(), f"r-{name}")
            assert result.function_error is None, result.payload
            found[name] = json.loads(result.payload)
            await invoker.close()
        return found

    return asyncio.run(main())


def test_two_functions_with_a_helper_of_the_same_name_each_get_their_own(tmp_path: Path) -> None:
    """`import helper` in function b gets b's helper.py, not a's that was imported first,
    at start and at invocation time, and so do their packages."""
    for name in ("a", "b"):
        write(tmp_path / name / "helper.py", f"WHO = {name!r}\n")
        write(tmp_path / name / "pkg" / "__init__.py", "")
        write(tmp_path / name / "pkg" / "inner.py", "from . import sibling\nWHO = sibling.WHO\n")
        write(tmp_path / name / "pkg" / "sibling.py", f"WHO = 'pkg-{name}'\n")
        write(
            tmp_path / name / "app.py",
            """
            import helper
            from pkg.inner import WHO as PACKAGE

            def handler(event, context):
                import helper as again
                return [helper.WHO, again.WHO, PACKAGE]
            """,
        )
    found = answers(tmp_path, {"a": "a/app.py:handler", "b": "b/app.py:handler"})
    assert found == {"a": ["a", "a", "pkg-a"], "b": ["b", "b", "pkg-b"]}


def test_a_handler_folder_does_not_shadow_the_daemons_libraries(tmp_path: Path) -> None:
    """A handler folder holding `colorsys.py` (any module name the daemon may import
    later): the handler gets its own, as on Lambda, but the daemon's later import gets the
    real one; the folder is never put on sys.path."""
    write(tmp_path / "fn" / "colorsys.py", "SHADOW = True\n")
    write(
        tmp_path / "fn" / "app.py",
        """
        import colorsys

        def handler(event, context):
            return getattr(colorsys, "SHADOW", False)
        """,
    )
    sys.modules.pop("colorsys", None)
    assert answers(tmp_path, {"f": "fn/app.py:handler"}) == {"f": True}
    import colorsys

    assert not hasattr(colorsys, "SHADOW") and hasattr(colorsys, "rgb_to_hsv")
    assert str(tmp_path / "fn") not in sys.path
