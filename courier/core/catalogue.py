"""Command definitions: the built-in catalogue (Esper's 37 commands, EnOS's two command types)
and the validation of a command's arguments against its definition's JSON Schema."""

from __future__ import annotations

import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import SchemaError

from courier.core import lwm2m
from courier.errors import InvalidInput

FORMATS = FormatChecker()


def _is_timezone(value: object) -> bool:
    if isinstance(value, str):
        zoneinfo.ZoneInfo(value)
    return True


def _is_date_time(value: object) -> bool:
    if isinstance(value, str):
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    return True


def _is_uri(value: object) -> bool:
    if not isinstance(value, str):
        return True
    parts = urlsplit(value)
    return bool(parts.scheme and (parts.netloc or parts.path)) and " " not in value


FORMATS.checks("iana-timezone", raises=(zoneinfo.ZoneInfoNotFoundError, ValueError))(_is_timezone)
FORMATS.checks("date-time", raises=ValueError)(_is_date_time)
FORMATS.checks("uri")(_is_uri)


@dataclass(frozen=True, slots=True)
class Definition:
    """What a command is: its arguments' JSON Schema, flags, and timing defaults and limits."""

    name: str
    schema: dict[str, Any] = field(default_factory=lambda: {"type": "object"})
    description: str = ""
    internal: bool = False
    secure: bool = False
    timeout: float | None = None
    ttl: int | None = None
    max_timeout: float | None = None
    max_ttl: int | None = None
    source: str = "tenant"  # esper | enos | edgeiq | tenant

    @property
    def builtin(self) -> bool:
        return self.source != "tenant"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "schema": self.schema,
            "description": self.description,
            "internal": self.internal,
            "secure": self.secure,
            "timeout": self.timeout,
            "ttl": self.ttl,
            "max_timeout": self.max_timeout,
            "max_ttl": self.max_ttl,
            "source": self.source,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Definition:
        return cls(**data)


def check_schema(schema: dict[str, Any]) -> None:
    """Refuse a definition whose arguments schema is not valid JSON Schema (2020-12)."""
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.path) or "schema"
        raise InvalidInput(f"schema is not valid JSON Schema at {where}: {exc.message}") from exc
    except RecursionError:
        raise InvalidInput("schema nests too deeply to be checked") from None
    if schema.get("type", "object") != "object":
        raise InvalidInput("schema must describe an object (command arguments are an object)")
    try:
        # A reference to itself with nothing in between ({"$ref": "#"}) never ends.
        list(Draft202012Validator(schema).iter_errors({}))
    except RecursionError:
        raise InvalidInput("schema refers to itself without end ($ref loop)") from None
    except Exception as exc:  # noqa: BLE001 - unresolvable $refs and the like, by any name
        raise InvalidInput(f"schema cannot be used: {exc}") from None


def validate_args(definition: Definition, args: dict[str, Any]) -> None:
    """InvalidInput naming each argument that breaks the definition, and why."""
    validator = Draft202012Validator(definition.schema, format_checker=FORMATS)
    try:
        errors = sorted(validator.iter_errors(args), key=lambda e: [str(p) for p in e.path])
    except RecursionError:
        raise InvalidInput("args nest too deeply for the command's schema") from None
    if not errors:
        check = CHECKS.get(definition.name) if definition.builtin else None
        if check is not None:
            check(args)
        return
    problems = []
    for error in errors[:10]:
        location = ".".join(["args", *(str(p) for p in error.absolute_path)])
        problems.append({"loc": location, "msg": error.message})
    detail = "; ".join(f"{p['loc']}: {p['msg']}" for p in problems)
    raise InvalidInput(f"invalid arguments for {definition.name}: {detail}", errors=problems)


def check_timing(definition: Definition, timeout: float, ttl: int) -> None:
    if definition.max_timeout is not None and timeout > definition.max_timeout:
        raise InvalidInput(
            f"timeout: {definition.name} allows at most {definition.max_timeout:g} s",
            errors=[{"loc": "timeout", "msg": f"at most {definition.max_timeout:g}"}],
        )
    if definition.max_ttl is not None and ttl > definition.max_ttl:
        raise InvalidInput(
            f"ttl: {definition.name} allows at most {definition.max_ttl} s",
            errors=[{"loc": "ttl", "msg": f"at most {definition.max_ttl}"}],
        )


# --- the built-in catalogue -------------------------------------------------------------


