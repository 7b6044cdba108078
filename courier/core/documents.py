"""Records kept as documents: file metadata, software updates, settings, stored commands,
LwM2M observations."""

from __future__ import annotations

from dataclasses import asdict, field, fields
from typing import Any, ClassVar, TypeVar

from courier.record import record

D = TypeVar("D", bound="Document")


@record
class Document:
    """A record with an id, a tenant and a name, stored as JSON."""

    kind: ClassVar[str] = "document"
    unique_names: ClassVar[bool] = False

    id: str
    tenant: str
    name: str
    created_at: float

    def body(self) -> dict[str, Any]:
        base = {"id", "tenant", "name", "created_at"}
        return {k: v for k, v in asdict(self).items() if k not in base}

    @classmethod
    def from_row(cls: type[D], row: dict[str, Any]) -> D:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in row["body"].items() if k in known}
        return cls(
            id=row["id"],
            tenant=row["tenant"],
            name=row["name"],
            created_at=row["created_at"],
            **values,
        )


@record
class StoredFile(Document):
    kind: ClassVar[str] = "file"
    size: int = 0
    sha256: str = ""
    content_type: str = "application/octet-stream"
    execution_id: str | None = None  # a file a device uploaded for this execution


@record
class SoftwareUpdate(Document):
    kind: ClassVar[str] = "software_update"
    version: str = ""
    file_id: str = ""
    target: str = ""
    description: str = ""


@record
class Setting(Document):
    kind: ClassVar[str] = "setting"
    unique_names: ClassVar[bool] = True
    document: dict[str, Any] = field(default_factory=dict)
    updated_at: float = 0.0


@record
class StoredCommand(Document):
    """A saved invocation: a command with its arguments and options, run by its id."""

    kind: ClassVar[str] = "stored_command"
    unique_names: ClassVar[bool] = True
    command: str = ""
    args: dict[str, Any] = field(default_factory=dict)
    timeout: float | None = None
    ttl: int | None = None


@record
class ServiceUser(Document):
    """A tenant's MQTT user for its requests and events topics; its name is the username."""

    kind: ClassVar[str] = "service_user"
    unique_names: ClassVar[bool] = True
    password_hash: str = ""


@record
class Observation(Document):
    """An LwM2M observation: from its observe execution (the id) until an observe_stop.
    Its name is "device path"."""

    kind: ClassVar[str] = "observation"
    device_id: str = ""
    path: str = ""
    stopped_at: float | None = None


@record
class Lwm2mRegistration(Document):
    """An LwM2M endpoint's registration (its id and name are the device id): online until
    `until`, unless an update extends it. Kept so that a restart still expires it."""

    kind: ClassVar[str] = "lwm2m_registration"
    lifetime: int = 0
    until: float = 0.0
