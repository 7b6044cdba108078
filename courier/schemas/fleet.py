"""REST bodies for fleets: target filters, schedules, rollouts, groups, definitions, tenants."""

from __future__ import annotations

from datetime import datetime, time
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from courier.core.catalogue import Definition, check_schema
from courier.core.records import DeviceKind, Rollout, TargetFilter
from courier.core.schedule import DAYS, Schedule, ScheduleKind, TimeType
from courier.errors import InvalidInput
from courier.ids import DEVICE_ID_PATTERN, NAME_PATTERN
from courier.schemas.common import DeviceId, LabelKey, StrictIn, check_timezone

GroupId = Annotated[str, Field(pattern=DEVICE_ID_PATTERN, description="group id")]
Day = Literal["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]


class TargetFilterIn(StrictIn):
    """DYNAMIC targets: these devices and the members of these groups (every device of the
    tenant when neither is given), narrowed by labels (all must match), kind and presence."""

    devices: list[DeviceId] = Field(default_factory=list, max_length=1000)
    groups: list[GroupId] = Field(default_factory=list, max_length=500)
    labels: dict[LabelKey, Annotated[str, Field(max_length=256)]] = Field(
        default_factory=dict, max_length=32
    )
    kind: DeviceKind | None = None
    online: bool | None = None

    @model_validator(mode="after")
    def _something(self) -> TargetFilterIn:
        if not (self.devices or self.groups or self.labels or self.kind or self.online is not None):
            raise ValueError("a filter needs at least one of devices, groups, labels, kind, online")
        return self

    def record(self) -> TargetFilter:
        return TargetFilter(
            devices=tuple(dict.fromkeys(self.devices)),
            groups=tuple(dict.fromkeys(self.groups)),
            labels=tuple(sorted(self.labels.items())),
            kind=self.kind,
            online=self.online,
        )


class ScheduleArgsIn(StrictIn):
    """When a WINDOW or RECURRING command may be sent. Date-times without a time zone, and
    the daily window, are read in `time_type`'s zone: the tenant's (console) or each
    device's own (device)."""

    name: str | None = Field(None, max_length=128)
    start_datetime: datetime | None = None
    end_datetime: datetime | None = None
    window_start_time: time | None = Field(None, description="daily window opens, HH:MM")
    window_end_time: time | None = Field(None, description="closes; before the start = next day")
    days: list[Day] = Field(default_factory=list, description="days a daily window opens on")
    time_type: TimeType = TimeType.CONSOLE

    def record(self, kind: ScheduleKind) -> Schedule:
        return Schedule(
            kind=kind,
            start=self.start_datetime,
            end=self.end_datetime,
            daily_start=self.window_start_time,
            daily_end=self.window_end_time,
            days=frozenset(DAYS.index(d) for d in self.days),
            time_type=self.time_type,
        )


class RolloutIn(StrictIn):
    """A gradual delivery for GROUP and DYNAMIC requests (as AWS IoT Jobs)."""

    max_per_minute: int | None = Field(None, ge=1, le=1_000_000, description="sends a minute")
    abort_failure_percent: float | None = Field(
        None, gt=0, le=100, description="stop sending when more than this % of finished failed"
    )
    abort_min_finished: int = Field(10, ge=1, description="...of at least this many finished")

    def record(self) -> Rollout:
        return Rollout(self.max_per_minute, self.abort_failure_percent, self.abort_min_finished)


class RolloutOut(BaseModel):
    max_per_minute: int | None
    abort_failure_percent: float | None
    abort_min_finished: int
    state: Literal["running", "aborted", "completed"]
    reason: str | None = None


def check_schedule(kind: str, args: ScheduleArgsIn | None) -> Schedule | None:
    if kind == "IMMEDIATE":
        if args is not None:
            raise ValueError("schedule_args only go with a WINDOW or RECURRING schedule")
        return None
    if args is None:
        raise ValueError(f"a {kind} schedule needs schedule_args")
    try:
        return args.record(ScheduleKind(kind))
    except InvalidInput as exc:
        raise ValueError(exc.message) from exc


class GroupIn(StrictIn):
    name: str = Field(min_length=1, max_length=128)
    id: GroupId | None = Field(None, description="chosen id; a UUID is made when absent")
    devices: list[DeviceId] = Field(default_factory=list, max_length=10_000)


class GroupPatch(StrictIn):
    name: str = Field(min_length=1, max_length=128)


class GroupOut(BaseModel):
    id: str
    tenant: str
    name: str
    size: int
    created_on: str
    updated_on: str


class DefinitionIn(StrictIn):
    """A command of the tenant's catalogue: its arguments' JSON Schema and defaults."""

    name: str = Field(pattern=NAME_PATTERN)
    description: str = Field("", max_length=1024)
    schema_: dict[str, Any] = Field(
        default_factory=lambda: {"type": "object"},
        alias="schema",
        description="JSON Schema (2020-12) of the command's args",
    )
    internal: bool = False
    secure: bool = False
    timeout: float | None = Field(None, ge=1, le=7 * 86400)
    ttl: int | None = Field(None, ge=0, le=30 * 86400)
    max_timeout: float | None = Field(None, ge=1, le=7 * 86400)
    max_ttl: int | None = Field(None, ge=0, le=30 * 86400)

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @field_validator("schema_")
    @classmethod
    def _valid_schema(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            check_schema(value)
        except InvalidInput as exc:
            raise ValueError(exc.message) from exc
        return value

    def record(self) -> Definition:
        return Definition(
            name=self.name,
            schema=self.schema_,
            description=self.description,
            internal=self.internal,
            secure=self.secure,
            timeout=self.timeout,
            ttl=self.ttl,
            max_timeout=self.max_timeout,
            max_ttl=self.max_ttl,
        )


class DefinitionOut(BaseModel):
    name: str
    description: str
    schema_: dict[str, Any] = Field(serialization_alias="schema")
    internal: bool
    secure: bool
    timeout: float | None
    ttl: int | None
    max_timeout: float | None
    max_ttl: int | None
    builtin: bool
    source: str

    @classmethod
    def of(cls, d: Definition) -> DefinitionOut:
        return cls(
            name=d.name,
            description=d.description,
            schema_=d.schema,
            internal=d.internal,
            secure=d.secure,
            timeout=d.timeout,
            ttl=d.ttl,
            max_timeout=d.max_timeout,
            max_ttl=d.max_ttl,
            builtin=d.builtin,
            source=d.source,
        )


class TenantPatch(StrictIn):
    timezone: Annotated[str | None, AfterValidator(check_timezone)] = Field(
        None, description="IANA zone of console-time schedules"
    )


class TenantOut(BaseModel):
    id: str
    timezone: str | None
