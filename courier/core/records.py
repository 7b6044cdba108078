"""The records Courier keeps: devices, requests, executions and their events."""

from __future__ import annotations

from dataclasses import field
from enum import StrEnum
from typing import Any, Generic, NamedTuple, TypeVar

from courier.core.schedule import Schedule
from courier.record import record
from courier.schemas.states import ExecutionState


class RetryOn(StrEnum):
    """Which outcomes of an attempt are retried (AWS IoT Jobs' retry criteria)."""

    TIMEOUT = "timeout"
    FAILURE = "failure"
    BOTH = "both"


class DeviceKind(StrEnum):
    DEVICE = "device"
    GATEWAY = "gateway"


class Protocol(StrEnum):
    NATIVE = "native"
    LWM2M = "lwm2m"


class DeliveryPolicy(StrEnum):
    """How many of a device's due executions may be on the device at once."""

    BURST = "burst"
    SEQUENTIAL_ON_ACK = "sequential_on_ack"
    SEQUENTIAL_ON_RESULT = "sequential_on_result"


class DeviceType(StrEnum):
    """Which target devices a request reaches, by presence at creation (Esper)."""

    ACTIVE = "active"
    INACTIVE = "inactive"
    ALL = "all"


@record
class RetryPolicy:
    max_attempts: int = 3
    on: RetryOn = RetryOn.TIMEOUT
    initial: float = 1.0
    multiplier: float = 2.0
    max_delay: float = 60.0


@record
class Device:
    id: str
    tenant: str
    kind: DeviceKind = DeviceKind.DEVICE
    gateway_id: str | None = None
    protocol: Protocol = Protocol.NATIVE
    labels: dict[str, str] = field(default_factory=dict)
    timezone: str | None = None
    delivery_policy: DeliveryPolicy = DeliveryPolicy.BURST
    password_hash: str | None = None
    online: bool = False
    last_seen: float | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    authorization_ids: tuple[str, ...] = ()
    payload_key: str | None = None  # Base64 AES-256 key of its secure deferred payloads


@record
class Rollout:
    """A gradual delivery: at most `max_per_minute` sends a minute, and an abort rule."""

    max_per_minute: int | None = None
    abort_failure_percent: float | None = None
    abort_min_finished: int = 10

    def to_json(self) -> dict[str, Any]:
        return {
            "max_per_minute": self.max_per_minute,
            "abort_failure_percent": self.abort_failure_percent,
            "abort_min_finished": self.abort_min_finished,
        }


@record
class TargetFilter:
    """DYNAMIC targets: candidates (these devices and groups' members, else every device of
    the tenant) narrowed by labels (all must match), kind and presence."""

    devices: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    kind: DeviceKind | None = None
    online: bool | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "devices": list(self.devices),
            "groups": list(self.groups),
            "labels": dict(self.labels),
            "kind": None if self.kind is None else self.kind.value,
            "online": self.online,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TargetFilter:
        return cls(
            devices=tuple(data.get("devices") or ()),
            groups=tuple(data.get("groups") or ()),
            labels=tuple(sorted((data.get("labels") or {}).items())),
            kind=None if data.get("kind") is None else DeviceKind(data["kind"]),
            online=data.get("online"),
        )


@record
class Group:
    id: str
    tenant: str
    name: str
    created_at: float
    updated_at: float
    size: int = 0


@record
class Tenant:
    id: str
    timezone: str | None = None


@record
class CommandRequest:
    """What an upstream asked once; its executions carry it to each device."""

    id: str
    tenant: str
    command: str
    args: dict[str, Any]
    devices: list[str]
    device_type: DeviceType
    ttl: int
    timeout: float
    ack_timeout: float
    retry: RetryPolicy
    priority: int
    issued_by: str
    created_at: float
    command_type: str = "DEVICE"
    idempotency_key: str | None = None
    body_hash: str | None = None
    skipped: list[dict[str, str]] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    filter: TargetFilter | None = None
    schedule: Schedule | None = None
    rollout: Rollout | None = None
    rollout_state: str | None = None
    internal: bool = False


class Execution(NamedTuple):
    """One delivery of one request to one device.

    A NamedTuple, not a dataclass: the bridge builds, compares and copies thousands a
    second, and a tuple does each at C speed (`_replace` for a changed copy).
    """

    id: str
    tenant: str
    request_id: str
    device_id: str
    route_id: str
    command: str
    state: ExecutionState
    attempt: int
    retry: RetryPolicy
    priority: int
    timeout: float
    ack_timeout: float
    created_at: float
    updated_at: float
    expires_at: float
    not_before: float
    sent_at: float | None = None
    ack_deadline: float | None = None
    deadline: float | None = None
    wake_at: float | None = None
    reason: str | None = None
    output: Any = None
    progress: int | None = None
    reply_floor: int = 0
    retry_of: str | None = None
    internal: bool = False
    window_end: float | None = None
    attempt_base: int = 0
    seq: int = 0


class Event(NamedTuple):
    """One line of an execution's history."""

    execution_id: str
    tenant: str
    at: float
    kind: str
    from_state: ExecutionState | None
    to_state: ExecutionState
    actor: str
    attempt: int
    reason: str | None = None
    data: dict[str, Any] | None = None


@record
class Dispatch:
    """An execution just marked SENT, with what its envelope needs."""

    execution: Execution
    args: dict[str, Any]
    request_created_at: float


@record
class Change:
    """A decision to persist: the execution after it, and the event that explains it."""

    before: Execution | None
    after: Execution
    event: Event
    dispatch: Dispatch | None = None  # set when the change is a send the bridge must publish

    @property
    def state_changed(self) -> bool:
        return self.before is None or self.before.state != self.after.state


@record
class Ignored:
    """A reply or update that changes nothing; `event` is kept in history when set."""

    why: str
    event: Event | None = None


@record
class ApiKey:
    id: str
    tenant: str
    secret_hash: str
    scopes: frozenset[str]
    name: str
    created_at: float
    expires_at: float | None = None
    revoked_at: float | None = None


T = TypeVar("T")


@record
class Page(Generic[T]):
    count: int
    results: list[T]
    capped: bool = False  # more than `count` match; counting stopped there
