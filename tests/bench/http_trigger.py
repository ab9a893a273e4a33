"""HTTP triggers' cost: requests through an `http_triggers` route of the API listener
against the same Python handler behind a minimal hand-written aiohttp route, measured in
one run.

- trigger: the daemon's API listener (bridge.frontdoor.server.ApiServer) with one 2.0
  route to a `python` function: route matching, the 2.0 event, the invoker (the handler on
  its thread pool), the answer mapped back.
- baseline: an aiohttp route that builds the same fields of a 2.0 event by hand, calls the
  handler directly on the event loop and sends its `body`.

Both serve in this process on loopback; one client (aiohttp, kept-alive connections)
sends GET /orders/{id}?q=1 sequentially, then with --concurrency requests in flight, in
interleaved rounds. Prints requests per second, p50 and p99 of each, and the ratio.

    python tests/bench/http_trigger.py [--requests N] [--rounds R] [--concurrency C]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from aiohttp import ClientSession, TCPConnector, web

from bridge.config.loading import load_config_text
from bridge.config.model import BridgeConfig
from bridge.frontdoor.server import ApiServer
from bridge.ops import logs
from bridge.protocols import Invoker

HANDLER = """\
import json

def handler(event, context):
    return {"statusCode": 200, "headers": {"content-type": "application/json"},
            "body": json.dumps({"id": event["pathParameters"]["id"]})}
"""


class Target:
    def __init__(self, config: BridgeConfig, invoker: Invoker) -> None:
        self.config = config
        self._invoker = invoker

    def invocation_target(self, function: str, qualifier: str) -> tuple[Invoker, str] | None:
        return self._invoker, qualifier


def baseline_app(handler: Any) -> web.Application:
    """What one would write by hand: the event's fields, the handler, its body."""

    async def order(request: web.Request) -> web.Response:
        now = time.time()
        event = {
            "version": "2.0",
            "routeKey": "GET /orders/{id}",
            "rawPath": request.path,
            "rawQueryString": request.query_string,
            "headers": {name.lower(): value for name, value in request.headers.items()},
            "queryStringParameters": dict(request.query),
            "requestContext": {
                "accountId": "000000000000",
                "apiId": "baseline",
                "domainName": request.host,
                "domainPrefix": request.host.partition(".")[0],
                "http": {
                    "method": request.method,
                    "path": request.path,
                    "protocol": "HTTP/1.1",
                    "sourceIp": request.remote,
                    "userAgent": request.headers.get("User-Agent", ""),
                },
                "requestId": "id",
                "routeKey": "GET /orders/{id}",
                "stage": "$default",
                "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
                "timeEpoch": int(now * 1000),
            },
            "pathParameters": {"id": request.match_info["id"]},
            "isBase64Encoded": False,
        }
        result = handler(json.loads(json.dumps(event)), None)
        return web.Response(
            status=result["statusCode"], text=result["body"], headers=result["headers"]
        )

    app = web.Application()
    app.router.add_get("/orders/{id}", order)
    return app


async def timed(session: ClientSession, url: str, count: int, concurrency: int) -> list[float]:
    samples: list[float] = []
    queue = iter(range(count))

    async def worker() -> None:
        for index in queue:
            started = time.perf_counter()
            async with session.get(f"{url}/orders/{index}?q=1") as response:
                body = await response.read()
            samples.append(time.perf_counter() - started)
            assert response.status == 200, body

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    samples.append(-(time.perf_counter() - started))  # the wall time, taken out below
    return samples


def summary(label: str, runs: list[list[float]]) -> tuple[float, str]:
    latencies = [s for run in runs for s in run if s >= 0]
    wall = sum(-s for run in runs for s in run if s < 0)
    rate = len(latencies) / wall
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    text = (
        f"{label:<34} {rate:9,.0f} req/s   p50 {statistics.median(latencies) * 1000:7.3f} ms"
        f"   p99 {p99 * 1000:7.3f} ms"
    )
    return rate, text


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    logs.configure(os.environ.get("BENCH_LOG", "warning"))
    with tempfile.TemporaryDirectory() as temp:
        workdir = Path(temp)
        (workdir / "app.py").write_text(HANDLER)
        text = f"""
state_dir: {workdir / "state"}
api: {{listen: "127.0.0.1:0"}}
functions:
  orders: {{invoker: python, handler: {workdir / "app.py"}:handler}}
http_triggers:
  - {{path: '/orders/{{id}}', methods: [GET], function: orders}}
"""
        loaded = load_config_text(text, "bench.yaml", environ={}, handler_root=workdir)
        config = loaded.config
        invoker = config.functions["orders"].build("orders", loaded.build_context)
        await invoker.start()
        (workdir / "state").mkdir()
        assert config.api is not None
        server = ApiServer(Target(config, invoker), config.api, config.state_dir, workdir)
        trigger_url = "http://" + await server.start()
        spec = importlib.util.spec_from_file_location("bench_app", workdir / "app.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        runner = web.AppRunner(baseline_app(module.handler), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        baseline_url = f"http://127.0.0.1:{port}"
        try:
            async with ClientSession(connector=TCPConnector(limit=args.concurrency)) as session:
                for url in (trigger_url, baseline_url):  # warm-up
                    await timed(session, url, 300, 1)
                for concurrency in (1, args.concurrency):
                    runs: dict[str, list[list[float]]] = {"trigger": [], "baseline": []}
                    for _ in range(args.rounds):
                        runs["trigger"].append(
                            await timed(session, trigger_url, args.requests, concurrency)
                        )
                        runs["baseline"].append(
                            await timed(session, baseline_url, args.requests, concurrency)
                        )
                    total = args.requests * args.rounds
                    print(f"{total:,} requests each, {concurrency} in flight:")
                    rate, line = summary("http_triggers route (daemon)", runs["trigger"])
                    base_rate, base_line = summary("hand-written aiohttp route", runs["baseline"])
                    print("  " + line)
                    print("  " + base_line)
                    print(f"  ratio trigger/baseline: {rate / base_rate:.2f} of the requests/s")
        finally:
            await runner.cleanup()
            await server.close()
            await invoker.close()


def run(argv: Any = None) -> None:
    asyncio.run(main())


if __name__ == "__main__":
    run()
