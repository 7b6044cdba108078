"""Courier's MQTT topic layout (SPEC section 6): building and parsing, no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from courier.errors import ConfigError
from courier.ids import is_device_id
from courier.record import record


class TopicKind(StrEnum):
    COMMAND = "command"
    REPLY = "reply"
    NOTIFY = "notify"
    PRESENCE = "presence"
    ATTACHED_PRESENCE = "attached_presence"
    REQUESTS = "requests"
    EVENTS = "events"


@record
class ParsedTopic:
    kind: TopicKind
    device: str | None = None
    execution: str | None = None
    attached: str | None = None
    tenant: str | None = None


def validate_prefix(prefix: str) -> str:
    if not prefix or prefix.startswith(("/", "$")) or prefix.endswith("/"):
        raise ConfigError(f"topic prefix {prefix!r} must be non-empty, not start with / or $")
    if any(c in prefix for c in "+#\0") or "//" in prefix:
        raise ConfigError(f"topic prefix {prefix!r} must not contain + # NUL or empty levels")
    return prefix


@dataclass(frozen=True, slots=True)
class Topics:
    """The topics under one prefix `P`."""

    prefix: str = "courier"

    def __post_init__(self) -> None:
        validate_prefix(self.prefix)

    def command(self, device: str, execution: str) -> str:
        return f"{self.prefix}/devices/{device}/commands/{execution}"

    def commands_of(self, device: str) -> str:
        return f"{self.prefix}/devices/{device}/commands/+"

    def reply(self, device: str, execution: str) -> str:
        return f"{self.prefix}/devices/{device}/replies/{execution}"

    def notification(self, device: str, execution: str) -> str:
        """Where a native device reports a change it observes (an LwM2M observe)."""
        return f"{self.prefix}/devices/{device}/notify/{execution}"

    def presence(self, device: str) -> str:
        return f"{self.prefix}/devices/{device}/presence"

    def attached_presence(self, gateway: str, device: str) -> str:
        return f"{self.prefix}/devices/{gateway}/attached/{device}/presence"

    def requests(self, tenant: str) -> str:
        return f"{self.prefix}/tenants/{tenant}/requests"

    def events(self, tenant: str) -> str:
        return f"{self.prefix}/tenants/{tenant}/events"

    @property
    def all_replies(self) -> str:
        return f"{self.prefix}/devices/+/replies/+"

    @property
    def all_notifications(self) -> str:
        return f"{self.prefix}/devices/+/notify/+"

    @property
    def all_presence(self) -> str:
        return f"{self.prefix}/devices/+/presence"

    @property
    def all_attached_presence(self) -> str:
        return f"{self.prefix}/devices/+/attached/+/presence"

    @property
    def all_requests(self) -> str:
        return f"{self.prefix}/tenants/+/requests"

    def parse(self, topic: str) -> ParsedTopic | None:
        """What a topic under this prefix is; None if it is not one of Courier's or is malformed."""
        head = self.prefix + "/"
        if not topic.startswith(head):
            return None
        levels = topic[len(head) :].split("/")
        if len(levels) >= 3 and levels[0] == "devices" and is_device_id(levels[1]):
            device = levels[1]
            if len(levels) == 3 and levels[2] == "presence":
                return ParsedTopic(TopicKind.PRESENCE, device=device)
            if len(levels) == 4 and levels[3]:
                if levels[2] == "replies":
                    return ParsedTopic(TopicKind.REPLY, device=device, execution=levels[3])
                if levels[2] == "commands":
                    return ParsedTopic(TopicKind.COMMAND, device=device, execution=levels[3])
                if levels[2] == "notify":
                    return ParsedTopic(TopicKind.NOTIFY, device=device, execution=levels[3])
            if (
                len(levels) == 5
                and levels[2] == "attached"
                and levels[4] == "presence"
                and is_device_id(levels[3])
            ):
                return ParsedTopic(TopicKind.ATTACHED_PRESENCE, device=device, attached=levels[3])
        if len(levels) == 3 and levels[0] == "tenants" and is_device_id(levels[1]):
            if levels[2] == "requests":
                return ParsedTopic(TopicKind.REQUESTS, tenant=levels[1])
            if levels[2] == "events":
                return ParsedTopic(TopicKind.EVENTS, tenant=levels[1])
        return None
