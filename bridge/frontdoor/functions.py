"""Which configured function a `FunctionName` (and `Qualifier`) names (esm-reference.md 14).

`FunctionName` is a name (`my-function`), a partial ARN (`123456789012:function:my-function`)
or a full ARN (`arn:aws:lambda:us-west-2:123456789012:function:my-function`), any of them
with `:qualifier`; `?Qualifier=` is the alternative, and the two must agree. A region or
account written in it must be those of the function's ARN (its configured `arn`, else the
one made up from `aws.region` and `aws.account_id`). The qualifier is `$LATEST` (also when
none is given), one of the function's configured versions or one of its aliases
(bridge.config.versions); any other is not found (404).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bridge.config.model import BridgeConfig
from bridge.config.versions import LATEST, qualifiers
from bridge.frontdoor.errors import invalid_parameter, not_found

__all__ = ["LATEST", "Target", "resolve"]

# AWS's pattern for Invoke's FunctionName, with named groups.
_FUNCTION_NAME = re.compile(
    r"(?:arn:(?P<partition>aws[a-zA-Z-]*)?:lambda:)?"
    r"(?:(?P<region>[a-z]{2}(?:-gov)?-[a-z]+-\d):)?"
    r"(?:(?P<account>\d{12}):)?"
    r"(?:function:)?"
    r"(?P<name>[a-zA-Z0-9\-_\.]+)"
    r"(?::(?P<qualifier>\$LATEST|[a-zA-Z0-9\-_]+))?"
)
_QUALIFIER = re.compile(r"\$LATEST|[a-zA-Z0-9\-_]{1,128}")
_ARN = re.compile(r"arn:[^:]*:lambda:(?P<region>[^:]*):(?P<account>[^:]*):function:(?P<name>.*)")


@dataclass(frozen=True)
class Target:
    name: str
    qualifier: str
    arn: str  # unqualified
    qualified: bool = False  # the caller named a qualifier (`$LATEST` included)

    @property
    def qualified_arn(self) -> str:
        return f"{self.arn}:{self.qualifier}"

    @property
    def given_qualifier(self) -> str | None:
        """The qualifier the caller named; None when it named none."""
        return self.qualifier if self.qualified else None

    @property
    def invoked_arn(self) -> str:
        """The ARN as the caller named the function: what Lambda tells the handler."""
        return self.qualified_arn if self.qualified else self.arn


def resolve(config: BridgeConfig, function_name: str, qualifier: str | None) -> Target:
    """The function and version to invoke; ApiError (400 or 404) otherwise."""
    if not 1 <= len(function_name) <= 170:
        raise invalid_parameter("FunctionName must be 1 to 170 characters long")
    match = _FUNCTION_NAME.fullmatch(function_name)
    if match is None:
        raise invalid_parameter(
            f"1 validation error detected: Value '{function_name}' at 'functionName' failed "
            "to satisfy constraint: Member must satisfy regular expression pattern: "
            r"(arn:(aws[a-zA-Z-]*)?:lambda:)?([a-z]{2}(-gov)?-[a-z]+-\d{1}:)?(\d{12}:)?"
            r"(function:)?([a-zA-Z0-9-_\.]+)(:(\$LATEST|[a-zA-Z0-9-_]+))?"
        )
    derived = match["qualifier"]
    if qualifier is not None:
        if _QUALIFIER.fullmatch(qualifier) is None:
            raise invalid_parameter(f"Qualifier {qualifier!r} is not a version or alias name")
        if derived is not None and derived != qualifier:
            raise invalid_parameter(
                "The derived qualifier from the function name does not match the specified "
                "qualifier."
            )
    chosen = qualifier or derived or LATEST
    name = match["name"]
    function = config.functions.get(name)
    arn = (function.arn if function is not None else None) or config.identity.function_arn(name)
    parts = _ARN.fullmatch(arn)
    region, account = (parts["region"], parts["account"]) if parts else (None, None)
    if (
        function is None
        or (match["region"] is not None and match["region"] != region)
        or (match["account"] is not None and match["account"] != account)
    ):
        raise not_found(f"Function not found: {_asked(config, match)}")
    target = Target(name, chosen, arn, qualified=bool(qualifier or derived))
    if chosen not in qualifiers(function):
        raise not_found(f"Function not found: {target.qualified_arn}")
    return target


def _asked(config: BridgeConfig, match: re.Match[str]) -> str:
    identity = config.identity
    region = match["region"] or identity.region
    account = match["account"] or identity.account_id
    arn = f"arn:aws:lambda:{region}:{account}:function:{match['name']}"
    return f"{arn}:{match['qualifier']}" if match["qualifier"] else arn
