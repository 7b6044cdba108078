"""What `courier send` builds and shows: a request body from its options, and the progress
of the request's executions until all have ended."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

from courier.errors import InvalidInput

PENDING = ("SCHEDULED", "QUEUED", "SENT", "ACKNOWLEDGED", "IN_PROGRESS")
DAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def day_names(text: str | None) -> list[str]:
    """mon,tue,... or monday,... (any unambiguous prefix of three letters or more)."""
    days = []
    for part in filter(None, (p.strip().lower() for p in (text or "").split(","))):
        matches = [d for d in DAY_NAMES if d.startswith(part)] if len(part) >= 3 else []
        if len(matches) != 1:
            raise InvalidInput(f"--days: {part!r} is not a day of the week")
        days.append(matches[0])
    return days


def request_body(
    command: str,
    args: dict[str, Any],
    devices: tuple[str, ...] = (),
    groups: tuple[str, ...] = (),
    filter_devices: tuple[str, ...] = (),
    filter_groups: tuple[str, ...] = (),
    labels: tuple[str, ...] = (),
    kind: str | None = None,
    online: bool | None = None,
    **options: Any,
) -> dict[str, Any]:
    """A command request body from `courier send`'s options (one kind of target)."""
    dynamic = bool(filter_devices or filter_groups or labels or kind or online is not None)
    kinds = [bool(devices), bool(groups), dynamic]
    if sum(kinds) != 1:
        raise InvalidInput(
            "give devices (--device), groups (--group) or a filter (--label, "
            "--kind, --online/--offline, --filter-device, --filter-group)"
        )
    body: dict[str, Any] = {"command": command, "args": args}
    if devices:
        body.update(command_type="DEVICE", devices=list(devices))
    elif groups:
        body.update(command_type="GROUP", groups=list(groups))
    else:
        parsed_labels = {}
        for label in labels:
            key, sep, value = label.partition("=")
            if not sep:
                raise InvalidInput(f"--label {label!r}: use key=value")
            parsed_labels[key] = value
        flt: dict[str, Any] = {
            "devices": list(filter_devices),
            "groups": list(filter_groups),
            "labels": parsed_labels,
        }
        if kind:
            flt["kind"] = kind
        if online is not None:
            flt["online"] = online
        body.update(command_type="DYNAMIC", filter=flt)
    for key in ("device_type", "ttl", "timeout", "priority"):
        if options.get(key) is not None:
            body[key] = options[key]
    retry = {
        k: options[o]
        for k, o in (("max_attempts", "max_attempts"), ("on", "retry_on"))
        if options.get(o) is not None
    }
    if retry:
        body["retry"] = retry
    schedule = (options.get("schedule") or "IMMEDIATE").upper()
    if schedule != "IMMEDIATE":
        body["schedule"] = schedule
        body["schedule_args"] = {
            k: v
            for k, v in {
                "start_datetime": options.get("start"),
                "end_datetime": options.get("end"),
                "window_start_time": options.get("window_start"),
                "window_end_time": options.get("window_end"),
                "days": day_names(options.get("days")) or None,
                "time_type": options.get("time_type"),
            }.items()
            if v is not None
        }
    rollout = {
        k: options[o]
        for k, o in (
            ("max_per_minute", "rollout_rate"),
            ("abort_failure_percent", "abort_percent"),
            ("abort_min_finished", "abort_min"),
        )
        if options.get(o) is not None
    }
    if rollout:
        body["rollout"] = rollout
    return body


def progress_line(counts: dict[str, int], width: int = 30) -> str:
    """[#########-----]  60%  6/10  QUEUED=2 SENT=2 SUCCEEDED=6"""
    total = sum(counts.values())
    done = total - sum(counts.get(s, 0) for s in PENDING)
    filled = round(width * done / total) if total else width
    states = " ".join(f"{k}={v}" for k, v in sorted(counts.items()) if v)
    percent = 100 * done // total if total else 100
    return f"[{'#' * filled}{'-' * (width - filled)}] {percent:3d}%  {done}/{total}  {states}"


def follow(
    fetch: Callable[[], dict[str, int]], wait_timeout: float, interval: float = 0.25
) -> dict[str, int]:
    """Poll a request's per-state counts, drawing a progress bar, until nothing is pending."""
    live = sys.stderr.isatty()
    deadline = time.monotonic() + wait_timeout
    last = ""
    while True:
        counts = fetch()
        line = progress_line(counts)
        if line != last:
            sys.stderr.write(("\r" + line) if live else line + "\n")
            sys.stderr.flush()
            last = line
        if not any(counts.get(s) for s in PENDING) or time.monotonic() > deadline:
            if live:
                sys.stderr.write("\n")
            return counts
        time.sleep(interval)
