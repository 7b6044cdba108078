"""LwM2M decisions: path and value validation, EMQX requests, reading responses."""

from __future__ import annotations

import pytest

from courier.bridge.lwm2m import request_id
from courier.core import lwm2m
from courier.errors import InvalidInput
from courier.schemas.states import ExecutionState

S = ExecutionState


@pytest.mark.parametrize(
    ("path", "ids"),
    [("/3", (3,)), ("/3/0", (3, 0)), ("/3/0/9", (3, 0, 9)), ("/5/0/1/2", (5, 0, 1, 2))],
)
def test_paths_parse_to_ids(path: str, ids: tuple[int, ...]) -> None:
    assert lwm2m.parse_path(path) == ids


@pytest.mark.parametrize(
    "path", ["", "/", "3/0", "/3/", "/a", "/3/0/1/2/3", "/-1", "/65535", "/3/99999", " /3"]
)
def test_bad_paths_are_refused(path: str) -> None:
    with pytest.raises(InvalidInput):
        lwm2m.parse_path(path)


def test_values_are_typed() -> None:
    assert lwm2m.typed_value(5) == ("Integer", 5)
    assert lwm2m.typed_value(True) == ("Boolean", True)
    assert lwm2m.typed_value(1.5) == ("Float", 1.5)
    assert lwm2m.typed_value("x") == ("String", "x")
    assert lwm2m.typed_value({"type": "Opaque", "value": "AAE="}) == ("Opaque", "AAE=")
    assert lwm2m.typed_value({"type": "Objlnk", "value": "3:0"}) == ("Objlnk", "3:0")
    for bad in (
        None,
        [1],
        {"type": "Integer", "value": True},
        {"type": "Time", "value": -1},
        {"type": "Objlnk", "value": "3"},
        {"type": "Unknown", "value": 1},
    ):
        with pytest.raises(InvalidInput):
            lwm2m.typed_value(bad)


def test_requests_translate_to_the_emqx_format() -> None:
    assert lwm2m.emqx_request(7, {"type": "observe_stop", "endpoint": "/3/0/9"}) == {
        "reqID": 7,
        "msgType": "cancel-observe",
        "data": {"path": "/3/0/9"},
    }
    assert lwm2m.emqx_request(8, {"type": "exec", "endpoint": "/3/0/4", "data": "5"}) == {
        "reqID": 8,
        "msgType": "execute",
        "data": {"path": "/3/0/4", "args": "5"},
    }
    write = lwm2m.emqx_request(
        9,
        {
            "type": "write",
            "endpoint": "/3/0",
            "data": [{"path": "/13", "type": "Time", "value": 1}],
        },
    )
    assert write["data"] == {
        "basePath": "/3/0",
        "content": [{"path": "/13", "type": "Time", "value": 1}],
    }
    attrs = lwm2m.emqx_request(
        10, {"type": "write-attr", "endpoint": "/3/0/9", "data": {"pmin": 5}}
    )
    assert attrs["data"] == {"path": "/3/0/9", "pmin": 5}


@pytest.mark.parametrize(
    ("message", "state", "timed_out"),
    [
        ({"msgType": "ack", "data": {}}, S.ACKNOWLEDGED, False),
        ({"msgType": "read", "data": {"code": "2.05", "content": []}}, S.SUCCEEDED, False),
        ({"msgType": "create", "data": {"code": "2.01"}}, S.SUCCEEDED, False),
        ({"msgType": "read", "data": {"code": "4.04", "codeMsg": "not_found"}}, S.FAILED, False),
        ({"msgType": "write", "data": {"code": "5.00"}}, S.FAILED, False),
        ({"msgType": "coap_timeout", "data": {}}, S.FAILED, True),
        ({"msgType": "read", "data": {"code": "coap_timeout"}}, S.FAILED, True),
        ({"msgType": "coap_reset", "data": {}}, S.FAILED, False),
    ],
)
def test_responses_read_as_replies(message: dict[str, object], state: S, timed_out: bool) -> None:
    answer = lwm2m.read_response(message)
    assert answer.state is state
    assert answer.retry_as_timeout is timed_out


def test_a_response_with_an_unknown_code_is_refused() -> None:
    with pytest.raises(InvalidInput):
        lwm2m.read_response({"msgType": "read", "data": {"code": "9.99"}})


def test_request_ids_differ_per_attempt_and_fit_an_int32() -> None:
    ids = {request_id(f"exec-{n}", a) for n in range(500) for a in (1, 2)}
    assert len(ids) == 1000
    assert all(0 <= i < 2**31 for i in ids)
    assert request_id("x", 1) == request_id("x", 1)
