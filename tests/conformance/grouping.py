"""Makes `--dist loadgroup` group again under pytest 9.

pytest-xdist (3.8) puts a test marked `xdist_group(name)` into its group by appending
`@name` to `item._nodeid` on the worker; pytest 9 reads a node's id from `item._id`
instead, so the suffix never reaches the scheduler and every test of a group is
scheduled on its own, e.g. a module-scoped daemon starts on each worker. This hook,
run after xdist's, gives the item the id xdist meant it to have.
"""

from __future__ import annotations

import pytest


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.getvalue("loadgroup"):
        return
    try:
        from _pytest.nodeid import NodeId
    except ImportError:  # pytest before 9: xdist's own suffix works
        return
    for item in items:
        names = sorted({str(mark.args[0]) for mark in item.iter_markers("xdist_group")})
        if not names or "@" in item.nodeid.rsplit("]", 1)[-1]:
            continue
        item._id = NodeId.parse(f"{item.nodeid}@{'_'.join(names)}")  # type: ignore[attr-defined]
