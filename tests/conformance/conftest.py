"""Keeps each conformance module on one xdist worker.

pytest-xdist's `--dist loadgroup` groups tests by appending `@<group>` to their node ids,
by setting `item._nodeid`; pytest 9 keeps node ids in `item._id` and no longer reads
`_nodeid`, so the groups are silently ignored and a module's tests (and its module
fixture: a daemon with every case) are spread over both workers. This sets the suffixed
id where pytest 9 reads it, and does nothing on a pytest where xdist's own works.
"""

from __future__ import annotations

import pytest


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not getattr(config.option, "loadgroup", False):
        return
    try:
        from _pytest.nodeid import NodeId
    except ImportError:  # an older pytest: xdist's `_nodeid` is what it reads
        return
    for item in items:
        names = sorted(
            {
                str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
                for mark in item.iter_markers("xdist_group")
            }
        )
        suffix = "@" + "_".join(names)
        if names and not item.nodeid.endswith(suffix) and hasattr(item, "_id"):
            item._id = NodeId.parse(item.nodeid + suffix)
