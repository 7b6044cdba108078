"""`courier apikey create|list|revoke` on a real SQLite store, through the CLI itself."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from click.testing import CliRunner

from courier.cli import main
from courier.core.records import ApiKey
from courier.credentials import new_api_key
from courier.store import open_store


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def listed(store: str) -> dict[str, str]:
    code, out = cli("apikey", "list", "--tenant", "acme", "--store", store)
    assert code == 0, out
    return {line.split()[0]: line.split()[2] for line in out.splitlines()}


async def add_expired_key(store_url: str) -> str:
    store = open_store(store_url)
    await store.open()
    key_id, _, secret_hash = new_api_key()
    key = ApiKey(key_id, "acme", secret_hash, frozenset({"read"}), "old", 1.0, expires_at=2.0)
    await store.add_api_key(key)
    await store.close()
    return key_id


def test_keys_are_created_listed_with_their_state_and_revoked(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path}/c.db"
    code, out = cli("apikey", "create", "--tenant", "acme", "--expires-in", "30", "--store", store)
    assert code == 2
    assert "--expires-in" in out
    code, out = cli(
        "apikey", "create", "--tenant", "acme", "--scopes", "read", "--json", "--store", store
    )
    assert code == 0, out
    created = json.loads(out)
    assert created["scopes"] == ["read"]
    assert created["key"].startswith("ck_")
    expired = asyncio.run(add_expired_key(store))
    assert listed(store) == {created["id"]: "active", expired: "expired"}
    assert created["key"] not in cli("apikey", "list", "--tenant", "acme", "--store", store)[1]

    code, out = cli("apikey", "revoke", "--tenant", "acme", created["id"], "--store", store)
    assert (code, out.strip()) == (0, f"revoked {created['id']}")
    assert listed(store)[created["id"]] == "revoked"
    code, out = cli("apikey", "revoke", "--tenant", "other", expired, "--store", store)
    assert code != 0
    assert "no API key" in out
