"""Secure deferred payloads (Servitly style): build them for a device, and read them back.

A payload is the compact JSON `{"ts","sta","stp","aid","pid","cmd","dat","page"}`, one per
authorization id. For a secure command definition the JSON is encrypted with the device's
shared key (AES-256-GCM) and sent as Base64(nonce || ciphertext || tag).
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from collections.abc import Sequence
from typing import Any, TypeVar

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from courier.errors import InvalidInput
from courier.record import record

KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
MAX_PAGES = 255
PAGE_RE = re.compile(r"0x([0-9A-Fa-f]{2})([0-9A-Fa-f]{2})")

T = TypeVar("T")


class PayloadRejected(Exception):
    """The device refuses a deferred payload."""


class PayloadMalformed(PayloadRejected):
    """Not Base64, not JSON, or a field is missing or has the wrong type."""


class PayloadTampered(PayloadRejected):
    """The payload fails GCM authentication: wrong key or modified bytes."""


class PayloadNotYetValid(PayloadRejected):
    """The validity window has not started on the device clock."""


class PayloadExpired(PayloadRejected):
    """The validity window is over on the device clock."""


class PayloadReplayed(PayloadRejected):
    """This payload id was accepted before."""


class ReplayCacheFull(PayloadRejected):
    """Every remembered payload id is still valid: forgetting one would reopen it to
    replay, so no new payload is accepted until one expires (or the capacity is raised)."""


@record
class DeferredPayload:
    ts: int
    sta: int
    stp: int
    aid: str | None
    pid: str
    cmd: str
    dat: dict[str, Any]
    page: str | None


def new_device_key() -> bytes:
    """A fresh AES-256 shared key for a device."""
    return secrets.token_bytes(KEY_BYTES)


def encode_key(key: bytes) -> str:
    return base64.b64encode(_checked_key(key)).decode("ascii")


def decode_key(text: str) -> bytes:
    """The key from its standard Base64 text; InvalidInput unless it is exactly 32 bytes."""
    try:
        key = base64.b64decode(text.strip().encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error) as exc:
        raise InvalidInput("the device key is not valid Base64") from exc
    return _checked_key(key)


def page_label(count: int, index: int) -> str:
    """`0xXXYY`: XX the number of authorization ids, YY this one's index (uppercase hex)."""
    if not 1 <= count <= MAX_PAGES:
        raise InvalidInput(f"between 1 and {MAX_PAGES} authorization ids are allowed, not {count}")
    if not 0 <= index < count:
        raise InvalidInput(f"page index {index} is outside 0..{count - 1}")
    return f"0x{count:02X}{index:02X}"


def build_payloads(
    command: str,
    args: dict[str, Any],
    authorization_ids: Sequence[str],
    valid_from: int,
    valid_until: int,
    now: int,
    secure: bool,
    key: bytes | None,
) -> list[str]:
    """One string-encoded payload per authorization id (one without `aid` when there are none)."""
    if not command:
        raise InvalidInput("the command name is empty")
    if valid_until <= valid_from:
        raise InvalidInput("valid_until must be after valid_from")
    if secure and (key is None or len(key) != KEY_BYTES):
        raise InvalidInput(f"a secure command needs a {KEY_BYTES}-byte device key")
    if any(not aid for aid in authorization_ids):
        raise InvalidInput("authorization ids must not be empty")
    if len(set(authorization_ids)) != len(authorization_ids):
        raise InvalidInput("authorization ids must be distinct")
    count = len(authorization_ids)
    if count > MAX_PAGES:
        raise InvalidInput(f"at most {MAX_PAGES} authorization ids fit in a page label")

    payloads = []
    for index, aid in enumerate(authorization_ids or [None]):
        body: dict[str, Any] = {"ts": now, "sta": valid_from, "stp": valid_until}
        if aid is not None:
            body["aid"] = aid
        body |= {"pid": secrets.token_hex(8), "cmd": command, "dat": args}
        if aid is not None:
            body["page"] = page_label(count, index)
        try:
            raw = orjson.dumps(body)
        except orjson.JSONEncodeError as exc:
            raise InvalidInput(f"the command arguments are not JSON: {exc}") from exc
        payloads.append(_encrypt(raw, key) if secure and key is not None else raw.decode())
    return payloads


def decrypt_payload(text: str, key: bytes) -> bytes:
    """The JSON bytes of a secure payload; PayloadMalformed or PayloadTampered when refused."""
    aead = AESGCM(_checked_key(key))
    try:
        blob = base64.b64decode(text.strip().encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error) as exc:
        raise PayloadMalformed("the payload is not valid Base64") from exc
    if len(blob) < NONCE_BYTES + TAG_BYTES:
        raise PayloadMalformed("the payload is too short to be encrypted")
    try:
        return aead.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], None)
    except InvalidTag as exc:
        raise PayloadTampered from exc


def parse_payload(raw: bytes) -> DeferredPayload:
    """Read and type-check the JSON of a payload; PayloadMalformed when it does not fit."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise PayloadMalformed("the payload is not JSON") from exc
    if not isinstance(body, dict):
        raise PayloadMalformed("the payload is not a JSON object")
    ts, sta, stp = (_field(body, name, int) for name in ("ts", "sta", "stp"))
    if stp <= sta:
        raise PayloadMalformed("the validity window is empty (stp <= sta)")
    pid = _field(body, "pid", str)
    cmd = _field(body, "cmd", str)
    if not pid or not cmd:
        raise PayloadMalformed("pid and cmd must not be empty")
    aid = _optional(body, "aid", str)
    page = _optional(body, "page", str)
    if page is not None:
        match = PAGE_RE.fullmatch(page)
        if match is None or not int(match[2], 16) < int(match[1], 16):
            raise PayloadMalformed(f"page {page!r} is not 0xXXYY with YY < XX")
    return DeferredPayload(ts, sta, stp, aid, pid, cmd, _field(body, "dat", dict), page)


def _encrypt(raw: bytes, key: bytes) -> str:
    # A fresh random nonce per payload: GCM loses both secrecy and integrity if one repeats.
    nonce = secrets.token_bytes(NONCE_BYTES)
    return base64.b64encode(nonce + AESGCM(key).encrypt(nonce, raw, None)).decode("ascii")


def _checked_key(key: bytes) -> bytes:
    if len(key) != KEY_BYTES:
        raise InvalidInput(f"the device key must be {KEY_BYTES} bytes, not {len(key)}")
    return key


def _field(body: dict[str, Any], name: str, kind: type[T]) -> T:
    value = _optional(body, name, kind)
    if value is None:
        raise PayloadMalformed(f"the payload has no {name!r}")
    return value


def _optional(body: dict[str, Any], name: str, kind: type[T]) -> T | None:
    value = body.get(name)
    if value is None:
        return None
    # bool is a subclass of int, but `true` is no timestamp.
    if not isinstance(value, kind) or isinstance(value, bool):
        raise PayloadMalformed(f"{name!r} must be {kind.__name__}")
    return value
