"""Secure deferred payloads: building them (Courier) and opening them (device SDK)."""

from __future__ import annotations

import base64
from pathlib import Path

import orjson
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from courier.core.deferred import (
    build_payloads,
    decode_key,
    decrypt_payload,
    encode_key,
    new_device_key,
    page_label,
    parse_payload,
)
from courier.errors import InvalidInput
from courier.gateway.deferred import (
    PayloadExpired,
    PayloadMalformed,
    PayloadNotYetValid,
    PayloadReplayed,
    PayloadTampered,
    PayloadVerifier,
    ReplayCacheCorrupt,
    ReplayCacheFull,
)

NOW = 1_700_000_000
STA = NOW - 60
STP = NOW + 3600


class FakeClock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def build(
    ids: list[str] | None = None,
    secure: bool = True,
    key: bytes | None = None,
    sta: int = STA,
    stp: int = STP,
) -> list[str]:
    return build_payloads("Clean", {"clean": True}, ids or [], sta, stp, NOW, secure, key)


@pytest.fixture
def key() -> bytes:
    return new_device_key()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "replay.json"


@pytest.fixture
def verifier(key: bytes, cache: Path, clock: FakeClock) -> PayloadVerifier:
    return PayloadVerifier(key, cache, clock=clock)


def test_three_authorization_ids_give_three_pages_with_fresh_pids_and_nonces(key: bytes) -> None:
    ids = ["alice", "bob", "carol"]
    texts = build(ids, key=key)
    bodies = [parse_payload(decrypt_payload(text, key)) for text in texts]
    assert [b.page for b in bodies] == ["0x0300", "0x0301", "0x0302"]
    assert [b.aid for b in bodies] == ids
    assert len({b.pid for b in bodies}) == 3
    assert len({base64.b64decode(text)[:12] for text in texts}) == 3
    for body in bodies:
        assert (body.ts, body.sta, body.stp, body.cmd) == (NOW, STA, STP, "Clean")
        assert body.dat == {"clean": True}


def test_plain_payload_is_compact_json_in_servitly_key_order() -> None:
    [text] = build(["alice"], secure=False)
    assert list(orjson.loads(text)) == ["ts", "sta", "stp", "aid", "pid", "cmd", "dat", "page"]
    assert " " not in text
    assert orjson.loads(text)["page"] == "0x0100"


