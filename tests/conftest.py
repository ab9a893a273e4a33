"""Session-wide servers (one set per test worker): Redis and a Kafka-compatible broker."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from tests import services

pytest_plugins = ["tests.conformance.summary"]


SPREAD_CASE_BY_CASE = ("tests/contract/", "tests/fault/")


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Under -n: each test module runs on one worker (a module's fixtures start its
    daemons once), while the cases of the contract suites and of the fault suite, each of
    which sets up what it needs itself, spread one by one (the fault cases are the longest:
    on one worker they would be the run's tail). (xdist's `--dist loadgroup` marks do not take with pytest 9:
    modules were split over workers, each starting the module's daemons again.)"""
    from xdist.scheduler import LoadScopeScheduling

    class ModuleScheduling(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", maxsplit=1)[0]
            return nodeid if module.startswith(SPREAD_CASE_BY_CASE) else module

    return ModuleScheduling(config, log)


@contextmanager
def served(env: str, start: Callable[[], Any], url: Callable[[Any], str]) -> Iterator[str]:
    """The URL in the environment variable `env` when it is set (a server already running),
    else that of a server `start()` brings up for this test session and stops at its end."""
    if os.environ.get(env):
        yield os.environ[env]
        return
    server = start()
    try:
        yield url(server)
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """REDIS_URL if set, else a redis-server started for this test session."""
    with served(
        "REDIS_URL",
        lambda: services.redis_server(tmp_path_factory.mktemp("redis")),
        lambda server: f"redis://127.0.0.1:{server.port}/0",
    ) as url:
        yield url


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """KAFKA_BOOTSTRAP if set, else a Tansu broker started for this test session."""
    with served(
        "KAFKA_BOOTSTRAP",
        lambda: services.tansu_server(tmp_path_factory.mktemp("kafka")),
        lambda server: f"127.0.0.1:{server.port}",
    ) as url:
        yield url


@pytest.fixture(scope="session")
def aws_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """AWS_ENDPOINT_URL if set, else moto in server mode started for this test session.
    Dummy credentials and us-east-1 are put in the environment (daemons inherit them)."""
    os.environ.update(services.AWS_TEST_ENV)
    with served(
        "AWS_ENDPOINT_URL",
        lambda: services.moto_server(tmp_path_factory.mktemp("moto")),
        lambda server: f"http://127.0.0.1:{server.port}",
    ) as url:
        yield url


@pytest.fixture(scope="session")
def nats_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """NATS_URL if set, else a nats-server with JetStream started for this test session."""
    with served(
        "NATS_URL",
        lambda: services.nats_server(tmp_path_factory.mktemp("nats")),
        lambda server: f"nats://127.0.0.1:{server.port}",
    ) as url:
        yield url


@pytest.fixture(scope="session")
def amqp_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """AMQP_URL if set, else a rabbitmq-server (with its own epmd) started for this test
    session."""
    with served(
        "AMQP_URL",
        lambda: services.rabbitmq_server(tmp_path_factory.mktemp("rabbitmq")),
        lambda server: str(server.url),
    ) as url:
        yield url


@pytest.fixture(scope="session")
def activemq_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """ACTIVEMQ_URL (stomp://host:port) if set, else a private ActiveMQ broker started
    for this test session."""
    with served(
        "ACTIVEMQ_URL",
        lambda: services.activemq_server(tmp_path_factory.mktemp("activemq")),
        lambda server: f"stomp://127.0.0.1:{server.port}",
    ) as url:
        yield url


@pytest.fixture(scope="session")
def mqtt_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """MQTT_URL if set, else a mosquitto started for this test session."""
    with served(
        "MQTT_URL",
        lambda: services.mosquitto_server(tmp_path_factory.mktemp("mosquitto")),
        lambda server: f"mqtt://127.0.0.1:{server.port}",
    ) as url:
        yield url
