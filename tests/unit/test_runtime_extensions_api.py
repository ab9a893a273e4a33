"""The Extensions API of an environment answers as Lambda's does (a real server on loopback)."""

from __future__ import annotations

import asyncio

import aiohttp

from connectors.runtime.extensions_api import ExtensionsApi
from connectors.runtime.runtime_api import RuntimeApi

ARN = "arn:aws:lambda:us-east-1:123456789012:function:fn"


async def _scenario() -> None:
    api = ExtensionsApi("fn", "app.handler", ARN, ["recorder"])
    server = RuntimeApi()
    base = "http://" + await server.start(api.add_routes) + "/2020-01-01/extension"
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{base}/register", json={"events": ["INVOKE"]}) as r:
                assert r.status == 400  # no Lambda-Extension-Name
            name = {"Lambda-Extension-Name": "inside"}
            async with http.post(
                f"{base}/register", json={"events": ["SHUTDOWN"]}, headers=name
            ) as r:
                assert r.status == 400  # an internal extension cannot get SHUTDOWN
            async with http.post(f"{base}/register", json={"events": ["NOPE"]}, headers=name) as r:
                assert r.status == 400
            headers = {
                "Lambda-Extension-Name": "recorder",
                "Lambda-Extension-Accept-Feature": "accountId",
            }
            async with http.post(
                f"{base}/register", json={"events": ["INVOKE", "SHUTDOWN"]}, headers=headers
            ) as r:
                assert r.status == 200
                identifier = r.headers["Lambda-Extension-Identifier"]
                assert await r.json() == {
                    "functionName": "fn",
                    "functionVersion": "$LATEST",
                    "handler": "app.handler",
                    "accountId": "123456789012",
                }
            assert api.registered.is_set()
            async with http.get(
                f"{base}/event/next", headers={"Lambda-Extension-Identifier": "x"}
            ) as r:
                assert r.status == 403
            me = {"Lambda-Extension-Identifier": identifier}
            waiting = asyncio.ensure_future(http.get(f"{base}/event/next", headers=me))
            [extension] = api.extensions.values()
            await asyncio.wait_for(extension.waiting.wait(), 5)
            api.send("INVOKE", {"requestId": "r-1"})
            async with await waiting as r:
                assert r.status == 200 and r.headers["Lambda-Extension-Event-Identifier"]
                assert await r.json() == {"eventType": "INVOKE", "requestId": "r-1"}
            async with http.post(f"{base}/init/error", headers=me) as r:
                assert r.status == 400  # no Lambda-Extension-Function-Error-Type
            error = {**me, "Lambda-Extension-Function-Error-Type": "Extension.ConfigInvalid"}
            async with http.post(
                f"{base}/init/error", headers=error, json={"errorMessage": "bad"}
            ) as r:
                assert r.status == 202
            assert api.failure is not None and api.failure.error_type == "Extension.ConfigInvalid"
            assert api.failure.message == "bad"
            api.init_over = True
            async with http.post(
                f"{base}/register", json={"events": ["INVOKE"]}, headers=name
            ) as r:
                assert r.status == 403
    finally:
        await server.close()


def test_extensions_api_status_codes() -> None:
    """register (400 without a name or with a bad event, an internal extension may not take
    SHUTDOWN, 403 after INIT; 200 with the identifier and the function), event/next (403 for
    an unknown identifier; the event with its own identifier), init/error (400 without a type,
    202 with one, which fails the environment)."""
    asyncio.run(_scenario())