def _obj(required: list[str] | None = None, **properties: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    return schema


_STR = {"type": "string", "minLength": 1}
_BOOL = {"type": "boolean"}
_PACKAGE = {"type": "string", "minLength": 1, "description": "app package name"}
_WIFI = {"type": "array", "minItems": 1, "items": {"type": "object"}}
_IPV4 = {"type": "string", "format": "ipv4"}


def _int(minimum: int, maximum: int) -> dict[str, Any]:
    return {"type": "integer", "minimum": minimum, "maximum": maximum}


def _enum(*values: object) -> dict[str, Any]:
    return {"enum": list(values)}


_ESPER: dict[str, tuple[str, dict[str, Any]]] = {
    "ADD_TO_WHITELIST": (
        "Whitelist an installed system app",
        _obj(["package_name"], package_name=_PACKAGE),
    ),
    "ADD_WIFI_AP": (
        "Add Wi-Fi access points",
        _obj(["wifi_access_points"], wifi_access_points=_WIFI),
    ),
    "CLEAR_APP_DATA": (
        "Clear the data of an installed app",
        _obj(["package_name"], package_name=_PACKAGE),
    ),
    "INSTALL": ("Install an app version", _obj(["app_version"], app_version=_STR)),
    "LOCK": ("Lock the screen", _obj()),
    "REBOOT": ("Reboot", _obj()),
    "REMOVE_FROM_WHITELIST": (
        "Remove an app from the whitelist",
        _obj(["package_name"], package_name=_PACKAGE),
    ),
    "REMOVE_WIFI_AP": (
        "Remove Wi-Fi access points",
        _obj(["wifi_access_points"], wifi_access_points=_WIFI),
    ),
    "SET_APP_PERMISSION": (
        "Set a permission of an app",
        _obj(
            ["package_name", "grant_state", "permission"],
            package_name=_PACKAGE,
            grant_state=_enum(
                "PERMISSION_GRANT_STATE_DEFAULT",
                "PERMISSION_GRANT_STATE_DENIED",
                "PERMISSION_GRANT_STATE_GRANTED",
            ),
            permission=_STR,
        ),
    ),
    "SET_APP_STATE": (
        "Show, hide or disable an app",
        _obj(
            ["app_state", "package_name"],
            app_state=_enum("SHOW", "HIDE", "DISABLE"),
            package_name=_PACKAGE,
        ),
    ),
    "SET_BLUETOOTH_STATE": (
        "Bluetooth on or off",
        _obj(["bluetooth_state"], bluetooth_state=_BOOL),
    ),
    "SET_BRIGHTNESS_SCALE": (
        "Set the brightness",
        _obj(["brightness_value"], brightness_value=_int(1, 100)),
    ),
    "SET_DEVICE_LOCKDOWN_STATE": (
        "Lock down or release the device",
        _obj(["state", "message"], state=_enum("LOCKED", "UNLOCKED"), message={"type": "string"}),
    ),
    "SET_GPS_STATE": (
        "Set the location mode (0 high accuracy, 1 sensors only, 2 battery saving, 3 off, 4 on)",
        _obj(["gps_state"], gps_state=_int(0, 4)),
    ),
    "SET_KIOSK_APP": ("Set the kiosk app", _obj(["package_name"], package_name=_PACKAGE)),
    "SET_NEW_POLICY": (
        "Apply a policy",
        _obj(["policy_url"], policy_url={"type": "string", "format": "uri"}),
    ),
    "SET_ROTATION_STATE": (
        "Screen orientation (0 auto, 1 portrait, 2 landscape)",
        _obj(["rotate_state"], rotate_state=_int(0, 2)),
    ),
    "SET_SCREEN_OFF_TIMEOUT": (
        "Screen off timeout in ms (-1, or 5000 to 1800000)",
        _obj(
            ["screen_off_timeout"],
            screen_off_timeout={
                "oneOf": [{"const": -1}, {"type": "integer", "minimum": 5000, "maximum": 1_800_000}]
            },
        ),
    ),
    "SET_STREAM_VOLUME": (
        "Volume of a stream (0 ring, 1 notification, 2 alarm, 3 music)",
        _obj(["stream", "volume_level"], stream=_int(0, 3), volume_level=_int(0, 100)),
    ),
    "SET_TIMEZONE": (
        "Set the time zone",
        _obj(["timezone_string"], timezone_string={"type": "string", "format": "iana-timezone"}),
    ),
    "SET_WIFI_STATE": ("Wi-Fi on or off", _obj(["wifi_state"], wifi_state=_BOOL)),
    "UNINSTALL": ("Uninstall an app", _obj(["package_name"], package_name=_PACKAGE)),
    "UPDATE_DEVICE_CONFIG": ("Push additional configuration", _obj()),
    "UPDATE_HEARTBEAT": ("Ping the device", _obj()),
    "UPDATE_LATEST_DPC": ("Update the device policy controller", _obj()),
    "WIPE": ("Wipe the device", _obj()),
    "RESET_LOCKSCREEN_PASSWORD": (
        "Change the lock screen password",
        _obj(["new_lockscreen_password"], new_lockscreen_password=_STR),
    ),
    "CAPTURE_SCREENSHOT": ("Take a screenshot", _obj(tag={"type": "string"})),
    "UPDATE_BLUEPRINT": ("Reapply the current blueprint", _obj()),
    "NOTIFY_DEVICE": (
        "Show a message, now or as a scheduled message",
        {
            **_obj(
                ["title", "message"],
                title={"type": "string"},
                message={"type": "string"},
                url={"type": "string", "format": "uri"},
                name={"type": "string"},
                time_type=_enum("console", "device"),
                start_datetime={"type": "string", "format": "date-time"},
                end_datetime={"type": "string", "format": "date-time"},
            ),
            "dependentRequired": {
                key: ["name", "time_type", "start_datetime", "end_datetime"]
                for key in ("name", "time_type", "start_datetime", "end_datetime")
            },
        },
    ),
    "SET_DEVICE_LANGUAGE": (
        "Set the language: xx[_Zzzz]_yy",
        _obj(
            ["locale"], locale={"type": "string", "pattern": "^[a-z]{2}(_[A-Z][a-z]{3})?_[A-Z]{2}$"}
        ),
    ),
    "SET_ETHERNET_SETTINGS": ("Ethernet settings", _obj()),
    "SET_STATIC_IP": (
        "Static IP settings",
        {
            **_obj(
                ["interface", "static_ip", "primary_dns", "subnet_mask", "gateway"],
                interface=_STR,
                dhcp_enabled=_BOOL,
                dhcp_dnabled=_BOOL,
                static_ip=_IPV4,
                primary_dns=_IPV4,
                secondary_dns=_IPV4,
                subnet_mask=_IPV4,
                gateway=_IPV4,
            ),
            "anyOf": [{"required": ["dhcp_enabled"]}, {"required": ["dhcp_dnabled"]}],
        },
    ),
    "BEEP_DEVICE": ("Beep for a duration", _obj(duration=_int(1, 600))),
    "SET_APP_NOTIFICATIONS": (
        "Enable or disable an app's notifications",
        _obj(
            ["app_notifications_state", "package_name"],
            app_notifications_state=_enum("ENABLED", "DISABLED"),
            package_name=_PACKAGE,
        ),
    ),
    "USE_ONLY_SAVED_WIFI_AP": (
        "Connect only to saved Wi-Fi access points",
        _obj(["use_only_saved_ap"], use_only_saved_ap=_BOOL),
    ),
    "CONVERGE": ("Converge to the latest blueprint version", _obj()),
}

_ENOS_TIMING = {"timeout": 30.0, "max_timeout": 60.0, "ttl": 0, "max_ttl": 48 * 3600}

BUILTINS: dict[str, Definition] = {
    name: Definition(name, schema, description, internal=name == "UPDATE_HEARTBEAT", source="esper")
    for name, (description, schema) in _ESPER.items()
} | {
    "ENOS_MEASUREPOINT_SET": Definition(
        "ENOS_MEASUREPOINT_SET",
        _obj(
            ["inputData"],
            inputData={
                "type": "object",
                "minProperties": 1,
                "description": "measurement point -> value",
            },
        ),
        "EnOS measurement point setting (commandType 1)",
        source="enos",
        **_ENOS_TIMING,  # type: ignore[arg-type]
    ),
    "ENOS_SERVICE_INVOKE": Definition(
        "ENOS_SERVICE_INVOKE",
        _obj(["tslIdentifier", "inputData"], tslIdentifier=_STR, inputData={"type": "object"}),
        "EnOS service invocation (commandType 2)",
        source="enos",
        **_ENOS_TIMING,  # type: ignore[arg-type]
    ),
}


# EdgeIQ's gateway command types, in the native shape (the seed's argument names).
_EDGEIQ = {
    "lwm2m_request": Definition(
        "lwm2m_request",
        _obj(
            ["type", "endpoint"],
            type=_enum(*lwm2m.REQUEST_TYPES),
            endpoint={"type": "string", "description": "LwM2M path /obj[/inst[/res[/ri]]]"},
            data={"description": "write: a value or {type, value}; exec: arguments"},
        ),
        "An LwM2M operation on a path",
        source="edgeiq",
    ),
    "lwm2m_file": Definition(
        "lwm2m_file",
        _obj(
            ["type", "filepath"],
            type=_enum("fileupload", "filedownload"),
            file_id=_STR,
            filepath=_STR,
        ),
        "Push a stored file to the device, or fetch a file from it",
        source="edgeiq",
    ),
    "software_update": Definition(
        "software_update",
        _obj(["software_update_id"], software_update_id=_STR),
        "Install a software update package",
        source="edgeiq",
    ),
    "setting": Definition(
        "setting",
        _obj(["setting_id"], setting_id=_STR),
        "Push a named setting document",
        source="edgeiq",
    ),
}
BUILTINS |= _EDGEIQ
CHECKS: dict[str, Callable[[dict[str, Any]], None]] = {
    "lwm2m_request": lwm2m.check_request,
    "lwm2m_file": lwm2m.check_file,
}
