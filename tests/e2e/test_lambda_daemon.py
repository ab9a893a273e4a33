"""lambda-bridge run with the `lambda` invoker: an SQS queue (moto) feeding a function
behind a small Invoke-API server run by this test on 127.0.0.1."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from aws_lambda_powertools.utilities.parser.models import SqsModel

from tests.e2e import aws_helpers as aws
from tests.support import DaemonProcess, wait_for

pytestmark = pytest.mark.e2e

FUNCTION = "orders-fn"


class InvokeApi(BaseHTTPRequestHandler):
    """GetFunction and Invoke of one function. A batch holding a message with `poison`
    fails the first time it is seen (X-Amz-Function-Error: Unhandled)."""

    invocations: list[dict[str, Any]]
    failed_once: set[str]

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def _json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-amzn-RequestId", "11111111-2222-4333-8444-555555555555")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        configuration = {
            "FunctionName": FUNCTION,
            "FunctionArn": f"arn:aws:lambda:us-east-1:123456789012:function:{FUNCTION}",
            "Timeout": 3,
            "State": "Active",
        }
        self._json(200, {"Configuration": configuration})

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        event = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.invocations.append(
            {
                "path": url.path,
                "query": parse_qs(url.query),
                "type": self.headers.get("X-Amz-Invocation-Type"),
                "event": event,
            }
        )
        ids = {record["messageId"] for record in event["Records"]}
        poisoned = [r for r in event["Records"] if json.loads(r["body"]).get("poison")]
        if poisoned and not ids & self.failed_once:
            self.failed_once.update(ids)
            error = {"errorMessage": "poison", "errorType": "ValueError", "stackTrace": []}
            self._json(
                200, error, {"X-Amz-Function-Error": "Unhandled", "X-Amz-Executed-Version": "7"}
            )
            return
        self._json(200, {"ok": len(ids)}, {"X-Amz-Executed-Version": "7"})


@pytest.fixture
def invoke_api() -> Iterator[tuple[str, type[InvokeApi]]]:
    handler = type("Handler", (InvokeApi,), {"invocations": [], "failed_once": set()})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


def test_sqs_batches_reach_a_lambda_function_through_the_invoke_api(
    tmp_path: Path, aws_endpoint: str, invoke_api: tuple[str, type[InvokeApi]]
) -> None:
    """Each batch is one RequestResponse Invoke of the qualified function with an event
    that validates as SqsModel; a FunctionError answer leaves the batch to the queue,
    and its messages succeed when they come back."""
    lambda_url, api = invoke_api
    queue_url, _ = aws.new_queue(aws_endpoint, visibility=3)
    config = tmp_path / "bridge.yaml"
    config.write_text(
        f"""\
functions:
  orders:
    invoker: lambda
    function_name: {FUNCTION}
    qualifier: live
    endpoint_url: "{lambda_url}"
    timeout: 3
mappings:
  - name: orders
    function: orders
    source: {{type: sqs, queue_url: "{queue_url}", endpoint_url: "{aws_endpoint}", wait_time_seconds: 1}}
    batch_size: 5
"""
    )
    daemon = DaemonProcess(config, tmp_path).start()
    try:
        daemon.wait_ready()
        bodies = [{"n": n, "poison": n == 4} for n in range(12)]
        aws.send(aws_endpoint, queue_url, bodies)
        wait_for(
            lambda: aws.queue_depth(aws_endpoint, queue_url) == 0, timeout=60, what="an empty queue"
        )

        invocations = list(api.invocations)
        assert {call["path"] for call in invocations} == {
            f"/2015-03-31/functions/{FUNCTION}/invocations"
        }
        assert all(call["query"] == {"Qualifier": ["live"]} for call in invocations)
        assert all(call["type"] in (None, "RequestResponse") for call in invocations)
        for call in invocations:
            SqsModel.model_validate(call["event"])
        counts: dict[int, list[str]] = {}
        for call in invocations:
            for record in call["event"]["Records"]:
                counts.setdefault(json.loads(record["body"])["n"], []).append(
                    record["attributes"]["ApproximateReceiveCount"]
                )
        assert set(counts) == set(range(12))
        assert counts[4] == ["1", "2"], "the failed batch came back once"
        assert daemon.stop() == 0
    finally:
        daemon.kill()
