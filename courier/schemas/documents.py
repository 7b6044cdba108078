"""REST bodies of the file store, software updates, settings and stored commands."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from courier.clock import isoformat
from courier.core.documents import Setting, SoftwareUpdate, StoredCommand, StoredFile
from courier.ids import NAME_PATTERN
from courier.schemas.common import StrictIn


class FileOut(BaseModel):
    id: str
    name: str
    size: int = Field(description="bytes")
    sha256: str = Field(description="hex digest of the bytes")
    content_type: str
    execution_id: str | None = Field(description="the execution a device uploaded it for")
    created_on: str

    @classmethod
    def of(cls, stored: StoredFile) -> FileOut:
        return cls(
            id=stored.id,
            name=stored.name,
            size=stored.size,
            sha256=stored.sha256,
            content_type=stored.content_type,
            execution_id=stored.execution_id,
            created_on=isoformat(stored.created_at),
        )


class UploadedOut(BaseModel):
    """What a device gets back after uploading through its signed link."""

    file_id: str
    size: int
    sha256: str


class SoftwareUpdateIn(StrictIn):
    name: str = Field(min_length=1, max_length=200, description="package name")
    version: str = Field(min_length=1, max_length=100)
    file_id: str = Field(min_length=1, max_length=64, description="a file of the file store")
    target: str = Field("", max_length=200, description="what it installs on (a model, a kind)")
    description: str = Field("", max_length=2000)


class SoftwareUpdateOut(BaseModel):
    id: str
    name: str
    version: str
    file_id: str
    target: str
    description: str
    created_on: str

    @classmethod
    def of(cls, update: SoftwareUpdate) -> SoftwareUpdateOut:
        return cls(
            id=update.id,
            name=update.name,
            version=update.version,
            file_id=update.file_id,
            target=update.target,
            description=update.description,
            created_on=isoformat(update.created_at),
        )


class SettingIn(StrictIn):
    name: str = Field(pattern=NAME_PATTERN, description="unique in the tenant")
    document: dict[str, Any] = Field(description="the JSON document pushed to devices")


class SettingOut(BaseModel):
    id: str
    name: str
    document: dict[str, Any]
    created_on: str
    updated_on: str

    @classmethod
    def of(cls, setting: Setting) -> SettingOut:
        return cls(
            id=setting.id,
            name=setting.name,
            document=setting.document,
            created_on=isoformat(setting.created_at),
            updated_on=isoformat(setting.updated_at or setting.created_at),
        )


class StoredCommandIn(StrictIn):
    name: str = Field(pattern=NAME_PATTERN, description="unique in the tenant")
    command: str = Field(pattern=NAME_PATTERN, description="the command it runs")
    args: dict[str, Any] = Field(default_factory=dict)
    timeout: float | None = Field(None, gt=0, le=86400)
    ttl: int | None = Field(None, ge=0, le=30 * 86400)


class StoredCommandOut(BaseModel):
    id: str
    name: str
    command: str
    args: dict[str, Any]
    timeout: float | None
    ttl: int | None
    created_on: str

    @classmethod
    def of(cls, stored: StoredCommand) -> StoredCommandOut:
        return cls(
            id=stored.id,
            name=stored.name,
            command=stored.command,
            args=stored.args,
            timeout=stored.timeout,
            ttl=stored.ttl,
            created_on=isoformat(stored.created_at),
        )
