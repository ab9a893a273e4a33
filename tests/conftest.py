"""Session-wide servers (one set per test worker): Redis and a Kafka-compatible broker."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests import services

pytest_plugins = ["tests.conformance.summary", "tests.conformance.grouping"]


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`--dist loadgroup` sends the tests of one `xdist_group` to one worker, which finds
    the group in each test's node id (`...@group`). pytest-xdist 3.8 writes it to
    `item._nodeid`, which pytest 9.2 no longer reads (node ids are `item._id`), so the
    groups were lost and a module's tests went to any worker (each starting the module's
    fixtures again). Written here again where xdist's did not take."""
    if not getattr(config.option, "loadgroup", False):
        return
    for item in items:
        names = {
            str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
            for mark in item.iter_markers("xdist_group")
        }
        suffix = "@" + "_".join(sorted(names))
        if names and not item.nodeid.endswith(suffix) and hasattr(item, "_id"):
            from _pytest.nodeid import NodeId

            item._id = NodeId.parse(item.nodeid + suffix)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """REDIS_URL if set, else a redis-server started for this test session."""
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    server = services.redis_server(tmp_path_factory.mktemp("redis"))
    try:
        yield f"redis://127.0.0.1:{server.port}/0"
    finally:
        server.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """KAFKA_BOOTSTRAP if set, else a Tansu broker started for this test session."""
    if os.environ.get("KAFKA_BOOTSTRAP"):
        yield os.environ["KAFKA_BOOTSTRAP"]
        return
    server = services.tansu_server(tmp_path_factory.mktemp("kafka"))
    try:
        yield f"127.0.0.1:{server.port}"
    finally:
        server.stop()


@pytest.fixture(scope="session")
def aws_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """AWS_ENDPOINT_URL if set, else moto in server mode started for this test session.
    Dummy credentials and us-east-1 are put in the environment (daemons inherit them)."""
    os.environ.update(services.AWS_TEST_ENV)
    if os.environ.get("AWS_ENDPOINT_URL"):
        yield os.environ["AWS_ENDPOINT_URL"]
        return
    server = services.moto_server(tmp_path_factory.mktemp("moto"))
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.stop()
