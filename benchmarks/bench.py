"""`courier bench`: Courier against the raw-MQTT limit of this machine, in one run.

Everything runs here, on one machine: a private Mosquitto (`set_tcp_nodelay true`), the
device simulator (`courier simulate`) in its own process, Courier in this process (service
layer) or as `courier serve` (REST), and the load. Each figure is the median of `--runs`.
"""

from __future__ import annotations

import asyncio
import os
import platform
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import orjson

from benchmarks import e2e, fleet, raw, rest, scale, steady
from benchmarks.harness import (
    CourierServe,
    EventWatch,
    PresenceWatch,
    Simulator,
    median,
    medians,
    start_broker,
)
from courier.clock import SystemClock
from courier.schemas.api import DeviceIn
from courier.service import Service, ServiceConfig
from courier.store import open_store

TENANT = "bench"
WINDOWS = (10, 100, 1000)
REST_WINDOWS = (100, 1000)
STEADY_SHARE = 1 / 3  # the steady rate, as a share of the service layer's at 1000 in flight


@dataclass
class Plan:
    runs: int = 3
    devices: int = 50
    commands: int = 20_000
    rest_commands: int = 6_000
    fan_out: int = 1000
    drain_devices: int = 5000
    drain_per_device: int = 10
    scale_rows: int = 1_000_000
    steady_seconds: float = 4.0
    steady_rate: float = 1000.0  # commands/s when the service layer's rate was not measured
    budget_s: float = 570.0  # the drain, run last, takes fewer runs past this (0: no limit)
    only: frozenset[str] = frozenset(
        {"raw", "service", "steady", "rest", "fanout", "drain", "scale"}
    )

    def commands_at(self, window: int) -> int:
        """Commands per run at `window` in flight: fewer where the rate is lower (5,000 and
        10,000 latencies make a p99 as well), so the whole bench stays within 10 minutes."""
        if window <= 10:
            return self.commands // 4
        return self.commands // 2 if window <= 100 else self.commands

    @classmethod
    def quick(cls) -> Plan:
        return cls(
            runs=1,
            commands=3000,
            rest_commands=2000,
            drain_devices=500,
            scale_rows=100_000,
            steady_seconds=2.0,
        )


@dataclass
class Results:
    figures: dict[str, Any] = field(default_factory=dict)

    def put(self, key: str, value: Any) -> None:
        self.figures[key] = value


async def repeat(runs: int, fn: Callable[[], Awaitable[dict[str, float]]]) -> dict[str, float]:
    """Median of each figure over `runs` runs."""
    samples = [await fn() for _ in range(runs)]
    return medians(samples)


async def register(store_path: Path, devices: list[str]) -> None:
    """Register devices directly in a store before a `courier serve` opens it (set-up: no
    fsync per device; the store is closed cleanly before anything is measured)."""
    store = open_store(f"sqlite:///{store_path}?synchronous=NORMAL")
    await store.open()
    service = Service(store, ServiceConfig(), SystemClock())
    for device_id in devices:
        await service.register_device(TENANT, DeviceIn(id=device_id))
    await store.close()


_BEGAN = time.monotonic()


def elapsed() -> float:
    """Seconds since the bench began."""
    return time.monotonic() - _BEGAN


def log(message: str) -> None:
    minutes, seconds = divmod(int(elapsed()), 60)
    print(f"  … {minutes}:{seconds:02d} {message}", flush=True)


def another_run_fits(spent: float, last_run: float, budget: float) -> bool:
    """Whether a run as long as the last one still ends within the budget (0: no budget)."""
    return budget <= 0 or spent + last_run <= budget


async def run(plan: Plan, workdir: Path) -> Results:
    results = Results()
    results.put("python", platform.python_version())  # the figures move with the interpreter
    results.put("runs", plan.runs)
    broker = start_broker(workdir)
    prefix = "bench"
    try:
        simulator = Simulator(broker, prefix, "sim", plan.devices)
        devices = simulator.device_ids
        watch = PresenceWatch(broker, prefix, "bench-presence")
        await watch.start()
        store_path = workdir / "service.db"
        await register(store_path, devices)
        simulator.start()
        await watch.wait_for(devices)
        await raw_and_service(plan, results, broker, prefix, store_path, devices)
        if "steady" in plan.only:
            await steady_latency(plan, results, broker, prefix, store_path, devices)
        if "rest" in plan.only or "fanout" in plan.only:
            await rest_and_fan_out(plan, results, broker, prefix, workdir, devices, simulator)
        simulator.stop()
        if "scale" in plan.only:
            # Its own topic prefix: the retained presence of the devices simulated so far
            # would otherwise reach this Courier at start, while its queries are timed.
            await scale_queries(plan, results, broker, f"{prefix}-scale", workdir)
        if "drain" in plan.only:
            await drain(plan, results, broker, prefix, workdir)
        await watch.stop()
    finally:
        broker.stop()
    return results


