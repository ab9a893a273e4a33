"""Each `python` function imports from its own folder, as each Lambda function has its own
task root.

On Lambda the function's folder is first on `sys.path` of a process of its own. Here all
functions share the daemon's interpreter, so putting their folders on `sys.path` would let
function `b`'s `import helper` get function `a`'s `helper.py`, and let a handler folder's
`yaml.py` stand in for the library the daemon imports later. Instead, a function's modules
live in a package of their own, `_lambda_bridge_fn_<name>_<hash>`, whose path is the
function's folder, and never on `sys.path`:

- the handler is loaded as a module of that package;
- modules loaded there get builtins of their own whose `__import__` resolves a top-level
  name that the folder holds (`name.py`, a package `name/__init__.py`, a native module)
  inside the package, so `import helper` and `from pkg.sub import x` find the function's
  own files first, as Lambda's task root does; every other import is the usual one;
- relative imports work as usual, since the modules know their package.

Code that imports by string at run time (`importlib.import_module("helper")`) does not go
through `__import__`; it sees the daemon's modules, not the function's folder.
"""

from __future__ import annotations

import builtins
import hashlib
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import re
import sys
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Any

_real_import = builtins.__import__
_NOT_A_NAME = re.compile(r"\W")
_FILE_LOADERS = (importlib.machinery.SourceFileLoader, importlib.machinery.SourcelessFileLoader)
# Function namespace -> its imports, for the finder.
_NAMESPACES: dict[str, FunctionImports] = {}


class FunctionImports:
    def __init__(self, function: str, root: Path) -> None:
        self.root = root.resolve()
        digest = hashlib.sha1(f"{function}\0{self.root}".encode()).hexdigest()[:8]
        plain = _NOT_A_NAME.sub("_", function)
        self.namespace = f"_lambda_bridge_fn_{plain}_{digest}"
        self.builtins: dict[str, Any] = {**builtins.__dict__, "__import__": self._import}
        self._local: dict[str, bool] = {}
        package = types.ModuleType(self.namespace, f"the import root of function {function!r}")
        spec = importlib.machinery.ModuleSpec(self.namespace, None, is_package=True)
        spec.submodule_search_locations = [str(self.root)]
        package.__spec__ = spec
        package.__path__ = [str(self.root)]
        package.__package__ = self.namespace
        sys.modules[self.namespace] = package
        _NAMESPACES[self.namespace] = self
        _install_finder()

    def load(self, module: str) -> types.ModuleType:
        """Import `module` (dotted, relative to the folder) as the function's own."""
        return importlib.import_module(f"{self.namespace}.{module}")

    def load_file(self, path: Path) -> types.ModuleType:
        """The handler file `path` (in the folder), as a module of the function's own;
        any file name will do."""
        stem = path.stem if path.stem.isidentifier() else "_handler"
        name = f"{self.namespace}.{stem}"
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot import {path}")
        spec.loader = _IsolatedLoader(spec.loader, self)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
        return module

    def holds(self, top: str) -> bool:
        """Whether the folder has a module or package named `top` (remembered: a task
        root does not change while the daemon runs)."""
        found = self._local.get(top)
        if found is None:
            candidates = [self.root / f"{top}.py", self.root / top / "__init__.py"]
            candidates += [
                self.root / f"{top}{suffix}" for suffix in importlib.machinery.EXTENSION_SUFFIXES
            ]
            found = self._local[top] = top.isidentifier() and any(
                candidate.is_file() for candidate in candidates
            )
        return found

    def _import(
        self,
        name: str,
        globals: dict[str, Any] | None = None,
        locals: dict[str, Any] | None = None,
        fromlist: Sequence[str] | None = (),
        level: int = 0,
    ) -> types.ModuleType:
        if level or not name or not self.holds(name.partition(".")[0]):
            return _real_import(name, globals, locals, fromlist or (), level)
        module = self.load(name)
        if not fromlist:
            return sys.modules[f"{self.namespace}.{name.partition('.')[0]}"]
        # `from package import submodule`: load the submodules named, as __import__ does.
        for item in fromlist:
            if item != "*" and not hasattr(module, item) and hasattr(module, "__path__"):
                try:
                    importlib.import_module(f"{module.__name__}.{item}")
                except ModuleNotFoundError as exc:
                    if exc.name != f"{module.__name__}.{item}":
                        raise
        return module


class _IsolatedLoader(importlib.abc.Loader):
    """A module of a function's folder, run with the function's builtins."""

    def __init__(self, inner: Any, imports: FunctionImports) -> None:
        self._inner = inner
        self._imports = imports

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        created: types.ModuleType | None = self._inner.create_module(spec)
        return created

    def exec_module(self, module: types.ModuleType) -> None:
        module.__dict__["__builtins__"] = self._imports.builtins
        self._inner.exec_module(module)

    def __getattr__(self, name: str) -> Any:
        # get_source (tracebacks), get_data and resource readers of the real loader.
        return getattr(self._inner, name)


class _FunctionFinder(importlib.abc.MetaPathFinder):
    """Finds modules of a function's package in its folder and hands them the function's
    builtins (native modules are left as they are)."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: types.ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        namespace = fullname.partition(".")[0]
        imports = _NAMESPACES.get(namespace)
        if imports is None or fullname == namespace:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and isinstance(
            spec.loader,
            importlib.machinery.SourceFileLoader | importlib.machinery.SourcelessFileLoader,
        ):
            spec.loader = _IsolatedLoader(spec.loader, imports)
        return spec


_FINDER = _FunctionFinder()


def _install_finder() -> None:
    if _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)
