"""`courier serve` as a real process, started, killed and restarted by the tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from courier.mosquitto import MosquittoProcess, free_port


class CourierProcess:
    def __init__(self, broker: MosquittoProcess, workdir: Path, prefix: str) -> None:
        self.broker = broker
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.store = f"sqlite:///{workdir}/courier.db"
        self.prefix = prefix
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.env = {
            **os.environ,
            "COURIER_BROKER": broker.url,
            "COURIER_STORE": self.store,
            "COURIER_HTTP": f"127.0.0.1:{self.port}",
            "COURIER_PREFIX": prefix,
            "COURIER_CLIENT_ID": f"courier-{prefix}",
            "COURIER_SWEEP_INTERVAL": "0.2",
            "COURIER_RATE_LIMIT": "0",
            "COURIER_LOG_FORMAT": "json",
            "COURIER_URL": self.url,
            "COURIER_TENANT": "acme",
        }

    def cli(
        self, *args: str, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "courier", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"courier {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
            )
        return result

    def start(self) -> None:
        self.starts += 1
        with open(self.workdir / f"serve-{self.starts}.log", "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "courier", "serve"], env=self.env, stdout=log, stderr=log
            )
        self.wait_ready()

    def wait_ready(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"courier serve exited: {self.log_text()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"courier serve not ready in {timeout} s: {self.log_text()}")

    def log_text(self) -> str:
        return (self.workdir / f"serve-{self.starts}.log").read_text(errors="replace")[-4000:]

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def terminate(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(30)

    def api(self, key: str) -> httpx.Client:
        return httpx.Client(
            base_url=f"{self.url}/v1/tenants/acme",
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
        )

    def new_key(self) -> str:
        out = self.cli("apikey", "create", "--tenant", "acme", "--json", "--store", self.store)
        import json

        key: Any = json.loads(out.stdout)["key"]
        return str(key)


@pytest.fixture
def courier_process(
    broker: MosquittoProcess, tmp_path: Path, prefix: str
) -> Iterator[CourierProcess]:
    process = CourierProcess(broker, tmp_path, prefix)
    yield process
    if process.process is not None and process.process.poll() is None:
        process.kill()


@pytest.fixture
def courier_own_broker(
    own_broker: MosquittoProcess, tmp_path: Path, prefix: str
) -> Iterator[CourierProcess]:
    process = CourierProcess(own_broker, tmp_path, prefix)
    yield process
    if process.process is not None and process.process.poll() is None:
        process.kill()
