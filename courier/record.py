"""`@record`: an immutable data record that is cheap to build.

CPython builds a `dataclass(frozen=True)` through `object.__setattr__`, one call per field:
five times the cost of a plain slots dataclass (measured: 657 ns vs 127 ns for 7 fields),
and records are built several times for every command (messages, parsed topics, changes,
replies). A record is declared frozen to the type checker (`mypy --strict` refuses any
assignment to its fields, tests included) and built as a plain slots dataclass at run time,
with the same equality and hash as a frozen one. Configuration, built once, stays
`dataclass(frozen=True)`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar, dataclass_transform

T = TypeVar("T")


@dataclass_transform(frozen_default=True)
def record(cls: type[T]) -> type[T]:
    return dataclass(slots=True, unsafe_hash=True)(cls)
