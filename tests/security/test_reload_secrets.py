"""A reload notices a changed secret: moving a mapping's Redis URL to another user's
password restarts the mapping with the new credentials, so the old user can be deleted,
and neither password reaches the daemon's logs or the answer to POST /reload."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.e2e import redis_helpers as rd
from tests.e2e.streams import delivered, write_handler
from tests.security.admin_support import raw_request
from tests.support import DaemonProcess, wait_for

pytestmark = pytest.mark.e2e


class AclUsers:
    """Redis ACL users made for one test, deleted at its end."""

    def __init__(self, url: str) -> None:
        self.admin = redis.Redis.from_url(url)
        self.names: list[str] = []

    def create(self) -> tuple[str, str]:
        name, password = rd.unique("bridge-user"), secrets.token_hex(16)
        self.admin.acl_setuser(
            name,
            enabled=True,
            passwords=[f"+{password}"],
            keys=["*"],
            channels=["*"],
            commands=["+@all"],
        )
        self.names.append(name)
        return name, password

    def connected(self, name: str) -> bool:
        return any(client.get("user") == name for client in self.admin.client_list())

    def close(self) -> None:
        for name in self.names:
            self.admin.acl_deluser(name)
        self.admin.close()


@pytest.fixture
def users(redis_url: str) -> Iterator[AclUsers]:
    made = AclUsers(redis_url)
    yield made
    made.close()


def user_url(redis_url: str, name: str, password: str) -> str:
    return redis_url.replace("redis://", f"redis://{name}:{password}@", 1)


def write_config(path: Path, url: str, stream: str) -> None:
    path.write_text(
        f"""\
state_dir: ./state
drain_timeout_seconds: 10
functions:
  recorder: {{invoker: python, handler: stream_handler.py:handler, timeout: 10}}
mappings:
  - name: orders
    function: recorder
    source:
      type: redis-streams
      url: "{url}"
      streams: [{stream}]
      starting_position: TRIM_HORIZON
      block_seconds: 0.2
    maximum_batching_window_in_seconds: 0.1
    retry_backoff: {{initial_seconds: 0.05, max_seconds: 0.2}}
"""
    )


def test_a_rotated_redis_password_restarts_the_mapping_with_it(
    tmp_path: Path, redis_url: str, users: AclUsers
) -> None:
    """Only the URL's user and password change. POST /reload restarts the mapping, which
    connects as the new user; the old user is deleted (Redis drops its connections) and
    records keep being delivered; no log line, the daemon's output or the reload answer
    holds either password."""
    old_user, old_password = users.create()
    new_user, new_password = users.create()
    stream = rd.unique("orders")
    config = tmp_path / "bridge.yaml"
    write_config(config, user_url(redis_url, old_user, old_password), stream)
    write_handler(tmp_path)
    record_file = tmp_path / "calls.jsonl"
    daemon = DaemonProcess(config, tmp_path, env={"RECORD_TO": str(record_file)}).start()
    try:
        daemon.wait_ready()
        rd.add(redis_url, stream, [{"n": 1}])
        wait_for(lambda: delivered(record_file) == {1}, what="a record read as the old user")
        assert users.connected(old_user)

        write_config(config, user_url(redis_url, new_user, new_password), stream)
        where = daemon.admin_url().removeprefix("http://")
        status, body = raw_request(
            where, "POST", "/reload", {"Host": where, "Content-Type": "application/json"}
        )
        assert status == 200
        assert json.loads(body)["restarted"] == ["orders"]
        daemon.wait_for_log("mapping.started", count=2, mapping="orders")
        wait_for(lambda: users.connected(new_user), what="a connection as the new user")

        users.admin.acl_deluser(old_user)
        users.names.remove(old_user)
        rd.add(redis_url, stream, [{"n": 2}, {"n": 3}])
        wait_for(lambda: delivered(record_file) == {1, 2, 3}, what="records read as the new user")
        assert daemon.stop() == 0
    finally:
        daemon.kill()
    output = "".join(daemon.raw_stderr) + daemon.stdout + body.decode()
    for password in (old_password, new_password):
        assert password not in output
