"""`courier bench` keeps working: a quick run of its parts, and its 1M-row generator on a
small store with every timed query."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import scale
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
            "raw,service,rest,fanout",
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
