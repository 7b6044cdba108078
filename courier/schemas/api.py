"""REST bodies (native /v1 API): what clients send and what Courier answers."""

from __future__ import annotations

import zoneinfo
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from courier.core.records import DeliveryPolicy, DeviceKind, DeviceType, Protocol, RetryOn
from courier.ids import NAME_PATTERN, describe_bad_device_id, is_device_id
from courier.schemas.states import ExecutionState

T = TypeVar("T")
SCOPES = ("read", "execute", "admin")


def _device_id(value: str) -> str:
    if not is_device_id(value):
        raise ValueError(describe_bad_device_id(value))
    return value


DeviceId = Annotated[str, AfterValidator(_device_id)]
Labels = Annotated[dict[str, Annotated[str, Field(max_length=256)]], Field(max_length=64)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BackoffIn(_In):
    initial: float = Field(1.0, gt=0, le=3600, description="first delay, seconds")
    multiplier: float = Field(2.0, ge=1, le=10)
    max: float = Field(60.0, gt=0, le=86400, description="largest delay, seconds")


class RetryIn(_In):
    max_attempts: int = Field(3, ge=1, le=10, description="sends at most, first one included")
    on: RetryOn = Field(RetryOn.TIMEOUT, description="retry after a timeout, a failure, or both")
    backoff: BackoffIn = Field(default_factory=BackoffIn)


class CommandRequestIn(_In):
    """A command request: one command for a list of devices."""

    command_type: Literal["DEVICE"] = "DEVICE"
    devices: list[DeviceId] = Field(min_length=1, max_length=1000)
    groups: list[str] = Field(default_factory=list, max_length=0)
    filter: None = None
    device_type: DeviceType = DeviceType.ALL
    command: str = Field(pattern=NAME_PATTERN)
    args: dict[str, Any] = Field(default_factory=dict)
    schedule: Literal["IMMEDIATE"] = "IMMEDIATE"
    schedule_args: None = None
    ttl: int = Field(86400, ge=0, le=30 * 86400, description="seconds; 0 = instant")
    timeout: float = Field(30.0, ge=1, le=7 * 86400, description="seconds per attempt")
    ack_timeout: float | None = Field(
        None, ge=0.1, le=86400, description="seconds to wait for an ACK before resending"
    )
    retry: RetryIn = Field(default_factory=RetryIn)
    priority: int = Field(0, ge=-100, le=100, description="higher is sent first")


class ExecutionRef(BaseModel):
    id: str
    device: str
    state: ExecutionState


class SkippedDevice(BaseModel):
    device: str
    reason: str


class CommandRequestOut(BaseModel):
    id: str
    tenant: str
    command_type: str
    devices: list[str]
    groups: list[str]
    device_type: DeviceType
    command: str
    args: dict[str, Any]
    schedule: str
    ttl: int
    timeout: float
    ack_timeout: float
    retry: RetryIn
    priority: int
    issued_by: str
    created_on: str
    executions: list[ExecutionRef] | None = None
    skipped: list[SkippedDevice] = Field(default_factory=list)
    state_counts: dict[str, int] | None = None


class ExecutionOut(BaseModel):
    id: str
    request_id: str
    tenant: str
    device_id: str
    command: str
    state: ExecutionState
    esper_state: str
    attempt: int
    max_attempts: int
    reason: str | None
    progress: int | None
    output: Any
    created_on: str
    updated_on: str
    sent_on: str | None
    expires_on: str
    deadline_on: str | None
    retry_of: str | None


class EventOut(BaseModel):
    at: str
    kind: str
    from_state: ExecutionState | None
    state: ExecutionState
    actor: str
    attempt: int
    reason: str | None
    data: dict[str, Any] | None


class StateUpdateIn(_In):
    """A state update by a device or an agent acting for it (Esper's PUT)."""

    state: ExecutionState
    reason: str | None = Field(None, max_length=1024)
    output: dict[str, Any] | None = None
    progress: int | None = Field(None, ge=0, le=100)


class CancelIn(_In):
    reason: str | None = Field(None, max_length=1024)


class DeviceIn(_In):
    id: DeviceId
    kind: DeviceKind = DeviceKind.DEVICE
    protocol: Protocol = Protocol.NATIVE
    labels: Labels = Field(default_factory=dict)
    timezone: str | None = None
    delivery_policy: DeliveryPolicy = DeliveryPolicy.BURST

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str | None) -> str | None:
        return _check_timezone(value)


class DevicePatch(_In):
    labels: Labels | None = None
    timezone: str | None = None
    delivery_policy: DeliveryPolicy | None = None

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str | None) -> str | None:
        return _check_timezone(value)


def _check_timezone(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(
            f"unknown time zone {value!r} (use an IANA name like Europe/Paris)"
        ) from exc
    return value


class DeviceOut(BaseModel):
    id: str
    tenant: str
    kind: DeviceKind
    gateway_id: str | None
    protocol: Protocol
    labels: dict[str, str]
    timezone: str | None
    delivery_policy: DeliveryPolicy
    online: bool
    last_seen: str | None
    created_on: str
    updated_on: str


class Credentials(BaseModel):
    username: str
    password: str


class DeviceCreated(DeviceOut):
    credentials: Credentials = Field(description="the MQTT password, shown only once")


class ApiKeyIn(_In):
    scopes: list[Literal["read", "execute", "admin"]] = Field(min_length=1)
    name: str = Field("", max_length=128)
    expires_in: int | None = Field(None, ge=60, description="seconds until the key expires")


class ApiKeyOut(BaseModel):
    id: str
    tenant: str
    name: str
    scopes: list[str]
    created_on: str
    expires_on: str | None
    revoked_on: str | None


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="the key itself, shown only once")


class PageOut(BaseModel, Generic[T]):
    count: int = Field(description="matches, counted up to 10,000 (see count_capped)")
    count_capped: bool = Field(False, description="true when more than `count` match")
    next: str | None
    previous: str | None
    results: list[T]
