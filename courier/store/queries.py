"""Load named SQL queries ("-- name: x" blocks) from a dialect's .sql file."""

from __future__ import annotations

import re
from importlib import resources

_NAME = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)


def parse_queries(text: str) -> dict[str, str]:
    """Split a .sql file into {name: statement} (comments kept out, trailing ';' dropped)."""
    queries: dict[str, str] = {}
    matches = list(_NAME.finditer(text))
    for index, match in enumerate(matches):
        end = matches[index + 1].start() if index + 1 < len(matches) else len(text)
        body = text[match.end() : end]
        lines = [ln for ln in body.splitlines() if ln.strip() and not ln.strip().startswith("--")]
        queries[match.group(1)] = "\n".join(lines).strip().rstrip(";")
    return queries


def load_queries(dialect: str, **fragments: str) -> dict[str, str]:
    """The named queries of `dialect`, with `{fragment}` placeholders filled in."""
    text = resources.files("courier.store").joinpath(f"sql/{dialect}.sql").read_text("utf-8")
    return {name: sql.format(**fragments) for name, sql in parse_queries(text).items()}


def migrations(dialect: str) -> list[tuple[int, str, str]]:
    """(version, name, sql) of each migration file of `dialect`, in order."""
    folder = resources.files("courier.store").joinpath(f"migrations/{dialect}")
    found: list[tuple[int, str, str]] = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            version = int(entry.name.split("_", 1)[0])
            found.append((version, entry.name, entry.read_text("utf-8")))
    return sorted(found)
