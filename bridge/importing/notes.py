"""What an import tells its user: where in the template each part came from, what was
read past (roles, permissions), and what is not supported (a warning, or with `--strict`
an error). Nothing of a template is dropped without one of these."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

Location = tuple[str | int, ...]


class TemplateError(Exception):
    """A template that cannot be imported: one line, `file:line: key.path: message`."""


def format_location(location: Location) -> str:
    text = ""
    for part in location:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            key = part if part.isprintable() else repr(part)
            text += f".{key}" if text else key
    return text or "(top level)"


@dataclass(frozen=True)
class Note:
    location: Location
    message: str
    unsupported: bool  # True: something not carried over; False: information


@dataclass
class Notes:
    """Collects the notes of one import; `strict` turns the unsupported ones into errors."""

    file: Path
    lines: dict[Location, int] = field(default_factory=dict)
    strict: bool = False
    items: list[Note] = field(default_factory=list)

    def line_of(self, location: Location) -> int:
        for end in range(len(location), -1, -1):
            line = self.lines.get(location[:end])
            if line is not None:
                return line
        return 1

    def where(self, location: Location) -> str:
        return f"{self.file}:{self.line_of(location)}: {format_location(location)}"

    def unsupported(self, location: Location, message: str) -> None:
        self.items.append(Note(location, message, unsupported=True))

    def info(self, location: Location, message: str) -> None:
        self.items.append(Note(location, message, unsupported=False))

    def error(self, location: Location, message: str) -> TemplateError:
        return TemplateError(f"{self.where(location)}: {message}")

    def lines_for_stderr(self) -> list[str]:
        """`warning:` / `note:` lines, in template order."""
        ordered = sorted(self.items, key=lambda note: self.line_of(note.location))
        return [
            f"{'warning' if note.unsupported else 'note'}: {self.where(note.location)}: "
            f"{note.message}"
            for note in ordered
        ]

    def strict_problems(self) -> list[str]:
        if not self.strict:
            return []
        return [
            f"{self.where(note.location)}: {note.message}"
            for note in sorted(self.items, key=lambda n: self.line_of(n.location))
            if note.unsupported
        ]
