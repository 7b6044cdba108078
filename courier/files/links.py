"""Signed, expiring links: devices download a stored file, or upload one for an execution,
with no API key. A link is a payload and its HMAC-SHA256 under this deployment's secret."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

import orjson

from courier.errors import CourierError


class BadLink(CourierError):
    """This link is invalid or has expired."""

    status = 403
    slug = "bad-link"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Links:
    def __init__(self, secret: str, public_url: str, ttl: float) -> None:
        self._key = secret.encode()
        self.public_url = public_url.rstrip("/")
        self.ttl = ttl

    def _sign(self, payload: dict[str, Any]) -> str:
        body = _b64(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS))
        mac = _b64(hmac.new(self._key, body.encode(), hashlib.sha256).digest())
        return f"{body}.{mac}"

    def download(self, tenant: str, file_id: str, now: float) -> tuple[str, float]:
        expires = now + self.ttl
        token = self._sign({"p": "get", "t": tenant, "f": file_id, "x": expires})
        return f"{self.public_url}/v1/files/{token}", expires

    def upload(
        self, tenant: str, execution_id: str, filepath: str, now: float
    ) -> tuple[str, float]:
        expires = now + self.ttl
        token = self._sign(
            {"p": "put", "t": tenant, "e": execution_id, "n": filepath, "x": expires}
        )
        return f"{self.public_url}/v1/uploads/{token}", expires

    def read(self, token: str, purpose: str, now: float) -> dict[str, Any]:
        """The payload of a valid, unexpired link made for `purpose`; BadLink otherwise."""
        body, _, mac = token.partition(".")
        expected = _b64(hmac.new(self._key, body.encode(), hashlib.sha256).digest())
        if not mac or not hmac.compare_digest(mac, expected):
            raise BadLink("this link is not valid")
        try:
            payload: dict[str, Any] = orjson.loads(_unb64(body))
        except (ValueError, orjson.JSONDecodeError) as exc:
            raise BadLink("this link is not valid") from exc
        if payload.get("p") != purpose:
            raise BadLink("this link is not valid here")
        if float(payload.get("x", 0)) <= now:
            raise BadLink("this link has expired")
        return payload
