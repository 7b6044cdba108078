"""Courier's exception tree: one root, one class per purpose.

CourierError
├── ConfigError            bad settings (flags, environment, TOML)
├── InvalidInput           a request or payload that breaks a rule (HTTP 422)
│   └── UnknownDevices     targets that are not registered in the tenant
├── NotFound               no such resource in this tenant (HTTP 404)
├── AlreadyExists          a resource with that id exists (HTTP 409)
├── IllegalTransition      a state change the transition table refuses (HTTP 409)
├── QueueFull              a device's queue bound would be exceeded (HTTP 409)
├── IdempotencyConflict    an Idempotency-Key reused with another body (HTTP 409)
├── Unauthorized           no valid API key (HTTP 401)
├── Forbidden              the key lacks the scope (HTTP 403)
├── RateLimited            too many calls for this key (HTTP 429)
├── StoreError             the database failed; driver errors are translated here
└── TransportError         the MQTT connection failed or is down
"""

from __future__ import annotations

from typing import Any


class CourierError(Exception):
    """Courier failed."""

    status = 500
    slug = "internal"

    def __init__(self, message: str | None = None, **extra: Any) -> None:
        self.message = message or (self.__doc__ or self.__class__.__name__).strip()
        self.extra = extra
        super().__init__(self.message)


class ConfigError(CourierError):
    """The configuration is invalid."""

    slug = "config"


class InvalidInput(CourierError):
    """The input breaks a rule."""

    status = 422
    slug = "invalid-input"


class UnknownDevices(InvalidInput):
    """Some target devices are not registered in this tenant."""

    slug = "unknown-devices"

    def __init__(self, device_ids: list[str]) -> None:
        shown = ", ".join(device_ids[:20]) + (" ..." if len(device_ids) > 20 else "")
        super().__init__(f"unknown device ids: {shown}", devices=device_ids)


class UnknownGroups(InvalidInput):
    """Some target groups do not exist in this tenant."""

    slug = "unknown-groups"

    def __init__(self, group_ids: list[str]) -> None:
        super().__init__(f"unknown group ids: {', '.join(group_ids[:20])}", groups=group_ids)


class NotFound(CourierError):
    """No such resource."""

    status = 404
    slug = "not-found"


class AlreadyExists(CourierError):
    """A resource with that id already exists."""

    status = 409
    slug = "already-exists"


class IllegalTransition(CourierError):
    """The execution cannot move to that state from its current one."""

    status = 409
    slug = "illegal-transition"

    def __init__(self, current: str, target: str, why: str = "") -> None:
        message = f"cannot go from {current} to {target}" + (f": {why}" if why else "")
        super().__init__(message, current_state=current, requested_state=target)


class QueueFull(CourierError):
    """A device has too many pending executions."""

    status = 409
    slug = "queue-full"


class IdempotencyConflict(CourierError):
    """The Idempotency-Key was used before with a different request body."""

    status = 409
    slug = "idempotency-conflict"


class Unauthorized(CourierError):
    """A valid API key is required."""

    status = 401
    slug = "unauthorized"


class Forbidden(CourierError):
    """The API key lacks the scope for this action."""

    status = 403
    slug = "forbidden"


class RateLimited(CourierError):
    """API call rate limit exceeded."""

    status = 429
    slug = "rate-limited"

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"API call rate limit exceeded; retry after {retry_after:.0f} s")
        self.retry_after = retry_after


class StoreError(CourierError):
    """The store failed."""

    status = 503
    slug = "store-unavailable"


class TransportError(CourierError):
    """The MQTT connection failed."""

    status = 503
    slug = "broker-unavailable"
