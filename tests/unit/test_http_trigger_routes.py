"""HTTP trigger routes (bridge.config.http_routes): path templates, greedy variables,
which route wins when several match, and the config problems of http_triggers."""

from __future__ import annotations

import textwrap

import pytest

from bridge.config.http_routes import RouteTable, request_segments
from bridge.config.http_triggers import HttpTriggerConfig, is_lambda_api_path
from bridge.config.loading import load_config_text
from tests.unit.config_support import problems

ROUTES = RouteTable(
    [
        HttpTriggerConfig(path="/{proxy+}", function="fallback"),
        HttpTriggerConfig(path="/orders/{id}", methods=["GET"], function="get-order"),
        HttpTriggerConfig(path="/orders/{id}", function="any-order"),
        HttpTriggerConfig(path="/orders/latest", methods=["GET"], function="latest"),
        HttpTriggerConfig(path="/orders", methods=["post"], function="create"),
        HttpTriggerConfig(path="/", methods=["GET"], function="root"),
    ]
)


@pytest.mark.parametrize(
    ("method", "path", "function", "parameters"),
    [
        ("GET", "/orders/7", "get-order", {"id": "7"}),
        ("DELETE", "/orders/7", "any-order", {"id": "7"}),
        ("GET", "/orders/latest", "latest", {}),
        ("POST", "/orders", "create", {}),
        ("GET", "/orders", "fallback", {"proxy": "orders"}),
        ("GET", "/orders/7/items/3", "fallback", {"proxy": "orders/7/items/3"}),
        ("GET", "/orders/a%2Fb", "get-order", {"id": "a/b"}),
        ("GET", "/", "root", {}),
    ],
)
def test_the_most_specific_route_wins(
    method: str, path: str, function: str, parameters: dict[str, str]
) -> None:
    match = ROUTES.find(method, path)
    assert match is not None
    assert (match.route.function, match.path_parameters) == (function, parameters)


def test_no_route_for_the_method_or_path_is_no_match() -> None:
    table = RouteTable([HttpTriggerConfig(path="/orders/{id}", methods=["GET"], function="f")])
    assert table.find("POST", "/orders/7") is None
    assert table.find("GET", "/orders") is None
    assert table.find("GET", "/orders/7/more") is None
    assert table.find("GET", "/orders/") is None  # an empty {id} is no id
    assert not RouteTable([])


def test_route_keys_name_the_method_or_any() -> None:
    get = ROUTES.find("GET", "/orders/7")
    other = ROUTES.find("PATCH", "/orders/7")
    assert get is not None and get.route.route_key("GET") == "GET /orders/{id}"
    assert other is not None and other.route.route_key("PATCH") == "ANY /orders/{id}"


def test_request_segments_are_decoded_one_by_one() -> None:
    assert request_segments("/") == []
    assert request_segments("/a%20b/c%2Fd?x=1") == ["a b", "c/d"]


def test_lambda_api_paths_are_told_apart() -> None:
    assert is_lambda_api_path("/2015-03-31/functions")
    assert is_lambda_api_path("/2019-09-25/functions/f/event-invoke-config")
    assert not is_lambda_api_path("/orders/2015-03-31")
    assert not is_lambda_api_path("/")


VALID = """\
state_dir: ./state
api: {listen: "127.0.0.1:0"}
functions:
  f: {invoker: python, handler: handler.py:handler}
http_triggers:
"""


@pytest.mark.usefixtures("workdir")
def test_a_valid_http_triggers_section_loads_with_its_defaults() -> None:
    text = (
        VALID
        + "  - {path: '/orders/{id}', function: f}\n  - {path: /v1, function: f, format: 1.0}\n"
    )
    [first, second] = load_config_text(text, "bridge.yaml").config.http_triggers
    assert first.methods == ["ANY"] and first.format == "2.0"
    assert second.format == "1.0"


@pytest.mark.parametrize(
    ("route", "line", "key", "message"),
    [
        ("{path: orders, function: f}", 6, "http_triggers[0].path", "must start with /"),
        ("{path: /a//b, function: f}", 6, "http_triggers[0].path", "empty segment"),
        ("{path: /a/, function: f}", 6, "http_triggers[0].path", "empty segment"),
        ("{path: '/{p+}/x', function: f}", 6, "http_triggers[0].path", "must be the last"),
        ("{path: '/{a}/{a}', function: f}", 6, "http_triggers[0].path", "twice"),
        ("{path: '/a{b}', function: f}", 6, "http_triggers[0].path", "neither literal"),
        ("{path: /2015-03-31/mine, function: f}", 6, "http_triggers[0].path", "Lambda's API"),
        ("{path: /a, function: g}", 6, "http_triggers[0].function", "no function named 'g'"),
        ("{path: /a, function: f, methods: [FETCH]}", 6, "http_triggers[0].methods[0]", ""),
        ("{path: /a, function: f, methods: [ANY, GET]}", 6, "http_triggers[0].methods", "ANY"),
        ("{path: /a, function: f, format: 3.0}", 6, "http_triggers[0].format", ""),
    ],
)
@pytest.mark.usefixtures("workdir")
def test_bad_routes_are_reported_with_file_line_and_key(
    route: str, line: int, key: str, message: str
) -> None:
    [problem] = problems(VALID + f"  - {route}\n")
    assert problem.startswith(f"bridge.yaml:{line}: {key}: "), problem
    assert message in problem


@pytest.mark.usefixtures("workdir")
def test_duplicate_routes_are_refused_but_a_method_beside_any_is_not() -> None:
    text = VALID + textwrap.dedent(
        """\
          - {path: '/orders/{id}', methods: [GET, POST], function: f}
          - {path: '/orders/{order}', methods: [POST], function: f}
          - {path: '/orders/{id}', function: f}
        """
    )
    [problem] = problems(text)
    assert problem.startswith("bridge.yaml:7: http_triggers[1].path: ")
    assert "http_triggers[0] already routes POST /orders/{order}" in problem


@pytest.mark.usefixtures("workdir")
def test_http_triggers_need_the_api_listener() -> None:
    text = VALID.replace('api: {listen: "127.0.0.1:0"}\n', "") + "  - {path: /a, function: f}\n"
    [problem] = problems(text)
    assert "http_triggers" in problem and "api:" in problem
