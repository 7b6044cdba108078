"""Hypothesis strategies of bad input for tests/integration/test_bad_input.py: JSON of every
shape, wrong types per field kind, bodies that are not JSON, not UTF-8, too large or too deep,
and ids carrying what device ids, topic levels and URLs must not.

Each strategy says what the input breaks, so the test can expect a precise answer.
"""

from __future__ import annotations

import json
import string
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

# --- JSON ---------------------------------------------------------------------------------

INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
JSON_SCALARS: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.booleans(),
    INT64,
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
)
JSON_VALUES: st.SearchStrategy[Any] = st.recursive(
    JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
JSON_OBJECTS: st.SearchStrategy[dict[str, Any]] = st.dictionaries(
    st.text(max_size=8), JSON_VALUES, max_size=5
)
# JSON that is neither an object nor null (null stands for "no body" where a body is optional).
NOT_OBJECTS: st.SearchStrategy[Any] = st.one_of(
    st.booleans(),
    INT64,
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
    st.lists(JSON_VALUES, max_size=4),
)


def dumps(value: Any) -> bytes:
    """Strict JSON (no NaN), UTF-8, non-ASCII left as is."""
    return json.dumps(value, ensure_ascii=False, allow_nan=False).encode()


def nested(depth: int, inner: str = "0", shape: str = "object") -> str:
    """JSON nested `depth` levels deep: {"a":{"a":...}} or [[...]]."""
    if shape == "object":
        return '{"a":' * depth + inner + "}" * depth
    return "[" * depth + inner + "]" * depth


# Text no JSON parser takes (neither Python's, which FastAPI uses, nor orjson, which the
# bridge uses): no JSON value starts with these characters. Never blank, as a blank body would
# mean "no body" where one is optional.
NOT_JSON_TEXT = st.tuples(st.sampled_from(list("}],:'<@xyz")), st.text(max_size=40)).map("".join)

# --- wrong types, per field kind ----------------------------------------------------------

NUMBERS = st.integers(-(10**6), 10**6) | st.floats(allow_nan=False, allow_infinity=False)
LISTS = st.lists(JSON_SCALARS, max_size=3)
DICTS = st.dictionaries(st.text(max_size=5), JSON_SCALARS, max_size=3)
# No number, date, boolean or enum value starts with these, so no lax parsing rescues them.
NOT_A_NUMBER = st.text(max_size=10).map(lambda s: "x" + s)
NOT_A_MEMBER = st.text(max_size=10).map(lambda s: "~" + s)

_BASE_WRONG: Mapping[str, st.SearchStrategy[Any]] = {
    "str": NUMBERS | st.booleans() | LISTS | DICTS,
    "int": NOT_A_NUMBER | LISTS | DICTS | st.integers(-1000, 1000).map(lambda i: i + 0.5),
    "float": NOT_A_NUMBER | LISTS | DICTS,
    "bool": NOT_A_NUMBER | LISTS | DICTS | st.integers(2, 10**6),
    "enum": NOT_A_MEMBER | NUMBERS | LISTS | DICTS,
    "dict": NUMBERS | st.text(max_size=10) | st.booleans() | LISTS,
    "list": NUMBERS | st.text(max_size=10) | st.booleans() | DICTS,
    "model": NUMBERS | st.text(max_size=10) | st.booleans() | LISTS,
    "datetime": NOT_A_NUMBER | LISTS | DICTS,
}


def wrong_value(kind: str) -> st.SearchStrategy[Any]:
    """A value a field of `kind` refuses; `kind?` is optional (null is fine), `kind` is not."""
    base = WRONG[kind.rstrip("?")]
    return base if kind.endswith("?") else base | st.none()


# --- bad request bodies --------------------------------------------------------------------


Parts = tuple[tuple[bytes, int], ...]


def parts(*chunks: bytes | tuple[bytes, int]) -> Parts:
    """Bytes as (chunk, times) pairs, so a large input stays short in Hypothesis' reports."""
    return tuple(c if isinstance(c, tuple) else (c, 1) for c in chunks)


def nested_parts(depth: int, shape: str) -> Parts:
    """JSON nested `depth` levels deep, as parts."""
    if shape == "object":
        return parts((b'{"a":', depth), b"0", (b"}", depth))
    return parts((b"[", depth), (b"]", depth))


@dataclass(frozen=True)
class BadBody:
    """A body a JSON route must refuse, what is wrong with it, and the status expected."""

    what: str
    parts: Parts
    status: int
    chunked: bool = False

    @property
    def content(self) -> bytes:
        return b"".join(chunk * times for chunk, times in self.parts)


def _with_field(valid: Mapping[str, Any], name: str, value: Any) -> bytes:
    return dumps({**valid, name: value})


@st.composite
def bad_bodies(
    draw: st.DrawFn,
    valid: Mapping[str, Any],
    fields: Mapping[str, str],
    max_body: int | None = None,
) -> BadBody:
    """A body that breaks `valid` (a body the route takes) in one way; `fields` maps each field
    to its kind. With `max_body`, also bodies over the size limit."""
    good = dumps(dict(valid))
    kinds = ["not_json", "truncated", "not_utf8", "not_object", "unknown_field", "wrong_type"]
    kinds += ["too_deep", "too_deep_to_keep"]
    kinds += [] if max_body is None else ["too_large"]
    kind = draw(st.sampled_from(kinds))
    if kind == "not_json":
        return BadBody(kind, parts(draw(NOT_JSON_TEXT).encode()), 400)
    if kind == "truncated":
        cut = draw(st.integers(1, len(good) - 1))
        return BadBody(kind, parts(good[:cut]), 400)
    if kind == "not_utf8":
        # After the first bytes, so the encoding is detected as UTF-8 (see the xfail on UTF-16).
        at = draw(st.integers(4, len(good) - 1))
        junk = draw(st.binary(max_size=6)) + draw(st.sampled_from([b"\xff", b"\xfe", b"\xc0"]))
        return BadBody(kind, parts(good[:at], junk, good[at:]), 400)
    if kind == "not_object":
        return BadBody(kind, parts(dumps(draw(NOT_OBJECTS))), 422)
    if kind == "unknown_field":
        name = "zz-not-a-field-" + draw(st.text(max_size=8))
        value = draw(JSON_VALUES | st.integers(1, 60).map(lambda d: json.loads(nested(d))))
        return BadBody(kind, parts(_with_field(valid, name, value)), 422)
    if kind == "too_deep_to_keep":
        # Parses, but nests past what Courier keeps (64 levels): malformed for Courier.
        value = json.loads(nested(draw(st.integers(65, 900))))
        return BadBody(kind, parts(_with_field(valid, "deep", value)), 400)
    if kind == "wrong_type":
        name = draw(st.sampled_from(sorted(fields)))
        wrong = _with_field(valid, name, draw(wrong_value(fields[name])))
        return BadBody(f"{kind} {name}", parts(wrong), 422)
    if kind == "too_deep":
        # Past the parser's recursion limit (1000 frames; Hypothesis adds 2000 while a test
        # runs) and under the body limit (6 bytes a level at most).
        depth = draw(st.integers(5_000, 10_000))
        return BadBody(kind, nested_parts(depth, draw(st.sampled_from(["object", "list"]))), 400)
    assert max_body is not None
    size = draw(st.integers(max_body + 1, 2 * max_body))
    return BadBody(kind, parts(good, (b" ", size - len(good))), 413, chunked=draw(st.booleans()))


# --- ids -----------------------------------------------------------------------------------

FORBIDDEN_IN_IDS = "/+#$:\0"
_LONG_ID = st.text(
    st.sampled_from(string.ascii_lowercase + string.digits), min_size=65, max_size=100
)
_NON_ASCII = st.characters(min_codepoint=0x80, codec="utf-8")
# What an MQTT broker carries in a topic level: printable, no separator, no wildcard.
_TOPIC_SAFE = st.characters(categories=("L", "M", "N", "P", "S", "Zs"), exclude_characters="/+#")


def _ids(alphabet: st.SearchStrategy[str], bad: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    around = st.text(alphabet, max_size=10)
    return st.tuples(around, bad, around).map("".join) | _LONG_ID


def _dirty(segment: str) -> bool:
    return len(segment) > 64 or any(c in FORBIDDEN_IN_IDS or c > "\x7f" for c in segment)


def _every_segment_dirty(value: str) -> str:
    """Each /-separated part keeps a bad character: none is a route's word or a valid id, and
    none is empty (a path ending in / is redirected: see the xfail on trailing slashes)."""
    return "/".join(s if _dirty(s) else s + "$" for s in value.split("/"))


def bad_path_ids() -> st.SearchStrategy[str]:
    """Ids no device, tenant or resource has: with / + # $ : NUL or non-ASCII, or too long."""
    bad = st.sampled_from(list(FORBIDDEN_IN_IDS)) | _NON_ASCII
    return _ids(st.characters(codec="utf-8"), bad).map(_every_segment_dirty)


def bad_topic_ids() -> st.SearchStrategy[str]:
    """Invalid device or tenant ids a broker still carries in one topic level: with $ : or
    non-ASCII, or too long."""
    bad = st.sampled_from(["$", ":"]) | st.characters(
        min_codepoint=0x80, categories=("L", "M", "N", "P", "S")
    )
    return _ids(_TOPIC_SAFE, bad)


def unpublishable_ids() -> st.SearchStrategy[str]:
    """Ids with a wildcard or NUL (maybe a /, too), which MQTT forbids in a published topic."""
    return _ids(st.characters(codec="utf-8"), st.sampled_from(["+", "#", "\0"]))


def unknown_ids(prefix: str) -> st.SearchStrategy[str]:
    """Valid device or tenant ids nothing is registered under."""
    return st.from_regex(r"[a-z0-9]{1,16}", fullmatch=True).map(lambda s: f"{prefix}-nobody-{s}")


def bad_csv_ids() -> st.SearchStrategy[str]:
    """One invalid device id that survives splitting on commas and stripping."""
    bad = st.sampled_from(list(FORBIDDEN_IN_IDS)) | st.characters(
        min_codepoint=0x80, categories=("L", "N", "P", "S")
    )
    return bad.map(lambda c: f"a{c}b") | _LONG_ID


def bad_body_ids() -> st.SearchStrategy[str]:
    """What a device, group or user id in a JSON body must not be: with / + # $ : NUL or
    non-ASCII, too long, or empty."""
    bad = st.sampled_from(list(FORBIDDEN_IN_IDS)) | _NON_ASCII
    return _ids(st.characters(codec="utf-8"), bad) | st.just("")


def _with_a_bad_one(bad: st.SearchStrategy[str]) -> st.SearchStrategy[list[str]]:
    """A list of ids of which at least one is bad, anywhere in it."""
    good = st.lists(st.sampled_from(["d1", "d2"]), max_size=2)
    return st.tuples(good, bad, good).map(lambda t: [*t[0], t[1], *t[2]])


# Authorization ids are free text but for control characters, 1 to 64 characters.
_BAD_AUTHORIZATION_IDS = (
    st.tuples(st.text(max_size=5), st.characters(max_codepoint=0x1F), st.text(max_size=5)).map(
        "".join
    )
    | st.just("")
    | _LONG_ID
)

WRONG: Mapping[str, st.SearchStrategy[Any]] = {
    **_BASE_WRONG,
    "id": _BASE_WRONG["str"] | bad_body_ids(),
    "ids": _BASE_WRONG["list"] | _with_a_bad_one(bad_body_ids()),
    "auth_ids": _BASE_WRONG["list"] | _with_a_bad_one(_BAD_AUTHORIZATION_IDS),
}


# --- bad query values ----------------------------------------------------------------------

PYDANTIC_BOOLS = {"0", "off", "f", "false", "n", "no", "1", "on", "t", "true", "y", "yes"}
STATES = ["QUEUED", "SENT", "SUCCEEDED", "FAILED"]

BAD_QUERY: Mapping[str, st.SearchStrategy[str]] = {
    "limit": st.one_of(
        st.integers(max_value=0).map(str),
        st.integers(min_value=1001).map(str),
        NOT_A_NUMBER,
        st.just("1.5"),
    ),
    "offset": st.one_of(st.integers(max_value=-1).map(str), NOT_A_NUMBER, st.just("0.5")),
    "states": st.tuples(st.lists(st.sampled_from(STATES), max_size=2), NOT_A_MEMBER).map(
        lambda t: ",".join([*t[0], t[1].replace(",", "")])
    ),
    "time": NOT_A_NUMBER | st.datetimes().map(lambda d: d.isoformat()),  # naive: no zone
    "devices": st.tuples(st.lists(st.just("d1"), max_size=1), bad_csv_ids()).map(
        lambda t: ",".join([*t[0], t[1]])
    ),
    "bool": st.text(max_size=8).filter(lambda s: s.strip().lower() not in PYDANTIC_BOOLS),
    "name": st.just("") | st.text(st.sampled_from("abc"), min_size=256, max_size=300),
}


# --- MQTT payloads -------------------------------------------------------------------------

REPLY_STATES = ["ACKNOWLEDGED", "IN_PROGRESS", "SUCCEEDED", "FAILED"]
REPLY_FIELDS = {
    "state": NOT_A_MEMBER
    | st.sampled_from(["QUEUED", "SENT", "CANCELLED", "TIMED_OUT", "EXPIRED", "succeeded"])
    | NUMBERS
    | st.none()
    | LISTS,
    "reason": NUMBERS | st.booleans() | LISTS | DICTS | st.text("r", min_size=1025, max_size=1100),
    "progress": st.integers(101, 10**6)
    | st.integers(max_value=-1)
    | st.booleans()
    | st.text(max_size=4)
    | LISTS,
    "output": NUMBERS | st.booleans() | st.text(max_size=8) | LISTS,
    "attempt": st.integers(max_value=0) | st.booleans() | st.text(max_size=4) | LISTS | DICTS,
}


@dataclass(frozen=True)
class BadPayload:
    """An MQTT payload a consumer must reject and the reasons it may count it under."""

    what: str
    parts: Parts
    reasons: frozenset[str]

    @property
    def payload(self) -> bytes:
        return b"".join(chunk * times for chunk, times in self.parts)


def _payload(what: str, payload: bytes | Parts, *reasons: str) -> BadPayload:
    return BadPayload(
        what, parts(payload) if isinstance(payload, bytes) else payload, frozenset(reasons)
    )


@st.composite
def undecodable_payloads(draw: st.DrawFn, max_payload: int) -> BadPayload:
    """Not UTF-8, not JSON, JSON nested deeper than the parser goes, or over the size limit:
    refused before any model looks at them."""
    kind = draw(st.sampled_from(["not_utf8", "not_json", "too_deep", "oversized"]))
    if kind == "not_utf8":
        good = dumps({"state": draw(st.sampled_from(REPLY_STATES)), "online": True})
        at = draw(st.integers(0, len(good)))
        junk = draw(st.binary(max_size=6)) + draw(st.sampled_from([b"\xff", b"\xfe", b"\xc0"]))
        return _payload(kind, parts(good[:at], junk, good[at:]), "not_utf8")
    if kind == "not_json":
        return _payload(kind, draw(NOT_JSON_TEXT).encode(), "malformed")
    if kind == "too_deep":  # Courier keeps 64 levels at most; orjson stops at 1024
        depth = draw(st.integers(65, 20_000))
        return _payload(kind, nested_parts(depth, "list"), "malformed")
    size = draw(st.integers(max_payload + 1, max_payload + 4096))
    head = b'{"state": "SUCCEEDED", "online": true, "pad": "'
    return _payload(kind, parts(head, (b"x", size - len(head) - 2), b'"}'), "oversized")


@st.composite
def bad_replies(draw: st.DrawFn, max_payload: int) -> BadPayload:
    """A payload the reply topic must reject (SPEC 6: bad JSON, wrong types, oversized, not
    UTF-8)."""
    kind = draw(st.sampled_from(["undecodable", "not_object", "no_state", "wrong_type"]))
    if kind == "undecodable":
        return draw(undecodable_payloads(max_payload))
    if kind == "not_object":
        return _payload(kind, dumps(draw(NOT_OBJECTS | st.none())), "invalid")
    if kind == "no_state":
        body = draw(JSON_OBJECTS)
        body.pop("state", None)
        return _payload(kind, dumps(body), "invalid")
    name = draw(st.sampled_from(sorted(REPLY_FIELDS)))
    body = {"state": draw(st.sampled_from(REPLY_STATES)), name: draw(REPLY_FIELDS[name])}
    return _payload(f"wrong {name}", dumps(body), "invalid")


@st.composite
def bad_presences(draw: st.DrawFn, max_payload: int) -> BadPayload:
    """A payload a presence topic must reject (an empty one is a cleared retained message)."""
    kind = draw(st.sampled_from(["undecodable", "not_object", "no_online", "wrong_type"]))
    if kind == "undecodable":
        return draw(undecodable_payloads(max_payload))
    if kind == "not_object":
        return _payload(kind, dumps(draw(NOT_OBJECTS | st.none())), "invalid")
    if kind == "no_online":
        body = draw(JSON_OBJECTS)
        body.pop("online", None)
        return _payload(kind, dumps(body), "invalid")
    # Strict: "true", 1 and 1.0 are not booleans here.
    value = draw(NUMBERS | st.text(max_size=6) | st.none() | LISTS | DICTS)
    return _payload(kind, dumps({"online": value}), "invalid")


@st.composite
def bad_lwm2m_payloads(draw: st.DrawFn) -> BadPayload:
    """Not UTF-8, not JSON, or JSON but not an object: what every LwM2M uplink refuses."""
    kind = draw(st.sampled_from(["not_utf8", "not_json", "too_deep", "not_object"]))
    if kind == "not_utf8":
        junk = draw(st.binary(max_size=6)) + draw(st.sampled_from([b"\xff", b"\xfe", b"\xc0"]))
        return _payload(kind, b'{"reqID": 1, "msgType": "read"' + junk + b"}", "not_utf8")
    if kind == "not_json":
        return _payload(kind, draw(NOT_JSON_TEXT).encode(), "malformed")
    if kind == "too_deep":
        depth = draw(st.integers(65, 20_000))
        return _payload(kind, nested_parts(depth, "list"), "malformed")
    return _payload(kind, dumps(draw(NOT_OBJECTS | st.none())), "bad_json")