async def raw_and_service(
    plan: Plan,
    results: Results,
    broker: Any,
    prefix: str,
    store_path: Path,
    devices: list[str],
) -> None:
    """The raw limit and Courier's service layer, run after run in turns, so a slower spell of
    the machine weighs on both; each ratio is the median of the runs' own ratios."""
    samples: dict[str, list[dict[str, float]]] = {}
    for run_index in range(plan.runs):
        for window in WINDOWS:
            count = plan.commands_at(window)
            if "raw" in plan.only:
                log(f"raw MQTT, {window} in flight (run {run_index + 1} of {plan.runs})")
                sample = await raw.raw_round_trips(broker, prefix, devices, count, window)
                samples.setdefault(f"raw/{window}", []).append(sample)
            if "service" in plan.only:
                log(f"Courier via the service layer, {window} in flight")
                # Opened for its run only: while the raw limit is measured, no Courier runs.
                async with e2e.courier_in_process(broker, prefix, store_path) as courier:
                    await e2e.wait_online(courier, devices)
                    sample = await e2e.run_window(courier, devices, count, window)
                samples.setdefault(f"service/{window}", []).append(sample)
    for key, values in samples.items():
        results.put(key, medians(values))
    for window in WINDOWS:
        raws, services = samples.get(f"raw/{window}"), samples.get(f"service/{window}")
        if raws and services:
            ratios = [s["per_s"] / r["per_s"] for r, s in zip(raws, services, strict=True)]
            results.put(f"ratio/{window}", median(ratios))
            results.put(f"ratio_runs/{window}", ratios)


async def steady_latency(
    plan: Plan,
    results: Results,
    broker: Any,
    prefix: str,
    store_path: Path,
    devices: list[str],
) -> None:
    """Latency at a steady rate, a third of what the service layer reached at 1000 in flight
    (a third of what Courier can carry here), from the service layer and, in turns, from a
    bare client at the same rate."""
    measured = results.figures.get("service/1000")
    rate = round(measured["per_s"] * STEADY_SHARE, -1) if measured else plan.steady_rate
    count = max(1, int(rate * plan.steady_seconds))
    samples: dict[str, list[dict[str, float]]] = {}
    for run_index in range(plan.runs):
        if "raw" in plan.only:
            log(f"raw MQTT at a steady {rate:,.0f}/s (run {run_index + 1} of {plan.runs})")
            sample = await steady.raw_at_rate(broker, prefix, devices, count, rate)
            samples.setdefault("raw", []).append(sample)
        log(f"Courier via the service layer at a steady {rate:,.0f}/s")
        async with e2e.courier_in_process(broker, prefix, store_path) as courier:
            await e2e.wait_online(courier, devices)
            sample = await steady.service_at_rate(courier, devices, count, rate)
        samples.setdefault("service", []).append(sample)
    basis = "a third of the service rate at 1000 in flight" if measured else "the default rate"
    figures: dict[str, Any] = {"rate": rate, "seconds": plan.steady_seconds, "basis": basis}
    for key, values in samples.items():
        figures[key] = medians(values)
    results.put("steady", figures)


async def rest_and_fan_out(
    plan: Plan,
    results: Results,
    broker: Any,
    prefix: str,
    workdir: Path,
    devices: list[str],
    simulator: Simulator,
) -> None:
    fan_devices = [f"fan-{i}" for i in range(plan.fan_out)]
    store_path = workdir / "rest.db"
    await register(store_path, devices + fan_devices)
    if "rest" in plan.only and "raw" in plan.only:
        # The REST runs come a minute after the paired ones: their ratios are taken against
        # the raw limit measured again just before them (no Courier running meanwhile).
        for window in REST_WINDOWS:
            log(f"raw MQTT, {window} in flight, before the REST runs")
            count = plan.commands_at(window)
            results.put(
                f"raw_rest/{window}",
                await repeat(
                    plan.runs, partial(raw.raw_round_trips, broker, prefix, devices, count, window)
                ),
            )
    serve = CourierServe(broker, prefix, store_path, workdir)
    key = serve.api_key(TENANT)
    await serve.start()
    events = EventWatch(broker, prefix, TENANT)
    await events.start()
    try:
        if "rest" in plan.only:
            for window in REST_WINDOWS:
                log(f"Courier via REST, {window} in flight")
                results.put(
                    f"rest/{window}",
                    await repeat(
                        plan.runs,
                        partial(
                            rest.rest_window,
                            serve.port,
                            key,
                            TENANT,
                            devices,
                            events,
                            plan.rest_commands,
                            window,
                        ),
                    ),
                )
        if "fanout" in plan.only:
            fan_sim = Simulator(broker, prefix, "fan", plan.fan_out)
            watch = PresenceWatch(broker, prefix, "bench-fan")
            await watch.start()
            fan_sim.start()
            await watch.wait_for(fan_devices)
            await asyncio.sleep(1.0)  # Courier has seen them online too
            log(f"fan-out to {plan.fan_out} devices")
            results.put(
                "fanout",
                await repeat(
                    plan.runs, lambda: fleet.fan_out(serve.port, key, TENANT, fan_devices, events)
                ),
            )
            fan_sim.stop()
            await watch.stop()
        results.put("rest/peak_rss_mb", serve.peak_rss_mb)
    finally:
        await events.stop()
        serve.stop()


