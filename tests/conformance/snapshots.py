"""AWS's recorded event source mapping behaviour (`../shared/conformance/esm-snapshots/`),
and comparing what lambda-bridge did with it.

The recordings are LocalStack snapshots of runs against real AWS; their README explains
the fields and the placeholders. They are read where they lie, never copied into the
repository: from `LAMBDA_BRIDGE_CONFORMANCE_DIR`, else `../shared/conformance` beside the
checkout, else beside the checkout it was cloned from (CI runs in a fresh clone).

Comparing follows the placeholders' rules: `<name:N>` stands for one value throughout a
case (the same number, the same value; different numbers, different values); unnumbered
placeholders stand for any value of their kind; `111111111111`, `<region>` and
`arn:<partition>:` for the account, region and partition; timestamps must have the
recorded form. Strings holding JSON objects are compared as the object (the snapshot
library parsed them). Object keys are compared as sets, never by order.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
MISSING = "conformance recordings not found (set LAMBDA_BRIDGE_CONFORMANCE_DIR)"
ACCOUNT = "111111111111"

# Unnumbered placeholders: any value of the kind described in the snapshots' README.
_ANY_OF_KIND: dict[str, Callable[[Any], bool]] = {
    "sent-timestamp": lambda v: isinstance(v, str) and v.isdigit() and len(v) == 13,
    "sender-id": lambda v: isinstance(v, str) and bool(v),
    "<approximate-first-receive-timestamp>": lambda v: (
        isinstance(v, str) and v.isdigit() and len(v) == 13
    ),
    "<approximate-arrival-timestamp>": lambda v: (
        isinstance(v, int | float) and len(str(int(v))) == 10
    ),
    "<approximate-creation-datetime>": lambda v: (
        isinstance(v, int | float) and len(str(int(v))) == 10
    ),
    "<execution-start>": lambda v: v is not None,
    "<md5-hash>": lambda v: isinstance(v, str) and re.fullmatch(r"[0-9a-f]{32}", v) is not None,
    "<datetime>": lambda v: v is not None,
    "<signature>": lambda v: isinstance(v, str),
}
_TIMESTAMP_FORMS = {
    "<timestamp:2022-07-13T13:48:01.000Z>": r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z",
    "<timestamp:2022-07-13T13:48:01Z>": r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ",
}
_PLACEHOLDER = re.compile(r"<[a-z0-9-]+:\d+>|<[a-z0-9-]+>|<timestamp:[^>]+>")


def conformance_dir() -> Path | None:
    """Where the recordings are, or None if they cannot be found."""
    candidates = []
    if configured := os.environ.get("LAMBDA_BRIDGE_CONFORMANCE_DIR"):
        candidates.append(Path(configured))
    candidates.append(REPO.parent / "shared" / "conformance")
    origin = _origin_checkout()
    if origin is not None:
        candidates.append(origin.parent / "shared" / "conformance")
    return next((path for path in candidates if (path / "esm-snapshots").is_dir()), None)


def _origin_checkout() -> Path | None:
    try:
        url = subprocess.run(
            ["git", "-C", str(REPO), "remote", "get-url", "origin"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    path = Path(url.removeprefix("file://"))
    return path.resolve() if path.is_dir() else None


@dataclass(frozen=True)
class Case:
    id: str
    source: str
    test: str
    esm_parameters: Any
    source_setup: Any
    input: Any
    function_behaviour: Any
    function_returns: Any
    recorded: dict[str, Any]
    aws_validated: bool
    notes: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        """The case's test name without its source prefix and class."""
        return self.id.split("/", 1)[1].rsplit(".", 1)[-1]


@cache
def load_cases(source: str) -> dict[str, Case]:
    """The recorded cases of one source (`sqs`, `kinesis`, `dynamodb`, `kafka`), by name."""
    folder = conformance_dir()
    if folder is None:
        return {}
    raw = json.loads((folder / "esm-snapshots" / f"{source}.json").read_text())
    cases = {}
    for item in raw:
        case = Case(
            id=item["id"],
            source=item["source_type"],
            test=item["test"],
            esm_parameters=item.get("esm_parameters"),
            source_setup=item.get("source_setup"),
            input=item.get("input"),
            function_behaviour=item.get("function_behaviour"),
            function_returns=item.get("function_returns"),
            recorded=item["recorded"],
            aws_validated=bool(item.get("aws_validated", "last_validated_date" in item)),
            notes=list(item.get("notes") or []),
        )
        cases[case.name] = case
    return cases


def case_params(source: str, supported: Callable[[Case], str | None]) -> list[Any]:
    """One pytest param per recorded case of `source`; `supported(case)` returns None
    for a case lambda-bridge runs, or the reason it is skipped (collected, so it turns on
    by itself once `supported` says yes)."""
    cases = load_cases(source)
    if not cases:
        if os.environ.get("LAMBDA_BRIDGE_REQUIRE_SERVICES") == "1":
            raise RuntimeError(MISSING)
        return [
            pytest.param(
                None, id=f"{source}-recordings-missing", marks=pytest.mark.skip(reason=MISSING)
            )
        ]
    params = []
    for name, case in cases.items():
        reason = supported(case)
        marks = [pytest.mark.skip(reason=reason)] if reason else []
        params.append(pytest.param(case, id=name, marks=marks))
    return params