def test_without_authorization_ids_one_payload_has_no_aid_nor_page() -> None:
    [text] = build(secure=False)
    body = orjson.loads(text)
    assert "aid" not in body
    assert "page" not in body
    parsed = parse_payload(text.encode())
    assert (parsed.aid, parsed.page) == (None, None)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sta": STP, "stp": STA}, "valid_until"),
        ({"sta": STA, "stp": STA}, "valid_until"),
        ({"key": None}, "32-byte"),
        ({"key": b"short"}, "32-byte"),
        ({"ids": ["a", "a"], "key": bytes(32)}, "distinct"),
        ({"ids": ["a", ""], "key": bytes(32)}, "empty"),
        ({"ids": [f"u{i}" for i in range(256)], "key": bytes(32)}, "255"),
    ],
)
def test_build_refuses_bad_input(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        build(**kwargs)  # type: ignore[arg-type]


def test_build_refuses_arguments_that_are_not_json() -> None:
    with pytest.raises(InvalidInput, match="not JSON"):
        build_payloads("Clean", {"x": object()}, [], STA, STP, NOW, False, None)


def test_page_label_limits() -> None:
    assert page_label(1, 0) == "0x0100"
    assert page_label(255, 254) == "0xFFFE"
    assert page_label(26, 10) == "0x1A0A"
    for count, index in [(256, 0), (0, 0), (3, 3), (3, -1)]:
        with pytest.raises(InvalidInput):
            page_label(count, index)


def test_key_round_trips_through_base64_and_bad_keys_are_refused(key: bytes) -> None:
    assert len(key) == 32
    assert decode_key(encode_key(key)) == key
    for bad in ["not base64!", base64.b64encode(bytes(16)).decode(), "é"]:
        with pytest.raises(InvalidInput):
            decode_key(bad)


def test_secure_payload_opens_with_the_right_key(verifier: PayloadVerifier, key: bytes) -> None:
    [text] = build(["alice"], key=key)
    payload = verifier.open(text, secure=True)
    assert (payload.cmd, payload.dat, payload.aid, payload.page) == (
        "Clean",
        {"clean": True},
        "alice",
        "0x0100",
    )


def test_wrong_key_is_tampered(cache: Path, clock: FakeClock, key: bytes) -> None:
    [text] = build(key=key)
    other = PayloadVerifier(new_device_key(), cache, clock=clock)
    with pytest.raises(PayloadTampered):
        other.open(text, secure=True)
    assert len(other) == 0


def test_flipped_ciphertext_byte_is_tampered(verifier: PayloadVerifier, key: bytes) -> None:
    [text] = build(key=key)
    blob = bytearray(base64.b64decode(text))
    for position in (0, 20, len(blob) - 1):  # nonce, ciphertext, tag
        changed = bytearray(blob)
        changed[position] ^= 0x01
        with pytest.raises(PayloadTampered):
            verifier.open(base64.b64encode(changed).decode(), secure=True)
    assert verifier.open(text, secure=True).cmd == "Clean"


def test_replay_is_refused_also_after_a_restart(
    verifier: PayloadVerifier, key: bytes, cache: Path, clock: FakeClock
) -> None:
    [text] = build(key=key)
    pid = verifier.open(text, secure=True).pid
    with pytest.raises(PayloadReplayed):
        verifier.open(text, secure=True)
    restarted = PayloadVerifier(key, cache, clock=clock)
    assert pid in restarted
    with pytest.raises(PayloadReplayed):
        restarted.open(text, secure=True)
    assert [p.name for p in cache.parent.iterdir()] == ["replay.json"]  # no temp files left


def test_window_is_checked_against_the_device_clock(
    verifier: PayloadVerifier, key: bytes, clock: FakeClock
) -> None:
    [text] = build(key=key)
    clock.now = STA - 1
    with pytest.raises(PayloadNotYetValid):
        verifier.open(text, secure=True)
    clock.now = STP
    with pytest.raises(PayloadExpired):
        verifier.open(text, secure=True)
    assert len(verifier) == 0  # refused payloads do not use up their pid
    clock.now = STA
    verifier.open(text, secure=True)


@pytest.mark.parametrize(
    "text",
    [
        "not base64 at all!",
        base64.b64encode(b"too short").decode(),
    ],
)
def test_secure_garbage_is_malformed(verifier: PayloadVerifier, text: str) -> None:
    with pytest.raises(PayloadMalformed):
        verifier.open(text, secure=True)


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[1, 2]",
        b'{"ts": 1, "sta": 1, "stp": 2, "cmd": "x", "dat": {}}',
        b'{"ts": 1, "sta": 1, "stp": 2, "pid": "p", "dat": {}}',
        b'{"ts": 1, "sta": 1, "stp": 2, "pid": "p", "cmd": "x"}',
        b'{"ts": 1, "stp": 2, "pid": "p", "cmd": "x", "dat": {}}',
        b'{"ts": "1", "sta": 1, "stp": 2, "pid": "p", "cmd": "x", "dat": {}}',
        b'{"ts": true, "sta": 1, "stp": 2, "pid": "p", "cmd": "x", "dat": {}}',
        b'{"ts": 1, "sta": 1, "stp": 2, "pid": 7, "cmd": "x", "dat": {}}',
        b'{"ts": 1, "sta": 1, "stp": 2, "pid": "p", "cmd": "x", "dat": []}',
        b'{"ts": 1, "sta": 2, "stp": 2, "pid": "p", "cmd": "x", "dat": {}}',
        b'{"ts": 1, "sta": 1, "stp": 2, "pid": "p", "cmd": "x", "dat": {}, "page": "0x0303"}',
        b'{"ts": 1, "sta": 1, "stp": 2, "pid": "p", "cmd": "x", "dat": {}, "aid": 5}',
    ],
)
def test_bad_json_or_fields_are_malformed(
    verifier: PayloadVerifier, key: bytes, body: bytes
) -> None:
    with pytest.raises(PayloadMalformed):
        parse_payload(body)
    with pytest.raises(PayloadMalformed):
        verifier.open(body.decode(), secure=False)
    # Encrypted with the right key it passes GCM, then fails as malformed, not tampered.
    nonce = bytes(12)
    sealed = base64.b64encode(nonce + AESGCM(key).encrypt(nonce, body, None)).decode()
    with pytest.raises(PayloadMalformed):
        verifier.open(sealed, secure=True)