async def drain(plan: Plan, results: Results, broker: Any, prefix: str, workdir: Path) -> None:
    """Courier's drain, and in turns the same drain without Courier (its devices connecting
    just as much), so a ratio compares like with like."""
    samples = []
    last_run = 0.0
    for run_index in range(plan.runs):
        if run_index and not another_run_fits(elapsed(), last_run, plan.budget_s):
            log(f"drain: {run_index} of {plan.runs} runs, the next would pass the time budget")
            break
        began = time.monotonic()
        if "raw" in plan.only:
            log(f"raw drain: {plan.drain_devices} devices x {plan.drain_per_device} commands")
            raw_sample = await raw.raw_drain(
                broker, prefix, f"rawoff{run_index}", plan.drain_devices, plan.drain_per_device
            )
        base = f"off{run_index}"
        devices = [f"{base}-{i}" for i in range(plan.drain_devices)]
        store_path = workdir / f"drain{run_index}.db"
        await register(store_path, devices)
        serve = CourierServe(broker, prefix, store_path, workdir)
        key = serve.api_key(TENANT)
        await serve.start()
        events = EventWatch(broker, prefix, TENANT)
        await events.start()
        try:
            await fleet.queue_for_offline(serve.port, key, TENANT, devices, plan.drain_per_device)
            total = plan.drain_devices * plan.drain_per_device
            log(f"offline drain: {plan.drain_devices} devices x {plan.drain_per_device} commands")
            sample = await fleet.offline_drain(
                broker, prefix, base, plan.drain_devices, total, events
            )
            if "raw" in plan.only:
                sample["raw_drain_s"] = raw_sample["drain_s"]
                sample["ratio_to_raw_drain"] = sample["drain_s"] / raw_sample["drain_s"]
            samples.append(sample)
        finally:
            await events.stop()
            serve.stop()
        last_run = time.monotonic() - began
    results.put("drain", medians(samples))
    results.put("drain_runs", len(samples))


