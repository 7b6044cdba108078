"""EdgeIQ's gateway command body (seeds/002), translated to a native command request."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from courier.core.documents import StoredCommand
from courier.core.records import RetryOn
from courier.errors import InvalidInput
from courier.ids import NAME_PATTERN
from courier.schemas.api import CommandRequestIn, ExecutionRef
from courier.schemas.common import DeviceId, StrictIn
from courier.schemas.mqtt import describe

# command_type -> the argument that must come with it.
NEEDS = {
    "software_update": "software_update_id",
    "setting": "setting_id",
    "command": "command_id",
}
LWM2M_FIELDS = ("type", "endpoint", "data", "file_id", "filepath")


class RetryOptionsIn(StrictIn):
    max_retries: int = Field(2, ge=0, le=9, description="attempts after the first")
    retry_on: RetryOn = Field(RetryOn.BOTH, description="timeout, failure or both")
    interval: float = Field(1.0, gt=0, le=3600, description="seconds before the first retry")


class GatewayCommandType(StrEnum):
    """EdgeIQ's gateway command types that need more than a payload."""

    SOFTWARE_UPDATE = "software_update"
    SETTING = "setting"
    COMMAND = "command"  # a stored command, by `command_id`
    LWM2M_REQUEST = "lwm2m_request"
    LWM2M_FILE = "lwm2m_file"


CatalogueCommand = Annotated[
    str, Field(pattern=NAME_PATTERN, description="any command of the catalogue")
]


class GatewayScheduleIn(StrictIn):
    """When a software update may run: a WINDOW (start/end, an optional daily window)."""

    type: Literal["IMMEDIATE", "WINDOW", "RECURRING"] = "WINDOW"
    start_datetime: Any = None
    end_datetime: Any = None
    window_start_time: Any = None
    window_end_time: Any = None
    days: list[str] = Field(default_factory=list, description="day names, in any case")
    time_type: str = "console"

    @field_validator("days")
    @classmethod
    def _lower_days(cls, days: list[str]) -> list[str]:
        return [day.lower() for day in days]


class GatewayCommandIn(StrictIn):
    command_type: GatewayCommandType | CatalogueCommand = Field(
        description="software_update, setting, command (a stored command), lwm2m_request, "
        "lwm2m_file, or any command of the catalogue (its arguments in `payload`)",
    )
    payload: dict[str, Any] = Field(default_factory=dict)
    schedule: GatewayScheduleIn | None = None
    expiry: int | None = Field(None, ge=0, le=30 * 86400, description="seconds before abort")
    setting_id: str | None = Field(None, max_length=64)
    command_id: str | None = Field(None, max_length=64, description="a stored command's id")
    software_update_id: str | None = Field(None, max_length=64)
    attached_device_ids: list[DeviceId] = Field(default_factory=list, max_length=1000)
    retry_options: RetryOptionsIn | None = None
    type: str | None = Field(None, description="the LwM2M operation or file direction")
    endpoint: str | None = Field(None, description="the LwM2M path")
    data: Any = Field(None, description="the value of an LwM2M write")
    file_id: str | None = None
    filepath: str | None = None

    @model_validator(mode="after")
    def _schedule_for_software_updates(self) -> GatewayCommandIn:
        if self.schedule is not None and self.command_type != GatewayCommandType.SOFTWARE_UPDATE:
            raise ValueError("schedule: only a software_update gateway command has a schedule")
        return self

    def native(self, targets: list[str], stored: StoredCommand | None) -> CommandRequestIn:
        """The equivalent native request (`stored`: the stored command `command_id` names)."""
        command, args = str(self.command_type), dict(self.payload)
        body: dict[str, Any] = {"devices": targets}
        if command in NEEDS:
            field = NEEDS[command]
            value = getattr(self, field)
            if value is None:
                raise InvalidInput(f"{field}: a {command} gateway command needs it")
            if stored is not None:
                command, args = stored.command, {**stored.args, **args}
                if stored.timeout is not None:
                    body["timeout"] = stored.timeout
                if stored.ttl is not None:
                    body["ttl"] = stored.ttl
            else:
                args[field] = value
        elif command in ("lwm2m_request", "lwm2m_file"):
            for name in LWM2M_FIELDS:
                value = getattr(self, name)
                if value is not None:
                    args[name] = value
        body |= {"command": command, "args": args}
        if self.expiry is not None:
            body["ttl"] = self.expiry
        if self.retry_options is not None:
            options = self.retry_options
            body["retry"] = {
                "max_attempts": options.max_retries + 1,
                "on": options.retry_on,
                "backoff": {"initial": options.interval},
            }
        if self.schedule is not None and self.schedule.type != "IMMEDIATE":
            schedule = self.schedule.model_dump(exclude={"type"}, exclude_none=True)
            body["schedule"] = self.schedule.type
            body["schedule_args"] = schedule
        try:
            return CommandRequestIn.model_validate(body)
        except ValidationError as exc:
            raise InvalidInput(describe(exc)) from None


class GatewayCommandOut(BaseModel):
    """The gateway command as created: the request id and one execution per target."""

    id: str = Field(alias="_id")
    command_type: str
    device_id: str
    attached_device_ids: list[str]
    payload: dict[str, Any]
    created_at: str
    executions: list[ExecutionRef]

    model_config = {"populate_by_name": True}