def test_plain_path_works_without_a_key(cache: Path, clock: FakeClock) -> None:
    plain = PayloadVerifier(None, cache, clock=clock)
    [text] = build(["alice"], secure=False)
    assert plain.open(text, secure=False).aid == "alice"
    with pytest.raises(PayloadReplayed):
        plain.open(text, secure=False)
    with pytest.raises(InvalidInput):
        plain.open(text, secure=True)


def test_capacity_forgets_expired_ids_and_never_a_valid_one(
    key: bytes, cache: Path, clock: FakeClock
) -> None:
    verifier = PayloadVerifier(key, cache, capacity=3, clock=clock)
    [short] = build(key=key, stp=NOW + 10)
    first, second = build(["a", "b"], key=key)
    short_pid = verifier.open(short, secure=True).pid
    first_pid = verifier.open(first, secure=True).pid
    second_pid = verifier.open(second, secure=True).pid
    clock.now = NOW + 20  # `short` has expired; the other two have not

    [third] = build(key=key)
    third_pid = verifier.open(third, secure=True).pid
    assert len(verifier) == 3
    assert short_pid not in verifier
    assert all(pid in verifier for pid in (first_pid, second_pid, third_pid))

    [fourth] = build(key=key)
    with pytest.raises(ReplayCacheFull, match="still valid"):
        verifier.open(fourth, secure=True)
    assert all(pid in verifier for pid in (first_pid, second_pid, third_pid))
    with pytest.raises(PayloadReplayed):
        verifier.open(first, secure=True)
    assert len(PayloadVerifier(key, cache, capacity=3, clock=clock)) == 3
    clock.now = NOW + 4000  # all three expired: room again
    [fifth] = build(key=key, sta=NOW + 3000, stp=NOW + 5000)
    assert verifier.open(fifth, secure=True).pid in verifier
    assert len(verifier) == 1


def test_a_smaller_capacity_on_restart_keeps_every_valid_id(
    key: bytes, cache: Path, clock: FakeClock
) -> None:
    verifier = PayloadVerifier(key, cache, clock=clock)
    texts = build(["a", "b", "c"], key=key)
    pids = [verifier.open(text, secure=True).pid for text in texts]
    restarted = PayloadVerifier(key, cache, capacity=2, clock=clock)
    assert all(pid in restarted for pid in pids)
    with pytest.raises(PayloadReplayed):
        restarted.open(texts[0], secure=True)
    with pytest.raises(ReplayCacheFull):
        restarted.open(build(key=key)[0], secure=True)


def test_a_plain_payload_with_a_lone_surrogate_is_malformed(cache: Path) -> None:
    with pytest.raises(PayloadMalformed):
        PayloadVerifier(None, cache).open('{"pid": "\ud800"}', secure=False)


def test_corrupt_cache_refuses_to_start(key: bytes, cache: Path) -> None:
    for content in [b"{not json", b'{"pid": 1}', b'[["pid", "soon"]]']:
        cache.write_bytes(content)
        with pytest.raises(ReplayCacheCorrupt):
            PayloadVerifier(key, cache)


def test_verifier_refuses_a_short_key_or_zero_capacity(cache: Path) -> None:
    with pytest.raises(InvalidInput):
        PayloadVerifier(b"short", cache)
    with pytest.raises(InvalidInput):
        PayloadVerifier(None, cache, capacity=0)
