"""LwM2M operations: validation of paths and values, and the EMQX LwM2M gateway's JSON format.

Native shape (EdgeIQ's names): command `lwm2m_request` with args `type` (read, observe,
observe_stop, exec, write, discover, write-attr, create, delete), `endpoint` (the LwM2M path)
and `data`; `lwm2m_file` with `type` (fileupload, filedownload), `file_id`, `filepath`.
Plain functions of values: validate, translate a command to an EMQX request, and read an EMQX
response as a device reply.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from courier.errors import InvalidInput
from courier.schemas.states import ExecutionState

S = ExecutionState
REQUEST_TYPES = (
    "read",
    "observe",
    "observe_stop",
    "exec",
    "write",
    "discover",
    "write-attr",
    "create",
    "delete",
)
MSG_TYPES = {
    "read": "read",
    "observe": "observe",
    "observe_stop": "cancel-observe",
    "exec": "execute",
    "write": "write",
    "discover": "discover",
    "write-attr": "write-attr",
    "create": "create",
    "delete": "delete",
}
VALUE_TYPES = ("String", "Integer", "Float", "Boolean", "Time", "Opaque", "Objlnk")
ATTRIBUTES = ("pmin", "pmax", "gt", "lt", "st")
_PATH = re.compile(r"^/(\d{1,5})(?:/(\d{1,5})(?:/(\d{1,5})(?:/(\d{1,5}))?)?)?$")
# Which depth each operation takes: 1 object, 2 instance, 3 resource, 4 resource instance.
_DEPTHS = {
    "read": (1, 2, 3, 4),
    "discover": (1, 2, 3),
    "observe": (1, 2, 3, 4),
    "observe_stop": (1, 2, 3, 4),
    "exec": (3,),
    "write": (2, 3, 4),
    "write-attr": (1, 2, 3, 4),
    "create": (1,),
    "delete": (2,),
}


def _problem(loc: str, message: str) -> InvalidInput:
    return InvalidInput(f"{loc}: {message}", errors=[{"loc": loc, "msg": message}])


def parse_path(path: object, loc: str = "args.endpoint") -> tuple[int, ...]:
    """/object[/instance[/resource[/resource-instance]]], each an integer in range."""
    if not isinstance(path, str):
        raise _problem(loc, "an LwM2M path is a string like /3/0/1")
    match = _PATH.fullmatch(path)
    if match is None:
        raise _problem(loc, f"{path!r} is not an LwM2M path (/object[/instance[/resource[/ri]]])")
    ids = tuple(int(part) for part in match.groups() if part is not None)
    limits = (65534, 65534, 65534, 65534)  # 65535 is reserved (MAX_ID) at every level
    for level, (value, limit) in enumerate(zip(ids, limits, strict=False)):
        if value > limit:
            name = ("object", "instance", "resource", "resource instance")[level]
            raise _problem(loc, f"{name} id {value} is out of range 0-{limit}")
    return ids


def typed_value(data: object, loc: str = "args.data") -> tuple[str, Any]:
    """A write value as (type, value): {"type", "value"}, or a plain value whose type is read
    from it (bool -> Boolean, int -> Integer, float -> Float, str -> String)."""
    if isinstance(data, dict) and set(data) == {"type", "value"}:
        kind, value = data["type"], data["value"]
    elif isinstance(data, bool):
        kind, value = "Boolean", data
    elif isinstance(data, int):
        kind, value = "Integer", data
    elif isinstance(data, float):
        kind, value = "Float", data
    elif isinstance(data, str):
        kind, value = "String", data
    else:
        raise _problem(loc, 'give a value, or {"type": ..., "value": ...}')
    checks: dict[str, Callable[[Any], bool]] = {
        "String": lambda v: isinstance(v, str),
        "Integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "Float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        "Boolean": lambda v: isinstance(v, bool),
        "Time": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
        "Opaque": _is_base64,
        "Objlnk": lambda v: isinstance(v, str) and re.fullmatch(r"\d{1,5}:\d{1,5}", v) is not None,
    }
    if kind not in checks:
        raise _problem(f"{loc}.type", f"{kind!r} is not one of {', '.join(VALUE_TYPES)}")
    if not checks[kind](value):
        raise _problem(f"{loc}.value", f"{value!r} is not a valid {kind}")
    return kind, value


def _is_base64(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def check_request(args: dict[str, Any]) -> None:
    """Refuse an lwm2m_request whose path, operation or data is wrong, naming the field."""
    kind = args.get("type")
    if kind not in REQUEST_TYPES:
        raise _problem("args.type", f"{kind!r} is not one of {', '.join(REQUEST_TYPES)}")
    ids = parse_path(args.get("endpoint"))
    if len(ids) not in _DEPTHS[kind]:
        depth = " or ".join(
            (
                "/object",
                "/object/instance",
                "/object/instance/resource",
                "/object/instance/resource/ri",
            )[d - 1]
            for d in _DEPTHS[kind]
        )
        raise _problem("args.endpoint", f"{kind} takes a path {depth}")
    data = args.get("data")
    if kind == "write":
        if isinstance(data, list):
            for index, item in enumerate(data):
                _content_item(item, f"args.data.{index}")
        else:
            typed_value(data)
    elif kind == "create":
        if not isinstance(data, list) or not data:
            raise _problem("args.data", 'create takes a list of {"path", "type", "value"}')
        for index, item in enumerate(data):
            _content_item(item, f"args.data.{index}")
    elif kind == "write-attr":
        if not isinstance(data, dict) or not data or set(data) - set(ATTRIBUTES):
            raise _problem("args.data", f"write-attr takes some of {', '.join(ATTRIBUTES)}")
        for key, value in data.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise _problem(f"args.data.{key}", "must be a number")
    elif kind == "exec" and data is not None and not isinstance(data, str):
        raise _problem("args.data", "execute arguments are a string")
    elif kind not in ("exec",) and data is not None:
        raise _problem("args.data", f"{kind} takes no data")


def _content_item(item: object, loc: str) -> None:
    if not isinstance(item, dict) or "path" not in item:
        raise _problem(loc, 'each item is {"path", "type", "value"}')
    path = item["path"]
    if not isinstance(path, str) or not re.fullmatch(r"/?\d{1,5}(/\d{1,5})?", path):
        raise _problem(f"{loc}.path", f"{path!r} is not a resource path relative to the base")
    typed_value({"type": item.get("type"), "value": item.get("value")}, loc)


def check_file(args: dict[str, Any]) -> None:
    kind = args.get("type")
    if kind not in ("fileupload", "filedownload"):
        raise _problem("args.type", "is fileupload (to the device) or filedownload (from it)")
    filepath = args.get("filepath")
    if not isinstance(filepath, str) or not filepath or "\0" in filepath:
        raise _problem("args.filepath", "the file's path on the device")
    if kind == "fileupload" and not isinstance(args.get("file_id"), str):
        raise _problem("args.file_id", "fileupload needs the id of a file in the file store")


def emqx_request(req_id: int, args: dict[str, Any]) -> dict[str, Any]:
    """The EMQX LwM2M gateway command for an lwm2m_request."""
    kind, path, data = args["type"], args["endpoint"], args.get("data")
    body: dict[str, Any]
    if kind == "write":
        if isinstance(data, list):
            body = {"basePath": path, "content": [_emqx_item(i) for i in data]}
        else:
            value_type, value = typed_value(data)
            body = {"path": path, "type": value_type, "value": value}
    elif kind == "create":
        body = {"basePath": path, "content": [_emqx_item(i) for i in data or []]}
    elif kind == "exec":
        body = {"path": path, "args": data or ""}
    elif kind == "write-attr":
        body = {"path": path, **(data or {})}
    else:
        body = {"path": path}
    return {"reqID": req_id, "msgType": MSG_TYPES[kind], "data": body}


def _emqx_item(item: dict[str, Any]) -> dict[str, Any]:
    value_type, value = typed_value({"type": item.get("type"), "value": item.get("value")})
    return {"path": item["path"], "type": value_type, "value": value}


@dataclass(frozen=True, slots=True)
class Lwm2mReply:
    """An EMQX response read as a device reply; `retry_as_timeout` for a CoAP timeout."""

    state: ExecutionState
    reason: str | None
    output: dict[str, Any] | None
    retry_as_timeout: bool = False


def read_response(message: dict[str, Any]) -> Lwm2mReply:
    """ack -> ACKNOWLEDGED; a 2.xx code -> SUCCEEDED with the content; 4.xx/5.xx -> FAILED;
    coap_timeout -> a failed attempt retried as a timeout; coap_reset -> FAILED."""
    msg_type = message.get("msgType")
    data = message.get("data") if isinstance(message.get("data"), dict) else {}
    assert isinstance(data, dict)
    code = str(data.get("code", ""))
    if msg_type == "ack":
        return Lwm2mReply(S.ACKNOWLEDGED, "acknowledged by the LwM2M gateway", None)
    if msg_type == "coap_timeout" or code == "coap_timeout":
        return Lwm2mReply(S.FAILED, "the device did not answer (CoAP timeout)", None, True)
    if msg_type == "coap_reset" or code == "coap_reset":
        return Lwm2mReply(S.FAILED, "the device reset the request (CoAP RST)", None)
    output = {k: data[k] for k in ("reqPath", "code", "codeMsg", "content") if k in data}
    if re.fullmatch(r"2\.\d\d", code):
        return Lwm2mReply(S.SUCCEEDED, None, output)
    if re.fullmatch(r"[45]\.\d\d", code):
        return Lwm2mReply(S.FAILED, f"{code} {data.get('codeMsg', '')}".strip(), output)
    raise InvalidInput(f"an LwM2M response with an unknown code {code!r}")
