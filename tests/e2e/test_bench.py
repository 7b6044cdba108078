"""`courier bench` keeps working: a quick run of its parts, and its 1M-row generator on a
small store with every timed query."""

from __future__ import annotations

import itertools
import json
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import scale, steady
from benchmarks.bench import STEADY_SHARE
from courier.api import create_app
from courier.clock import SystemClock
from courier.metrics import Metrics
from courier.service import Service, ServiceConfig
from courier.store import open_store


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_quick_bench_prints_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "courier",
            "bench",
            "--quick",
            "--only",
            "raw,service,steady,rest,fanout",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=220,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(out.read_text())
    for window in (10, 100, 1000):
        assert figures[f"raw/{window}"]["per_s"] > 0
        assert figures[f"service/{window}"]["per_s"] > 0
    for window in (100, 1000):
        assert figures[f"rest/{window}"]["per_s"] > 0
        assert figures[f"raw_rest/{window}"]["per_s"] > 0
    assert figures["fanout"]["succeeded"] == 1000
    assert figures["python"] == platform.python_version()
    header = next(line for line in result.stdout.splitlines() if line.startswith("Courier bench:"))
    assert f"Python {platform.python_version()}," in header
    steady_run = figures["steady"]
    assert steady_run["rate"] == round(figures["service/1000"]["per_s"] * STEADY_SHARE, -1)
    for part in ("service", "raw"):
        assert steady_run[part]["p50_ms"] > 0
        assert steady_run[part]["p99_ms"] >= steady_run[part]["p50_ms"]
    assert "at a steady" in result.stdout
    assert "ratio" in result.stdout
    assert "measured just before the REST runs" in result.stdout


async def test_the_scale_store_answers_every_timed_query(tmp_path: Path) -> None:
    import httpx

    path = tmp_path / "scale.db"
    scale.generate(path, 2_000, 100, 10, "bench")
    store = open_store(f"sqlite:///{path}")
    await store.open()
    service = Service(store, ServiceConfig(), SystemClock())
    _, key = await service.create_api_key("bench", ["read"])
    app = create_app(service, Metrics(), None, rate_limit=0)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://c"
    ) as client:
        for name, url in scale.queries("bench", scale.sample_ids(path)).items():
            response = await client.get(url, headers={"Authorization": f"Bearer {key}"})
            assert response.status_code == 200, (name, response.text)
    await store.close()


def test_the_table_gives_each_run_s_ratio_beside_their_median() -> None:
    from benchmarks.bench import Results, table

    results = Results()
    for window, raw, service in ((100, 5000.0, 2000.0), (1000, 6000.0, 3000.0)):
        results.put(f"raw/{window}", {"per_s": raw, "p50_ms": 1.0, "p99_ms": 2.0})
        results.put(f"service/{window}", {"per_s": service, "p50_ms": 3.0, "p99_ms": 4.0})
    results.put("ratio/1000", 0.5)
    results.put("ratio_runs/1000", [0.44, 0.5, 0.54])
    results.put("ratio/100", 0.4)
    results.put("ratio_runs/100", [0.4])  # one run: nothing to show beside the median
    text = table(results)
    assert "service/raw ratio in each run (the median above): 1000: 0.44, 0.50, 0.54" in text
    assert "100: 0.40" not in text
    row = next(line for line in text.splitlines() if line.startswith("1000 "))
    assert "0.50x" in row


def test_a_drain_run_starts_only_if_one_as_long_as_the_last_ends_within_the_budget() -> None:
    from benchmarks.bench import another_run_fits

    assert another_run_fits(400.0, 100.0, 540.0)
    assert another_run_fits(440.0, 100.0, 540.0)
    assert not another_run_fits(441.0, 100.0, 540.0)
    assert another_run_fits(10_000.0, 100.0, 0.0)  # no budget


def test_a_negative_budget_is_refused() -> None:
    from click.testing import CliRunner

    from courier.cli import main

    result = CliRunner().invoke(main, ["bench", "--budget", "-1"])
    assert result.exit_code == 2
    assert "--budget" in result.output


def test_the_table_says_when_the_budget_cut_the_drain_s_runs() -> None:
    from benchmarks.bench import Results, table

    results = Results()
    results.put("runs", 3)
    results.put("drain", {"succeeded": 50_000, "drain_s": 30.0})
    results.put("drain_runs", 2)
    assert "SUCCEEDED in 30.0 s (median of 2 of 3 runs: the time budget)" in table(results)
    results.put("drain_runs", 3)
    assert "time budget" not in table(results)


def test_the_steady_schedule_starts_one_command_every_1_over_rate_seconds() -> None:
    assert steady.due(-0.001, 100, 50) == 0
    assert steady.due(0.0, 100, 50) == 1  # the first at once
    assert steady.due(0.0099, 100, 50) == 1
    assert steady.due(0.01, 100, 50) == 2
    assert steady.due(0.255, 100, 50) == 26
    assert steady.due(60.0, 100, 50) == 50  # never more than asked for
    assert steady.scheduled_at(10.0, 0, 100) == 10.0
    assert steady.scheduled_at(10.0, 25, 100) == pytest.approx(10.25)


async def test_paced_starts_every_command_once_in_order_and_no_sooner_than_its_time() -> None:
    import time

    stretches: list[tuple[int, int, float]] = []

    def start(first: int, stop: int, begin: float) -> None:
        stretches.append((first, stop, time.perf_counter() - begin))

    began = time.perf_counter()
    begin = await steady.paced(40, 400.0, start)
    assert began <= begin
    assert stretches[0][0] == 0
    assert stretches[-1][1] == 40
    for (_, stop, _), (first, _, _) in itertools.pairwise(stretches):
        assert first == stop  # contiguous: none skipped, none twice
    for first, stop, at in stretches:
        assert first < stop
        assert at >= first / 400.0  # the last of a stretch is due by then too
        assert at >= (stop - 1) / 400.0
    assert time.perf_counter() - begin >= 39 / 400.0


def test_the_table_gives_the_steady_rate_latency_of_courier_and_of_raw() -> None:
    from benchmarks.bench import Results, table

    results = Results()
    results.put(
        "steady",
        {
            "rate": 960.0,
            "seconds": 5.0,
            "basis": "a third of the service rate at 1000 in flight",
            "service": {"per_s": 955.0, "p50_ms": 4.2, "p99_ms": 9.3},
            "raw": {"per_s": 958.0, "p50_ms": 1.7, "p99_ms": 3.2},
        },
    )
    assert (
        "at a steady 960/s for 5 s (a third of the service rate at 1000 in flight): "
        "Courier p50/p99 4.2 / 9.3 ms; raw MQTT 1.7 / 3.2 ms"
    ) in table(results)