async def scale_queries(
    plan: Plan, results: Results, broker: Any, prefix: str, workdir: Path
) -> None:
    store_path = workdir / "scale.db"
    log(f"generating a store of {plan.scale_rows:,} executions")
    began = time.perf_counter()
    await asyncio.get_running_loop().run_in_executor(
        None,
        scale.generate,
        store_path,
        plan.scale_rows,
        max(1000, plan.scale_rows // 100),
        10,
        TENANT,
    )
    generated = time.perf_counter() - began
    serve = CourierServe(broker, prefix, store_path, workdir)
    key = serve.api_key(TENANT)
    await serve.start()
    try:
        log("timing list and filter queries")
        timings = await scale.time_queries(
            serve.port, key, scale.queries(TENANT, scale.sample_ids(store_path)), 40 * plan.runs
        )
        size = sum(path.stat().st_size for path in workdir.glob("scale.db*"))  # noqa: ASYNC240
        results.put(
            "scale",
            {
                "rows": plan.scale_rows,
                "generated_s": generated,
                "file_mb": size / 2**20,
                "queries": timings,
                "peak_rss_mb": serve.peak_rss_mb,
            },
        )
    finally:
        serve.stop()


def _rate(x: dict[str, float] | None) -> str:
    return f"{x['per_s']:>12,.0f}" if x else f"{'-':>12}"


def _ratio(x: dict[str, float] | None, base: dict[str, float] | None) -> str:
    return f"{x['per_s'] / base['per_s']:>7.2f}x" if x and base else f"{'-':>8}"


def _steady_line(x: dict[str, Any]) -> str:
    s = x["service"]
    line = (
        f"at a steady {x['rate']:,.0f}/s for {x['seconds']:g} s ({x['basis']}): "
        f"Courier p50/p99 {s['p50_ms']:.1f} / {s['p99_ms']:.1f} ms"
    )
    if "raw" in x:
        line += f"; raw MQTT {x['raw']['p50_ms']:.1f} / {x['raw']['p99_ms']:.1f} ms"
    return line


def table(results: Results) -> str:
    """Every figure, with the ratios Courier/raw."""
    f = results.figures
    lines = [
        (
            f"Courier bench: {platform.node()}, {os.cpu_count()} CPUs, "
            f"Python {platform.python_version()}, {time.strftime('%Y-%m-%d')}"
        ),
        "",
        (
            f"{'in flight':<12}{'raw MQTT/s':>12}{'service/s':>12}{'ratio':>8}{'REST/s':>12}"
            f"{'ratio':>8}{'svc p50':>9}{'svc p99':>9}{'raw p50':>9}{'raw p99':>9}"
        ),
    ]
    for window in WINDOWS:
        r, s, h = f.get(f"raw/{window}"), f.get(f"service/{window}"), f.get(f"rest/{window}")
        if not (r or s or h):
            continue
        lat = f"{s['p50_ms']:>9.1f}{s['p99_ms']:>9.1f}" if s else f"{'-':>9}{'-':>9}"
        raw_lat = f"{r['p50_ms']:>9.1f}{r['p99_ms']:>9.1f}" if r else ""
        paired = f.get(f"ratio/{window}")
        ratio = f"{paired:>7.2f}x" if paired is not None else _ratio(s, r)
        rest_base = f.get(f"raw_rest/{window}", r)
        lines.append(
            f"{window:<12}{_rate(r)}{_rate(s)}{ratio}{_rate(h)}{_ratio(h, rest_base)}{lat}{raw_lat}"
        )
    runs = [(w, f[f"ratio_runs/{w}"]) for w in WINDOWS if len(f.get(f"ratio_runs/{w}", ())) > 1]
    if runs:
        each = "; ".join(f"{w}: {', '.join(f'{r:.2f}' for r in rs)}" for w, rs in runs)
        lines.append(f"service/raw ratio in each run (the median above): {each}")
    if "steady" in f:
        lines.append(_steady_line(f["steady"]))
    for window in WINDOWS:
        h = f.get(f"rest/{window}")
        if h:
            line = f"REST p50/p99 at {window}: {h['p50_ms']:.1f} / {h['p99_ms']:.1f} ms"
            if f"raw_rest/{window}" in f:
                line += f"; its ratio is to the raw {f[f'raw_rest/{window}']['per_s']:,.0f}/s"
                line += " measured just before the REST runs"
            lines.append(line)
    if "fanout" in f:
        x = f["fanout"]
        lines += [
            "",
            (
                f"fan-out to 1000 devices: 201 in {x['created_ms']:.0f} ms, all SUCCEEDED in "
                f"{x['all_succeeded_s']:.2f} s ({x['succeeded']:.0f} succeeded)"
            ),
        ]
    if "drain" in f:
        x = f["drain"]
        raw1000 = f.get("raw/1000")
        line = f"offline drain: {x['succeeded']:.0f} SUCCEEDED in {x['drain_s']:.1f} s"
        taken, wanted = f.get("drain_runs"), f.get("runs")
        if taken is not None and wanted is not None and taken < wanted:
            line += f" (median of {taken} of {wanted} runs: the time budget)"
        if raw1000:
            raw_time = x["succeeded"] / raw1000["per_s"]
            line += (
                f" (raw: {raw_time:.1f} s for as many round trips; {x['drain_s'] / raw_time:.2f}x)"
            )
        lines += ["", line]
        if "raw_drain_s" in x:
            lines.append(
                f"the same drain without Courier (raw MQTT, its devices connecting too): "
                f"{x['raw_drain_s']:.1f} s; Courier {x['ratio_to_raw_drain']:.2f}x"
            )
    if "scale" in f:
        x = f["scale"]
        lines += [
            "",
            (
                f"store of {x['rows']:,} executions: {x['file_mb']:.0f} MB; courier serve peak RSS "
                f"{x['peak_rss_mb']:.0f} MB"
            ),
            f"{'query (REST, 100 per page)':<34}{'p50 ms':>9}{'p99 ms':>9}",
        ]
        for name, t in x["queries"].items():
            lines.append(f"{name:<34}{t['p50_ms']:>9.1f}{t['p99_ms']:>9.1f}")
    if "rest/peak_rss_mb" in f:
        lines.append(
            f"\ncourier serve peak RSS during the REST runs: {f['rest/peak_rss_mb']:.0f} MB"
        )
    return "\n".join(lines)


def main(plan: Plan, json_path: Path | None) -> None:
    import logging

    import uvloop

    logging.getLogger("gmqtt").setLevel(logging.ERROR)  # its clients closing mid-flight
    with tempfile.TemporaryDirectory(prefix="courier-bench-") as folder:
        results = uvloop.run(run(plan, Path(folder)))
    print(table(results))
    if json_path is not None:
        json_path.write_bytes(orjson.dumps(results.figures, option=orjson.OPT_INDENT_2))