def missing_recordings() -> None:
    """Skip a test for want of the recordings; fail it where every test must run (CI)."""
    if os.environ.get("LAMBDA_BRIDGE_REQUIRE_SERVICES") == "1":
        pytest.fail(MISSING)
    pytest.skip(MISSING)


class Mismatch(AssertionError):
    pass


class Matcher:
    """Compares actual values with recorded ones, binding numbered placeholders to the
    values they stand for across every comparison made with this matcher (one case)."""

    def __init__(self, *, account: str, region: str) -> None:
        self.account = account
        # The account as it appears in ARNs (`:acct:`) and queue URLs (`/acct/`).
        self._account_in = re.compile(rf"(?<=[:/]){re.escape(account)}(?=[:/]|$)")
        self.region = region
        self.bindings: dict[str, Any] = {}
        self._bound_values: dict[str, str] = {}

    def differences(self, recorded: Any, actual: Any, path: str = "$") -> list[str]:
        found: list[str] = []
        self._compare(recorded, actual, path, found)
        return found

    def check(self, recorded: Any, actual: Any, what: str = "$") -> None:
        found = self.differences(recorded, actual, what)
        if found:
            shown = "\n  ".join(found[:20])
            raise Mismatch(f"{len(found)} difference(s) from AWS's recording:\n  {shown}")

    def _compare(self, recorded: Any, actual: Any, path: str, found: list[str]) -> None:
        if isinstance(recorded, dict):
            if isinstance(actual, str) and actual.startswith("{"):
                with contextlib.suppress(ValueError):
                    actual = json.loads(actual)
            if not isinstance(actual, dict):
                found.append(f"{path}: expected an object, got {_short(actual)}")
                return
            missing = sorted(set(recorded) - set(actual))
            extra = sorted(set(actual) - set(recorded))
            if missing:
                found.append(f"{path}: missing keys {missing}")
            if extra:
                found.append(f"{path}: unexpected keys {extra}")
            for key in recorded:
                if key in actual:
                    self._compare(recorded[key], actual[key], f"{path}.{key}", found)
        elif isinstance(recorded, list):
            if not isinstance(actual, list):
                found.append(f"{path}: expected a list, got {_short(actual)}")
                return
            if len(recorded) != len(actual):
                found.append(f"{path}: expected {len(recorded)} items, got {len(actual)}")
            for index, (want, got) in enumerate(zip(recorded, actual, strict=False)):
                self._compare(want, got, f"{path}[{index}]", found)
        elif isinstance(recorded, str):
            self._compare_string(recorded, actual, path, found)
        elif recorded != actual or type(recorded) is not type(actual):
            numbers = isinstance(recorded, float | int) and isinstance(actual, float | int)
            if numbers and recorded == actual and not isinstance(actual, bool):
                return
            found.append(f"{path}: expected {_short(recorded)}, got {_short(actual)}")

    def _compare_string(self, recorded: str, actual: Any, path: str, found: list[str]) -> None:
        if recorded in _ANY_OF_KIND:
            if not _ANY_OF_KIND[recorded](actual):
                found.append(f"{path}: {_short(actual)} is not a {recorded}")
            return
        if recorded in _TIMESTAMP_FORMS:
            if not isinstance(actual, str) or not re.fullmatch(_TIMESTAMP_FORMS[recorded], actual):
                found.append(f"{path}: {_short(actual)} is not of the form {recorded}")
            return
        if not isinstance(actual, str):
            found.append(f"{path}: expected a string {_short(recorded)}, got {_short(actual)}")
            return
        text = self._account_in.sub(ACCOUNT, actual)
        pieces = _PLACEHOLDER.split(recorded)
        names = _PLACEHOLDER.findall(recorded)
        if not names:
            if text != recorded:
                found.append(f"{path}: expected {_short(recorded)}, got {_short(actual)}")
            return
        pattern = re.escape(pieces[0])
        for index, name in enumerate(names):
            pattern += self._pattern_for(name, index) + re.escape(pieces[index + 1])
        matched = re.fullmatch(pattern, text, re.DOTALL)
        if matched is None:
            found.append(f"{path}: {_short(actual)} does not have the form {_short(recorded)}")
            return
        for index, name in enumerate(names):
            if re.fullmatch(r"<[a-z0-9-]+:\d+>", name):
                self._bind(name, matched.group(f"p{index}"), path, found)

    def _pattern_for(self, name: str, index: int) -> str:
        if name == "<region>":
            return re.escape(self.region)
        if name == "<partition>":
            return "aws"
        if name in _TIMESTAMP_FORMS:
            return _TIMESTAMP_FORMS[name]
        return f"(?P<p{index}>.+?)"

    def _bind(self, name: str, value: str, path: str, found: list[str]) -> None:
        bound = self.bindings.setdefault(name, value)
        if bound != value:
            found.append(f"{path}: {name} stood for {bound!r}, here {value!r}")
            return
        owner = self._bound_values.setdefault(value, name)
        if owner != name and _kind(owner) == _kind(name):
            found.append(f"{path}: {value!r} is both {owner} and {name} (AWS had two values)")


def _kind(placeholder: str) -> str:
    return placeholder.rsplit(":", 1)[0]


def _short(value: Any) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 160 else text[:157] + "..."
