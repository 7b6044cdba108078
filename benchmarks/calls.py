"""CPU instructions of the small calls every command makes, counted by callgrind.

    .venv/bin/python -m benchmarks.calls [--calls 10000]

Each call runs in a loop in a process under `valgrind --tool=callgrind`, N and 2N times; the
difference divided by N is what one call costs (the loop's own ~450 instructions included).
Unlike a whole command path (`benchmarks.instructions`) nothing here depends on the clock or
on how busy the machine is, so two versions of one function compare to the instruction.
Needs valgrind (`apt-get install valgrind`).
"""

from __future__ import annotations

import argparse
import shutil

from benchmarks.instructions import under_callgrind

_REPLIES = """
import orjson
from courier.schemas.mqtt import decode_reply
result = orjson.dumps({"state": "SUCCEEDED", "output": {"pong": True}, "attempt": 1})
ack = orjson.dumps({"state": "ACKNOWLEDGED", "attempt": 1})
"""
# Five calls in six repeat a time, as on the service path (an event's time is its commit's).
_TIMES = """
from courier.clock import isoformat
times = iter([1_800_000_000.123456 + (i // 6) * 0.001 for i in range(3 * COUNT)])
"""
_IDS = """
from courier.ids import is_device_id, new_id
device_ids = iter([f"sim-{i % 50}" for i in range(3 * COUNT)])
"""
_PACKETS = """
from courier.transport.packets import publish_packet
topic, payload = b"courier/tenants/acme/events", b"x" * 300
"""
_REQUESTS = """
from courier.clock import SystemClock
from courier.schemas.api import CommandRequestIn
from courier.service import Service, ServiceConfig
from courier.store.sqlite_rows import request_params
body = CommandRequestIn(devices=["sim-1"], command="PING")
service = Service(None, ServiceConfig(), SystemClock())
command = service.build_request("bench", body, "bench")
"""

CALLS: dict[str, tuple[str, str]] = {
    "decode an ACK and a result": (
        _REPLIES,
        "decode_reply(ack, 65536); decode_reply(result, 65536)",
    ),
    "format a timestamp": (_TIMES, "isoformat(next(times))"),
    "check a device id": (_IDS, "is_device_id(next(device_ids))"),
    "make an id": (_IDS, "new_id()"),
    "build a QoS 0 PUBLISH": (
        _PACKETS,
        "publish_packet(topic, payload, 0, False, None, None, True)",
    ),
    "build a QoS 1 PUBLISH": (_PACKETS, "publish_packet(topic, payload, 1, False, 513, 30, True)"),
    "make a request's row": (_REQUESTS, "request_params(command)"),
    "validate a request body": (
        _REQUESTS,
        'CommandRequestIn.model_validate({"devices": ["sim-1"], "command": "PING"})',
    ),
    "build a request": (_REQUESTS, 'service.build_request("bench", body, "bench")'),
}


def _instructions(setup: str, statement: str, count: int, limit: int) -> int:
    program = f"COUNT = {limit}\n{setup}\nfor _ in range({count}):\n    {statement}\n"
    return under_callgrind(["-c", program])


def per_call(setup: str, statement: str, count: int) -> int:
    small = _instructions(setup, statement, count, count)
    large = _instructions(setup, statement, 2 * count, count)
    return (large - small) // count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=10_000)
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    for name, (setup, statement) in CALLS.items():
        print(f"{name:28} {per_call(setup, statement, args.calls):>8,} instructions", flush=True)


if __name__ == "__main__":
    main()
