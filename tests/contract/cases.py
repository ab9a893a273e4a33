"""What every role's registry shares: how a kind declares the cases that do not apply to
it or differ, and the decorator that runs a case once for every kind."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, Protocol

import pytest


class Declares(Protocol):
    @property
    def name(self) -> str: ...

    # Case -> why it does not apply (the test is skipped with that reason).
    @property
    def does_not_apply(self) -> Mapping[str, str]: ...

    # Case -> a known difference from the contract (a strict xfail: fixing it fails it).
    @property
    def known_differences(self) -> Mapping[str, str]: ...


def check_declared(kind: Declares, cases: Collection[str]) -> None:
    unknown = (set(kind.does_not_apply) | set(kind.known_differences)) - set(cases)
    assert not unknown, f"{kind.name}: no such cases {sorted(unknown)}"


def for_every_kind(
    case: str, cases: Collection[str], kinds: Sequence[Declares]
) -> Callable[[Callable[..., None]], Any]:
    """Parametrizes a test over `kinds` as `kind`; where the case does not apply to one,
    it is skipped with the registry's reason."""
    assert case in cases, case

    def marks(kind: Declares) -> list[pytest.MarkDecorator]:
        if case in kind.does_not_apply:
            return [pytest.mark.skip(reason=kind.does_not_apply[case])]
        if case in kind.known_differences:
            return [pytest.mark.xfail(reason=kind.known_differences[case], strict=True)]
        return []

    params = [pytest.param(kind, id=kind.name, marks=marks(kind)) for kind in kinds]
    return pytest.mark.parametrize("kind", params)
