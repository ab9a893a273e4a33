"""The `wildcard` operator of event patterns (esm-reference.md 11.3, EventBridge-only).

`*` matches any run of characters, line breaks included; `\\*` is a literal `*` and `\\\\`
a literal backslash; any other backslash is itself. A pattern may hold at most five
`*` and never two in a row (EventBridge's limits and reasons).

A pattern is split on its wildcards into literal pieces: the first must start the value,
the last must end it, and the pieces between are found in order, each leftmost after the
one before. For globs whose only metacharacter is `*` that greedy leftmost search decides
a full match exactly, and it reads the value a bounded number of times: matching takes
time linear in the value, whatever the value holds.
"""

from __future__ import annotations

from collections.abc import Callable

MAX_WILDCARDS = 5

TOO_COMPLEX = (
    "Rule is too complex - try using fewer wildcard characters or fewer repeating "
    "character sequences after a wildcard character"
)


class WildcardError(ValueError):
    """A wildcard pattern EventBridge rejects; the message is its reason."""


def wildcard_pieces(pattern: str) -> list[str]:
    """The literal pieces between the pattern's unescaped `*`: one more than there are
    wildcards. Raises WildcardError."""
    pieces: list[str] = []
    current: list[str] = []
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char == "\\" and index + 1 < len(pattern) and pattern[index + 1] in "*\\":
            current.append(pattern[index + 1])
            index += 2
            continue
        if char == "*":
            if index + 1 < len(pattern) and pattern[index + 1] == "*":
                raise WildcardError(f"Consecutive wildcard characters at pos {index + 1}")
            pieces.append("".join(current))
            current = []
        else:
            current.append(char)
        index += 1
    pieces.append("".join(current))
    if len(pieces) - 1 > MAX_WILDCARDS:
        raise WildcardError(TOO_COMPLEX)
    return pieces


def compile_wildcard(pattern: str) -> Callable[[str], bool]:
    """A test of whether a whole string matches `pattern`. Raises WildcardError."""
    pieces = wildcard_pieces(pattern)
    if len(pieces) == 1:
        (exact,) = pieces
        return exact.__eq__
    first, *middle, last = pieces
    fixed = len(first) + len(last)

    def matches(value: str) -> bool:
        end = len(value) - len(last)
        if len(value) < fixed or not value.startswith(first) or not value.endswith(last):
            return False
        position = len(first)
        for piece in middle:
            found = value.find(piece, position, end)
            if found < 0:
                return False
            position = found + len(piece)
        return True

    return matches
