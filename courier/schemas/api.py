"""REST bodies (native /v1 API): what clients send and what Courier answers."""

from __future__ import annotations

from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from courier.core.records import (
    DeliveryPolicy,
    DeviceKind,
    DeviceType,
    Protocol,
    RetryOn,
    RetryPolicy,
)
from courier.ids import DEVICE_ID_PATTERN, NAME_PATTERN
from courier.schemas.common import DeviceId, Labels, StrictIn, check_timezone
from courier.schemas.fleet import (
    RolloutIn,
    RolloutOut,
    ScheduleArgsIn,
    TargetFilterIn,
    check_schedule,
)
from courier.schemas.states import ExecutionState

T = TypeVar("T")
AuthorizationIds = Annotated[
    list[Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f]+$")]],
    Field(max_length=255),
]
SCOPES = ("read", "execute", "admin")


class BackoffIn(StrictIn):
    model_config = ConfigDict(frozen=True)  # its default is one shared value

    initial: float = Field(1.0, gt=0, le=3600, description="first delay, seconds")
    multiplier: float = Field(2.0, ge=1, le=10)
    max: float = Field(60.0, gt=0, le=86400, description="largest delay, seconds")


class RetryIn(StrictIn):
    model_config = ConfigDict(frozen=True)  # its default is one shared value

    max_attempts: int = Field(3, ge=1, le=10, description="sends at most, first one included")
    on: RetryOn = Field(RetryOn.TIMEOUT, description="retry after a timeout, a failure, or both")
    backoff: BackoffIn = BackoffIn()

    def record(self) -> RetryPolicy:
        b = self.backoff
        return RetryPolicy(
            max_attempts=self.max_attempts,
            on=self.on,
            initial=b.initial,
            multiplier=b.multiplier,
            max_delay=b.max,
        )


DEFAULT_RETRY = RetryIn()  # shared by every body that names no retry (nothing built per body)
DEFAULT_POLICY = DEFAULT_RETRY.record()


class CommandRequestIn(StrictIn):
    """A command request: one command for devices, groups, or a dynamic set of devices."""

    command_type: Literal["DEVICE", "GROUP", "DYNAMIC"] = "DEVICE"
    devices: list[DeviceId] = Field(default_factory=list, max_length=1000, validate_default=True)
    groups: list[Annotated[str, Field(pattern=DEVICE_ID_PATTERN)]] = Field(
        default_factory=list, max_length=500, validate_default=True
    )
    filter: TargetFilterIn | None = Field(None, validate_default=True)
    device_type: DeviceType = DeviceType.ALL
    command: str = Field(pattern=NAME_PATTERN)
    args: dict[str, Any] = Field(default_factory=dict)
    schedule: Literal["IMMEDIATE", "WINDOW", "RECURRING"] = "IMMEDIATE"
    schedule_args: ScheduleArgsIn | None = Field(None, validate_default=True)
    ttl: int | None = Field(
        None,
        ge=0,
        le=30 * 86400,
        description="seconds (default 86400, or the command's); 0 = instant",
    )
    timeout: float | None = Field(
        None, ge=1, le=7 * 86400, description="seconds per attempt (default 30, or the command's)"
    )
    ack_timeout: float | None = Field(
        None, ge=0.1, le=86400, description="seconds to wait for an ACK before resending"
    )
    retry: RetryIn = DEFAULT_RETRY
    priority: int = Field(0, ge=-100, le=100, description="higher is sent first")
    rollout: RolloutIn | None = None

    @field_validator("devices")
    @classmethod
    def _devices(cls, value: list[str], info: ValidationInfo) -> list[str]:
        kind = info.data.get("command_type")
        if kind == "DEVICE" and not value:
            raise ValueError("a DEVICE request lists at least one device")
        if kind != "DEVICE" and value:
            raise ValueError(f"a {kind} request takes no devices (a DYNAMIC one has a filter)")
        return value

    @field_validator("groups")
    @classmethod
    def _groups(cls, value: list[str], info: ValidationInfo) -> list[str]:
        kind = info.data.get("command_type")
        if kind == "GROUP" and not value:
            raise ValueError("a GROUP request lists at least one group")
        if kind != "GROUP" and value:
            raise ValueError(f"a {kind} request takes no groups (a DYNAMIC one has a filter)")
        return value

    @field_validator("filter")
    @classmethod
    def _filter(cls, value: TargetFilterIn | None, info: ValidationInfo) -> TargetFilterIn | None:
        kind = info.data.get("command_type")
        if kind == "DYNAMIC" and value is None:
            raise ValueError("a DYNAMIC request needs a filter")
        if kind != "DYNAMIC" and value is not None:
            raise ValueError(f"a {kind} request takes no filter")
        return value

    @field_validator("schedule_args")
    @classmethod
    def _schedule(cls, value: ScheduleArgsIn | None, info: ValidationInfo) -> ScheduleArgsIn | None:
        check_schedule(info.data.get("schedule", "IMMEDIATE"), value)
        return value

    @field_validator("rollout")
    @classmethod
    def _rollout(cls, value: RolloutIn | None, info: ValidationInfo) -> RolloutIn | None:
        if value is not None and info.data.get("command_type") == "DEVICE":
            raise ValueError("rollouts are for GROUP and DYNAMIC requests")
        return value


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
    filter: dict[str, Any] | None = None
    device_type: DeviceType
    command: str
    args: dict[str, Any]
    internal: bool = False
    schedule: str
    schedule_args: dict[str, Any] | None = None
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
    rollout: RolloutOut | None = None


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


class StateUpdateIn(StrictIn):
    """A state update by a device or an agent acting for it (Esper's PUT)."""

    state: ExecutionState
    reason: str | None = Field(None, max_length=1024)
    output: dict[str, Any] | None = None
    progress: int | None = Field(None, ge=0, le=100)


class CancelIn(StrictIn):
    reason: str | None = Field(None, max_length=1024)


class DeviceIn(StrictIn):
    id: DeviceId
    kind: DeviceKind = DeviceKind.DEVICE
    gateway_id: DeviceId | None = Field(
        None, description="the gateway this device is attached to (it has no MQTT connection)"
    )
    protocol: Protocol = Protocol.NATIVE
    labels: Labels = Field(default_factory=dict)
    timezone: str | None = None
    delivery_policy: DeliveryPolicy = DeliveryPolicy.BURST
    authorization_ids: AuthorizationIds = Field(
        default_factory=list, description="who may run its deferred payloads (one page each)"
    )

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str | None) -> str | None:
        return check_timezone(value)


class DevicePatch(StrictIn):
    labels: Labels | None = None
    timezone: str | None = None
    delivery_policy: DeliveryPolicy | None = None
    authorization_ids: AuthorizationIds | None = None

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str | None) -> str | None:
        return check_timezone(value)


class DeviceOut(BaseModel):
    id: str
    tenant: str
    kind: DeviceKind
    gateway_id: str | None
    protocol: Protocol
    labels: dict[str, str]
    timezone: str | None
    delivery_policy: DeliveryPolicy
    authorization_ids: list[str]
    online: bool
    last_seen: str | None
    created_on: str
    updated_on: str


class Credentials(BaseModel):
    username: str
    password: str


class PayloadKey(BaseModel):
    payload_key: str = Field(description="Base64 AES-256 key, shown only once")


class DeviceCreated(DeviceOut):
    credentials: Credentials | None = Field(
        description="the MQTT password, shown only once (none for an attached device)"
    )
    payload_key: str = Field(
        description="Base64 AES-256 key of its secure deferred payloads, shown only once"
    )


class ApiKeyIn(StrictIn):
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
