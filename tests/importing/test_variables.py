"""The Serverless Framework's `${...}` variables: sources, fallbacks, nesting, types, and
the bounds (cycles, growth) that keep resolution finite."""

from __future__ import annotations

from typing import Any

import pytest

from bridge.importing.notes import TemplateError
from bridge.importing.variables import Variables


def error(location: tuple[str | int, ...], message: str) -> TemplateError:
    return TemplateError(f"{'.'.join(map(str, location))}: {message}")


def variables(document: dict[str, Any], **environ: str) -> Variables:
    return Variables(
        document, {"stage": "prod"}, environ, {"region": "eu-west-1", "accountId": "1" * 12}, error
    )


def test_sources_fallbacks_and_nesting() -> None:
    document = {
        "service": "shop",
        "custom": {"prod": {"size": 10}, "names": ["a", "b"], "limits": {"x": 1}},
        "value": "${self:service}-${opt:stage}-${sls:stage}-${aws:region}-${aws:accountId}",
        "nested": "${self:custom.${opt:stage}.size}",
        "fallback": "${opt:missing, env:HOME_DIR, 'none'}",
        "quoted": "${env:NOT_SET, 'a, b'}",
        "number": "${env:NOT_SET, 3}",
        "typed": "${self:custom.limits}",
        "listed": "${self:custom.names.1}",
        "cloudformation": "${AWS::Region}/${MyParam}/${opt:stage}",
    }
    found = variables(document, HOME_DIR="/home/x").resolve(document, ())
    assert found["value"] == "shop-prod-prod-eu-west-1-111111111111"
    assert found["nested"] == 10
    assert found["fallback"] == "/home/x"
    assert found["quoted"] == "a, b"
    assert found["number"] == 3
    assert found["typed"] == {"x": 1}
    assert found["listed"] == "b"
    assert found["cloudformation"] == "${AWS::Region}/${MyParam}/prod"


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"a": "${self:b}", "b": "${self:a}"}, "a cycle: b -> a -> b"),
        ({"a": {"x": "${self:a}"}}, "a cycle: a -> a"),
        ({"a": "${env:MISSING}"}, "${env:MISSING} has no value"),
        ({"a": "${ssm:/path}"}, "${ssm:/path} has no value"),
        ({"a": "x${self:m}", "m": {"k": 1}}, "is not text and cannot be part of a string"),
        ({"a": "${bogus:thing}"}, "unknown variable source"),
    ],
)
def test_problems(document: dict[str, Any], message: str) -> None:
    with pytest.raises(
        TemplateError, match=message.replace("$", r"\$").replace("{", r"\{").replace("}", r"\}")
    ):
        variables(document).resolve(document, ())


def test_growth_is_bounded() -> None:
    document: dict[str, Any] = {"v0": "x" * 1000}
    for i in range(1, 14):
        document[f"v{i}"] = f"${{self:v{i - 1}}}${{self:v{i - 1}}}"
    with pytest.raises(TemplateError, match="longer than 1,000,000 characters"):
        variables(document).resolve({"top": "${self:v13}"}, ())


def test_many_references_in_a_long_string_resolve_in_one_pass() -> None:
    """8,900 references in a string of a million characters (each replacement used to
    rebuild the whole string: 4 s); one's text holding `${...}` is resolved too, and
    Fn::Sub's are left."""
    text = ("x" * 100 + "${opt:stage}") * 8_900 + "${self:ref}/${AWS::Region}"
    document = {"ref": "${opt:stage}", "top": text}
    found = variables(document).resolve(document, ())
    assert found["top"] == ("x" * 100 + "prod") * 8_900 + "prod/${AWS::Region}"
