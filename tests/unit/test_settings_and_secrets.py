"""Settings parsing, API keys, device password hashes, the rate limiter, ids."""

from __future__ import annotations

import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from courier import ids as ids_module
from courier.api.limits import RateLimiter
from courier.clock import isoformat
from courier.credentials import (
    mosquitto_hash,
    mosquitto_verify,
    new_api_key,
    parse_api_key,
    secret_matches,
)
from courier.errors import ConfigError
from courier.ids import describe_bad_device_id, is_device_id, new_id
from courier.settings import Settings, load_toml
from courier.store import open_store


def test_defaults_are_the_documented_ones() -> None:
    s = Settings()
    assert s.broker == "mqtt://127.0.0.1:1883"
    assert s.store == "sqlite:///courier.db"
    assert s.http_address == ("127.0.0.1", 8080)
    assert s.prefix == "courier"


@pytest.mark.parametrize(
    "values",
    [
        {"http": "8080"},
        {"http": "host:99999"},
        {"broker": "http://x"},
        {"prefix": "a/#"},
        {"in_flight": 0},
        {"log_level": "loud"},
        {"log_format": "xml"},
        {"max_payload": "lots"},
        {"nonsense": 1},
    ],
)
def test_bad_settings_are_refused(values: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        Settings.from_mapping(values)


def test_settings_from_strings_and_toml(tmp_path: Path) -> None:
    s = Settings.from_mapping({"in_flight": "7", "ack_timeout": "2.5"})
    assert s.in_flight == 7
    assert s.ack_timeout == 2.5
    path = tmp_path / "c.toml"
    path.write_text('[courier]\nprefix = "fleet"\nqueue-bound = 5\n')
    assert Settings.from_mapping(load_toml(path)).queue_bound == 5
    path.write_text("not = [toml")
    with pytest.raises(ConfigError):
        load_toml(path)


@pytest.mark.parametrize(
    "url", ["postgresql://x", "sqlite://host/db", "sqlite:///x?synchronous=OFF"]
)
def test_bad_store_urls(url: str) -> None:
    with pytest.raises(ConfigError):
        open_store(url)


def test_api_keys() -> None:
    key_id, token, stored = new_api_key()
    parsed = parse_api_key(token)
    assert parsed is not None
    assert parsed.key_id == key_id
    assert secret_matches(parsed.secret, stored)
    assert not secret_matches(parsed.secret + "x", stored)
    for bad in ("", "ck_short_x", "xx_0123456789abcdef_s", "ck_0123456789abcdef_"):
        assert parse_api_key(bad) is None


def test_mosquitto_password_hash() -> None:
    stored = mosquitto_hash("s3cret", salt=b"0123456789ab")
    assert stored.startswith("$7$101$MDEyMzQ1Njc4OWFi$")
    assert mosquitto_verify("s3cret", stored)
    assert not mosquitto_verify("wrong", stored)
    assert not mosquitto_verify("s3cret", "$6$garbage")


def test_rate_limiter() -> None:
    limiter = RateLimiter(rate=2.0, burst=3)
    assert [limiter.check("k", 0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.check("k", 0.0) == pytest.approx(0.5)
    assert limiter.check("other", 0.0) == 0.0
    assert limiter.check("k", 0.5) == 0.0
    assert RateLimiter(rate=0, burst=1).check("k", 0.0) == 0.0


@pytest.mark.parametrize(
    ("value", "ok", "why"),
    [
        ("pump-7", True, ""),
        ("01a2014a-5bf5-78c0-a1f3-7fa20e8fb0e1", True, ""),
        ("a/b", False, "'/'"),
        ("a+b", False, "'+'"),
        ("a#b", False, "'#'"),
        ("a$b", False, "'$'"),
        ("a:b", False, "':'"),
        ("a\0b", False, "NUL"),
        ("", False, "empty"),
        ("x" * 65, False, "longer than 64"),
        ("-lead", False, "must match"),
        ("ünïcode", False, "must match"),
    ],
)
def test_device_ids(value: str, ok: bool, why: str) -> None:
    assert is_device_id(value) is ok
    assert is_device_id(value) is ok  # the second time from the ids kept
    if not ok:
        assert why in describe_bad_device_id(value)


def test_new_ids_sort_by_creation() -> None:
    ids = [new_id() for _ in range(50)]
    assert len(set(ids)) == 50
    assert [i[:13] for i in ids] == sorted(i[:13] for i in ids)
    assert all(i[14] == "7" for i in ids)


@given(st.floats(min_value=0, max_value=4_102_444_800, allow_nan=False))
def test_fast_isoformat_matches_datetime(ts: float) -> None:
    expected = datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")
    assert isoformat(ts) == expected.replace("+00:00", "Z")


def test_isoformat_keeps_answering_right_after_its_memory_is_full() -> None:
    times = [1_800_000_000 + i * 0.0137 for i in range(10_000)]
    first = [isoformat(t) for t in times]
    again = [isoformat(t) for t in reversed(times)]
    assert again[::-1] == first
    for t, text in zip(times[::997], first[::997], strict=True):
        assert text == datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def test_device_id_memory_stays_bounded_and_right() -> None:
    ids = [f"dev-{i}" for i in range(70_000)]
    assert all(is_device_id(i) for i in ids)
    assert not is_device_id("dev/1")
    assert not is_device_id("dev/1")  # a refused id is never kept
    assert all(is_device_id(i) for i in ids[:100])
    assert len(ids_module._known_ids) <= ids_module._KNOWN_IDS_KEPT


def test_new_ids_are_uuid7_and_never_shared_by_threads_or_a_forked_child() -> None:
    new_id()  # the parent holds random bytes not used yet
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child only reports
        os.write(write, new_id().encode())
        os._exit(0)
    os.close(write)
    os.waitpid(child, 0)
    from_child = os.read(read, 100).decode()
    os.close(read)
    with ThreadPoolExecutor(4) as pool:
        ids = [
            i
            for batch in pool.map(lambda _: [new_id() for _ in range(2000)], range(4))
            for i in batch
        ]
    ids += [new_id(), from_child]
    assert len(set(ids)) == len(ids)
    for text in ids[::97]:
        parsed = uuid.UUID(text)
        assert parsed.version == 7
        assert parsed.variant == uuid.RFC_4122
        assert str(parsed) == text
